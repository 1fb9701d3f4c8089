"""A refinement start made from a simulated cell's TRUE sites, for `refine.start_points`.

Writes ``--points`` of the simulated sites in the store's model units, centred, as a PLY that
`refine.start_points` reads; a share of them (``--mirrored-share``) replaced by their mirror
image (z -> -z about the centroid), and Gaussian noise of ``--noise`` model units added. It asks
how close to the truth the refinement must start to end there: the truth itself, the truth
blurred, or a mixture of both hands (a chiral structure and its mirror image explain every
image equally well, so a cloud can hold some of each).

    python tools/truth_start.py CELL_DIR --out start.ply [--mirrored-share 0.3] [--noise 0.2]

``CELL_DIR`` holds ``sim.csv`` (with its truth files) and the ``store.zarr`` that `holly
localise` made from it, e.g. a robustness cell's ``OUT/work/<cell>``. A run on the same store
then starts its refinement there:

    python tools/robustness.py --scale default --shapes helix --cells helix-base --out OUT \\
        --set refine.start_points=$PWD/start.ply

(the same cell and seed rebuild the same store, so the units agree). It prints the start's
Chamfer / blob against the sites, as `holly evaluate` scores a run. docs/maintainer-notes.md
("How close must the refinement start?") has the numbers it gave.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from holly.data.locsim import store_sites
from holly.data.pointio import write_points
from holly.errors import HollyError
from holly.method.align import MIRROR
from holly.results.evaluate import chamfer_ratio_to_blob

log = logging.getLogger("truth_start")


def sites_in_model_units(cell: Path) -> np.ndarray:
    """The cell's simulated sites [M, 3] in its store's model units, centred on their centroid."""
    for name in ("sim.csv", "store.zarr"):
        if not (cell / name).exists():
            raise HollyError(f"{cell / name} does not exist: give a cell folder with both")
    return store_sites(cell / "store.zarr", cell / "sim.csv")


def truth_start(
    sites: np.ndarray, points: int, mirrored_share: float, noise: float, seed: int
) -> np.ndarray:
    """``points`` of ``sites`` (drawn without replacement where there are enough), a seeded
    ``mirrored_share`` of them mirrored through the centroid's xy plane, plus N(0, ``noise``)."""
    rng = np.random.default_rng(seed)
    chosen = sites[rng.choice(len(sites), points, replace=len(sites) < points)]
    mirrored = rng.permutation(points)[: int(round(mirrored_share * points))]
    chosen[mirrored] = chosen[mirrored] @ MIRROR
    return chosen + rng.normal(0.0, noise, chosen.shape)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="folder with sim.csv and store.zarr")
    parser.add_argument("--out", type=Path, required=True, help="PLY file to write")
    parser.add_argument("--points", type=int, default=150, help="model.num_points (150)")
    parser.add_argument("--mirrored-share", type=float, default=0.0, help="0..1 (0)")
    parser.add_argument("--noise", type=float, default=0.0, help="model units (0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not 0.0 <= args.mirrored_share <= 1.0 or args.noise < 0 or args.points < 1:
            raise HollyError("--mirrored-share must lie in 0..1, --noise >= 0, --points >= 1")
        sites = sites_in_model_units(args.cell)
        start = truth_start(sites, args.points, args.mirrored_share, args.noise, args.seed)
        comment = f"truth start of {args.cell}: mirrored {args.mirrored_share}, noise {args.noise}"
        write_points(args.out, start, meta={"cloud": comment})
    except (HollyError, OSError) as exc:  # a missing cell file, an --out it cannot write
        log.error("truth_start: %s", exc)
        return 2
    ratio = chamfer_ratio_to_blob(start, sites)
    print(f"{args.out}: {args.points} points, Chamfer / blob {ratio:.3f} against the sites")
    return 0


if __name__ == "__main__":
    sys.exit(main())
