"""Render SMLM localisation tables into a holly image store (Zarr v3), one level per sigma.

INPUT is a ThunderSTORM CSV ("x [nm]", "y [nm]"; --particle-column names the particle, otherwise
the file is one particle), a Picasso HDF5 file (/locs, particle = the group column), the CEP152
MATLAB v7.3 file (cell array Cep152_all_filtered, 8-row datasets, rows 0/1 = x/y), or a folder of
such files (read in name order). Particles are numbered from 0 in read order; --accepted lists the
numbers to keep.

Each particle is centred on its bounding-box centre and scaled by one global factor (the
localisation farthest from its centre lands (1 - margin) of the way to the frame edge), then
--perturbations copies with random in-plane rotations (seeded) are rendered at every sigma with
holly's renderer. Image sums equal the localisation counts. Localisation y grows down, as in
the camera frame: the images look like the camera view, row 0 at the top.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from holly.errors import HollyError

log = logging.getLogger(__name__)


def parse_sigmas(text: str) -> list[float]:
    """Comma-separated sigmas in pixels, or a path to a file holding such a list."""
    path = Path(text)
    if path.is_file():
        text = path.read_text()
    try:
        values = [float(t) for t in text.replace("\n", ",").split(",") if t.strip()]
    except ValueError:
        raise HollyError(
            f"--sigmas must be comma-separated numbers or a file of them, not {text.strip()[:60]!r}"
        ) from None
    if not values:
        raise HollyError("--sigmas is empty")
    return values


def add_args(parser: argparse.ArgumentParser) -> None:
    from holly.localisations import FORMATS

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
    parser.add_argument("--format", default="auto", choices=FORMATS, dest="fmt")
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
        help="ThunderSTORM: column naming the particle of each row",
    )
    parser.add_argument(
        "--mat-order",
        choices=("cell", "refs"),
        default="cell",
        help="CEP152 .mat particle numbering: cell order or #refs# name order",
    )
    parser.add_argument("--device", default="cpu", help="torch device for rendering (cpu)")
    parser.add_argument("--force", action="store_true", help="replace an existing store")


def main(args: argparse.Namespace) -> int:
    from holly.localisations import localise

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
        overwrite=args.force,
        device=args.device,
    )
    log.info(
        "%d of %d particles -> %d images (%.4g px per source unit)",
        result.n_selected,
        result.n_read,
        result.n_images,
        result.pixels_per_unit,
    )
    return 0
