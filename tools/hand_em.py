"""Hard EM with a GLOBAL refit on a simulated cell: does it choose one hand of a chiral shape?

Each round searches every image's pose afresh against the cloud (as holly's refinement
searches: :func:`holly.method.refine.fresh_search`, 1,024 random rotations on ~16-pixel copies,
the best 4 refined by 30 steps, Poisson deviance), then fits a NEW cloud from a blob
(moment-matched to the current cloud, not to the truth) at those poses, as
tools/fixed_pose_fit.py fits (L1, shifts learned). That is cryo-EM's projection-matching ab
initio with the cloud rebuilt every round, where holly's refinement only moves its points a
little per step: points of the wrong hand are not carried from round to round, only the poses
they gave.

    python tools/hand_em.py CELL_DIR --start truth|sphere|mirrored:F|FILE [--rounds 6]
        [--levels 6,6,4,2,1] [--points 20,40,150] [--images 1024] [--seed 0]

``CELL_DIR`` holds ``sim.csv`` (with its truth files) and the ``store.zarr`` that `holly
localise` made from it, e.g. a robustness cell's ``OUT/work/<cell>``. ``--start``: 150 of the
true sites; the sites' moment-matched blob; the sites with a share F mirrored
(tools/truth_start.py); or a point file (PLY, OBJ, CSV) or a run's checkpoint (``.pt``: its
cloud, e.g. ``RUN/checkpoints/step_00002000.pt`` at the end of the CNN phase), in the store's
model units. ``--levels`` (store levels, one per round) and ``--points`` (cloud size per round)
give coarse-to-fine schedules; ``--refit warm`` fits each round's cloud from the last one
instead of its blob. Each round prints the cloud's Chamfer / blob against the sites
and its Chamfer to the sites and to their mirror image, each aligned (``hands``: a one-handed
cloud is near one and far from the other; the sites are 0 / 0.157 model units from their own
mirror image on the helix's cells). docs/maintainer-notes.md ("A global refit") has the numbers
it gave.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fixed_pose_fit import fit_cloud  # tools/ is the script's own folder on sys.path
from truth_start import sites_in_model_units, truth_start

from holly.data.imagestore import ImageStore
from holly.data.pointio import read_points
from holly.errors import HollyError
from holly.method import refine
from holly.method.align import MIRROR, align
from holly.method.geometry import random_rotations
from holly.results.evaluate import blob_baseline, chamfer_ratio_to_blob

log = logging.getLogger("hand_em")
BATCH = 64  # images searched at once


def start_cloud(start: str, sites: np.ndarray, seed: int) -> np.ndarray:
    """The first cloud [P, 3] that ``--start`` names (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    if start == "truth":
        return truth_start(sites.copy(), 150, 0.0, 0.0, seed)
    if start == "sphere":
        return blob_baseline(sites, 150, rng)
    if start.startswith("mirrored:"):
        share = float(start.split(":", 1)[1])
        if not 0.0 <= share <= 1.0:
            raise HollyError(f"--start {start}: the mirrored share must lie in 0..1")
        return truth_start(sites.copy(), 150, share, 0.0, seed)
    path = Path(start)
    if not path.is_file():
        raise HollyError(f"--start {start}: not truth, sphere, mirrored:F or an existing file")
    if path.suffix == ".pt":  # a run's checkpoint: the model's cloud at that step
        state = torch.load(path, map_location="cpu", weights_only=False)
        return state["model"]["points"].double().numpy()
    return read_points(path)


def hands(cloud: np.ndarray, sites: np.ndarray) -> tuple[float, float]:
    """Chamfer of ``cloud`` to ``sites`` aligned by a proper turn, and of its mirror image."""
    proper = align(cloud, sites, allow_mirror=False).chamfer
    mirrored = align(cloud @ MIRROR, sites, allow_mirror=False).chamfer
    return float(proper), float(mirrored)


def search_all(cloud, table, target, spec, n_rotations, gen) -> None:
    """Every table row's pose searched afresh against ``cloud`` (its old pose dropped)."""
    for rows in torch.arange(len(table)).split(BATCH):
        candidates = random_rotations(n_rotations, gen)
        refine.fresh_search(cloud, table, rows, target[rows], spec, candidates, 4, 30, 0.01)


def rounds(cell: Path, args) -> list[dict]:
    """Run the EM rounds; one dict per round: level, points, Chamfer / blob, hands, seconds."""
    store = ImageStore.open(cell / "store.zarr")
    sites = sites_in_model_units(cell)
    levels = [float(v) for v in args.levels.split(",")] if args.levels else [1.0] * args.rounds
    sizes = [int(v) for v in args.points.split(",")] if args.points else [150] * len(levels)
    if len(sizes) != len(levels):
        raise HollyError(f"--points gives {len(sizes)} sizes for {len(levels)} rounds")
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(store.n_images, min(args.images, store.n_images), replace=False))
    stacks = {  # each level read and converted once, whatever the rounds' order
        lv: torch.from_numpy(store.load_level(store.level_for(lv))[pick].astype(np.float32))
        for lv in set(levels)
    }
    precision = float(store.precision_px or 0.0)
    cloud = torch.as_tensor(start_cloud(args.start, sites, args.seed), dtype=torch.float32)
    if args.refit == "warm" and set(sizes) != {len(cloud)}:
        raise HollyError(
            f"--refit warm keeps the start's {len(cloud)} points, where the rounds ask for "
            f"{sorted(set(sizes))}: drop --points, or give --points {len(cloud)} each round"
        )
    gen = torch.Generator().manual_seed(args.seed)
    rotations = torch.eye(3).repeat(len(pick), 1, 1)
    shifts = torch.zeros(len(pick), 2)
    out = [summary("start", None, cloud, sites, 0.0)]
    for level, size in zip(levels, sizes, strict=True):
        began = time.time()
        images = stacks[level]
        spec = refine.RenderSpec(store.height, store.width, "poisson", 0.0, precision)
        table = refine.PoseTable(rotations, shifts, torch.full((len(pick),), level))
        search_all(cloud, table, refine.normalised(images), spec, args.rotations, gen)
        rotations, shifts, _ = (t.detach() for t in table.pose(torch.arange(len(pick))))
        blur = float(np.hypot(level, precision))  # the level's width with the data's scatter
        if args.refit == "warm":  # the old points moved, not dropped: is the blob what helps?
            init = cloud.double().numpy()
        else:  # a uniform ellipsoid of the cloud's moments; refine.rebuild_rounds draws a
            # Gaussian of them (holly.method.rebuild.moment_blob); from the last cloud itself
            # (--refit warm) the rounds scored the same, so the start's shape matters little
            init = blob_baseline(cloud.double().numpy(), size, rng)
        cloud, shifts = fit_cloud(images, rotations, shifts, init, blur, "l1", args.fit_steps, rng)
        out.append(summary(f"round {len(out)}", level, cloud, sites, time.time() - began))
    return out


