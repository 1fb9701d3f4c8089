"""Render SMLM localisation tables into a holly image store (Zarr v3), one level per sigma.

INPUT is a localisation file or a folder of them (read in name order; one format, one kind, one
pixel size per folder). Formats, told apart by content: ThunderSTORM CSV ("x [nm]", "y [nm]"),
Picasso HDF5 (/locs in camera pixels, particle = group; pixel size from the .yaml beside it),
SMAP _sml.mat (saveloc.loc.xnm/ynm) and _sml.csv (xnm, ynm), DECODE HDF5 (data/xyz, meta
xy_unit/px_size), Zeiss Elyra tables ("Position X [nm]"), ONI Nanoimager CSV ("X (nm)"),
rapidSTORM text (XML field header), the CEP152 MATLAB v7.3 cell array Cep152_all_filtered, the
TU Delft particle-fusion MATLAB file (tud-mat: cell array particles{i}, each .points (N x 2 or
N x 3) with .sigma, or .coords (N x 10); camera pixels, so --pixel-size is required: the TU Delft
repositories use 130 nm) and JRMPC's Superparticle{i} (superparticle-mat: dims x N, nm); both
MATLAB v5 or v7.3, one particle per cell.
--particle-column names the column that groups rows into particles (tables; Picasso: any /locs
field, default group); otherwise a file is one particle. Particles are numbered from 0 in read
order; --accepted lists the numbers to keep.
Particles with fewer than --min-localisations, and outliers far wider than the median particle,
are dropped with a warning. The store records nm per image pixel where the source gives a scale
(nm columns, Picasso's .yaml, DECODE's px_size, or --pixel-size), and every localisation of the
rendered particles as read, with z and its precision where the file has them (the images show
the xy projection).

Each particle is centred on its bounding-box centre (--centre centroid: on the mean of its
localisations) and scaled by one global factor (the
localisation farthest from its centre lands (1 - margin) of the way to the frame edge), then
--perturbations copies with random in-plane rotations (seeded) are rendered at every sigma with
holly's renderer. Image sums equal the localisation counts. Localisation y grows down, as in
the camera frame: the images look like the camera view, row 0 at the top.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from holly.data.sigmas import parse_sigmas

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    from holly.data.localisations import CENTRES, FORMATS

    parser.add_argument("input", metavar="INPUT", type=Path, help="localisation file or folder")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="STORE.zarr", help="image store to create"
    )
    parser.add_argument(
        "--sigmas",
        required=True,
        metavar="S1,S2,...|FILE",
        help="Gaussian sigmas in pixels, or a sigma file",
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        dest="fmt",
        help="localisation format (auto: from each file's content)",
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        metavar="NM",
        help="nm per camera pixel, for coordinates in pixels: required for tud-mat (130 in the "
        "TU Delft repositories); ThunderSTORM/rapidSTORM px or plain x, y; DECODE px (overrides "
        "px_size); Picasso (overrides the .yaml); CEP152 .mat",
    )
    parser.add_argument(
        "--min-localisations",
        type=int,
        default=2,
        metavar="N",
        help="drop particles with fewer localisations (default 2), with a counted warning",
    )
    parser.add_argument(
        "--outlier-factor",
        type=float,
        default=3.0,
        metavar="F",
        help="drop particles reaching farther than F x the median particle (3; 0 keeps all)",
    )
    parser.add_argument(
        "--accepted",
        type=Path,
        metavar="LIST.txt",
        help="particle numbers to keep (integers; '#' comments)",
    )
    parser.add_argument(
        "--size-cut",
        action="store_true",
        help="drop particles with fewer localisations than median - 2 sd",
    )
    parser.add_argument(
        "--perturbations",
        type=int,
        default=10,
        metavar="K",
        help="rotated copies per particle (default 10)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        metavar="N",
        help="keep at most N random localisations per particle",
    )
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of subsets and rotations")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="free fraction of the half-frame around the widest particle",
    )
    parser.add_argument(
        "--particle-column",
        metavar="NAME",
        help="column naming each row's particle: ThunderSTORM, SMAP, Elyra, Nanoimager and "
        "rapidSTORM columns, a DECODE data/ dataset, a Picasso /locs field (default group; e.g. "
        "group_input for RESI's whole picks); not for tud-mat/superparticle-mat (a cell each)",
    )
    parser.add_argument(
        "--mat-order",
        choices=("cell", "refs"),
        default="cell",
        help="CEP152 .mat particle numbering: cell order or #refs# name order",
    )
    parser.add_argument(
        "--centre",
        choices=CENTRES,
        default="bbox",
        help="centre each particle on its bounding-box centre (bbox, CEPrender's) or on the "
        "mean of its localisations (centroid: steadier under coarse precision and partial "
        "labelling)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for rendering (cpu)")
    parser.add_argument("--force", action="store_true", help="replace an existing store")


def main(args: argparse.Namespace) -> int:
    from holly.data.localisations import localise

    result = localise(
        args.input,
        args.out,
        parse_sigmas(args.sigmas),
        fmt=args.fmt,
        accepted=args.accepted,
        size_cut=args.size_cut,
        perturbations=args.perturbations,
        max_points=args.max_points,
        size=args.size,
        seed=args.seed,
        margin=args.margin,
        particle_column=args.particle_column,
        mat_order=args.mat_order,
        pixel_size=args.pixel_size,
        min_localisations=args.min_localisations,
        outlier_factor=args.outlier_factor,
        centre=args.centre,
        overwrite=args.force,
        device=args.device,
    )
    scale = f"{result.nm_per_px:.4g} nm per pixel" if result.nm_per_px else "scale in nm unknown"
    log.info(
        "%d of %d particles -> %d images (%.4g px per source unit, %s)",
        result.n_selected,
        result.n_read,
        result.n_images,
        result.pixels_per_unit,
        scale,
    )
    return 0
