"""Simulate SMLM particles at the localisation level: a table for `holly localise`.

Fluorophores on a structure (a built-in shape, e.g. the sparse flat `logo` (TUD letters, 38
sites, 80 x 75 nm) or `pore` (8 corners, radius 50 nm), or a point file scaled to --size-nm),
each site labelled with probability --labelling, displaced by --linker-nm in a random
direction; each fluorophore blinks a random number of times (--blinking geometric or poisson,
mean --blinks), each localisation with Gaussian noise (--sigma-xy-nm, --sigma-z-nm); background
localisations uniform in each particle's field (--background per particle or
--background-density per um^2); one view per particle: uniform 3D rotations, tilt-limited
(--views tilt --max-tilt T: out-of-plane tilt <= T degrees, random in-plane angle) or in-plane
only.

Writes OUT.csv (ThunderSTORM-style: id, frame, x [nm], y [nm], z [nm], uncertainty_xy [nm],
uncertainty_z [nm], particle, site), OUT.truth.npz (true rotations in the renderer's
convention, tilts, sites, labelling, fluorophores), OUT.sites.ply (the sites in nm) and OUT.json
(every parameter, the seed, counts, conventions). --seed drives every draw. Then:

    holly localise OUT.csv --particle-column particle --out OUT.zarr --sigmas 10,8,6,4,2
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    from holly.data.locsim import BLINKING, VIEWS, LocSimParams

    d = LocSimParams()
    parser.add_argument("--out", required=True, metavar="OUT.csv", help="table to write")
    parser.add_argument(
        "--shape",
        default=d.shape,
        help=f"built-in shape name or point file (default {d.shape})",
    )
    parser.add_argument(
        "--size-nm",
        type=float,
        metavar="NM",
        help="structure diameter in nm (default: the shape's own, logo 114, pore 100; else 100)",
    )
    parser.add_argument("--particles", type=int, default=d.particles, help="particles (200)")
    parser.add_argument(
        "--labelling",
        type=float,
        default=d.labelling,
        metavar="P",
        help="probability that a site is labelled, in (0, 1] (1)",
    )
    parser.add_argument(
        "--linker-nm", type=float, default=d.linker_nm, help="fluorophore-site distance (0)"
    )
    parser.add_argument(
        "--blinking",
        choices=BLINKING,
        default=d.blinking,
        help="localisations per fluorophore: geometric (>= 1) or poisson (>= 0) (geometric)",
    )
    parser.add_argument(
        "--blinks",
        type=float,
        default=d.blinks,
        metavar="MEAN",
        help="mean localisations per fluorophore (5; geometric needs >= 1)",
    )
    parser.add_argument(
        "--sigma-xy-nm", type=float, default=d.sigma_xy_nm, help="precision in x and y (5 nm)"
    )
    parser.add_argument(
        "--sigma-z-nm", type=float, default=None, help="precision in z (default: as xy)"
    )
    parser.add_argument(
        "--background",
        type=float,
        default=d.background,
        metavar="N",
        help="mean background localisations per particle (0)",
    )
    parser.add_argument(
        "--background-density",
        type=float,
        metavar="PER_UM2",
        help="background per um^2 of the particle's field (instead of --background)",
    )
    parser.add_argument(
        "--field-nm", type=float, help="side of each particle's field (default 1.5 x size)"
    )
    parser.add_argument(
        "--views",
        choices=VIEWS,
        default=d.views,
        help="one view per particle: uniform 3D, tilt-limited (--max-tilt) or in-plane only "
        "(uniform)",
    )
    parser.add_argument(
        "--max-tilt",
        type=float,
        default=d.max_tilt_deg,
        metavar="DEG",
        help="largest out-of-plane tilt for --views tilt, in [0, 90] (30)",
    )
    parser.add_argument(
        "--face-down",
        type=float,
        default=d.face_down,
        metavar="SHARE",
        help="share of the particles lying on their other face, in [0, 1], for --views tilt or "
        "inplane (an origami lands on glass on either face; seen from the top it is the "
        "mirror image) (0)",
    )
    parser.add_argument("--frames", type=int, default=d.frames, help="frames (10000)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of every draw (0)")
    parser.add_argument(
        "--force", action="store_true", help="replace a simulation holly wrote at --out"
    )


def main(args: argparse.Namespace) -> int:
    from holly.data.locsim import (
        LocSimParams,
        check_outputs,
        simulate_localisations,
        write_simulation,
    )

    params = LocSimParams(
        shape=args.shape,
        size_nm=args.size_nm,
        particles=args.particles,
        labelling=args.labelling,
        linker_nm=args.linker_nm,
        blinking=args.blinking,
        blinks=args.blinks,
        sigma_xy_nm=args.sigma_xy_nm,
        sigma_z_nm=args.sigma_z_nm,
        background=args.background,
        background_density=args.background_density,
        field_nm=args.field_nm,
        views=args.views,
        max_tilt_deg=args.max_tilt,
        face_down=args.face_down,
        frames=args.frames,
        seed=args.seed,
    )
    params.check()
    check_outputs(args.out, args.force)  # before drawing anything
    record = write_simulation(simulate_localisations(params), args.out, force=args.force)
    log.info(
        "%d particles, %d localisations (%d background), %.0f%% of sites labelled -> %s; "
        "read it with: %s",
        params.particles,
        record["n_localisations"],
        record["n_background"],
        100 * record["labelled_fraction"],
        args.out,
        record["read_with"],
    )
    return 0