def summary(name: str, level, cloud: torch.Tensor, sites: np.ndarray, seconds: float) -> dict:
    x = cloud.double().numpy()
    proper, mirrored = hands(x, sites)
    row = {"round": name, "level": level, "points": len(x), "seconds": round(seconds, 1)}
    row.update(ratio=chamfer_ratio_to_blob(x, sites), proper=proper, mirrored=mirrored)
    print(
        f"{name}: {len(x)} points{'' if level is None else f' at level {level:g} px'}, "
        f"Chamfer / blob {row['ratio']:.3f}, hands {proper:.4f} / {mirrored:.4f} "
        f"(proper / mirrored){f', {seconds:.0f} s' if seconds else ''}",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="folder with sim.csv and store.zarr")
    parser.add_argument("--start", default="sphere", help="truth, sphere, mirrored:F or a file")
    parser.add_argument("--rounds", type=int, default=6, help="rounds at level 1 (6)")
    parser.add_argument("--levels", default="", help="store level per round, e.g. 6,4,2,1")
    parser.add_argument("--points", default="", help="cloud size per round (150 each)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--rotations", type=int, default=1024, help="random rotations a batch")
    parser.add_argument("--fit-steps", type=int, default=800, help="batches of 64 a refit")
    parser.add_argument(
        "--refit",
        choices=("blob", "warm"),
        default="blob",
        help="fit each round's cloud from the last one's blob, or from the last cloud itself",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    try:
        if args.rounds < 1 or args.images < 1 or args.fit_steps < 1 or args.rotations < 4:
            raise HollyError("--rounds, --images and --fit-steps must be >= 1, --rotations >= 4")
        rounds(args.cell, args)
    except (HollyError, OSError, ValueError) as exc:  # a missing cell, a bad --start or list
        log.error("hand_em: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
