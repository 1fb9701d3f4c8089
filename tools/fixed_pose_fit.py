"""Fit a cloud to a simulated localisation store with every image's TRUE rotation held fixed.

It separates the cloud from the poses: with the poses right, how tight does the loss let the
cloud get, rendered at a given blur? The rotations come from the simulation
(:func:`holly.data.locsim.store_poses`); the image-plane shifts are learned (they absorb the
centring). The cloud starts from the true sites or from the moment-matched blob, and the
result is scored against the sites as `holly evaluate` scores a run (Chamfer / blob).
docs/maintainer-notes.md ("The cloud's blur") has the numbers it gave.

    python tools/fixed_pose_fit.py CELL_DIR --blur 1.0 3.5 [--loss l1] [--start blob]

``CELL_DIR`` holds ``sim.csv`` (with its truth files) and the ``store.zarr`` that `holly
localise` made from it, e.g. a robustness cell's ``OUT/work/<cell>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from holly.data.imagestore import ImageStore
from holly.data.locsim import store_poses, store_sites
from holly.method.loss import image_loss, normalise
from holly.method.render import render
from holly.results.evaluate import blob_baseline, chamfer_ratio_to_blob


def fit(cell: Path, blur: float, loss: str, start: str, steps: int, level: float) -> float:
    """Chamfer / blob of a cloud fit for ``steps`` batches of 64 images rendered at ``blur``."""
    torch.manual_seed(0)
    store = ImageStore.open(cell / "store.zarr")
    images = torch.from_numpy(store.load_level(level).astype(np.float32))
    rotations = torch.from_numpy(store_poses(cell / "store.zarr", cell / "sim.csv")).float()
    sites = store_sites(cell / "store.zarr", cell / "sim.csv")
    shifts = torch.zeros(len(images), 2)
    return fit_at_poses(images, rotations, shifts, sites, blur, loss, start, steps)


def fit_at_poses(images, rotations, shifts, sites, blur, loss, start, steps, seed=0) -> float:
    """Chamfer / blob against ``sites`` of 150 points fitted to ``images [N, H, W]`` with their
    ``rotations`` held and their image-plane ``shifts`` (a start) learned, rendered at ``blur``
    pixels; from the sites' moment-matched blob (``start`` "blob") or from the sites."""
    rng = np.random.default_rng(seed)
    n_points = 150
    if start == "truth":
        init = sites[rng.choice(len(sites), n_points, replace=len(sites) < n_points)]
    else:
        init = blob_baseline(sites, n_points, rng)
    points, _ = fit_cloud(images, rotations, shifts, init, blur, loss, steps, rng)
    return chamfer_ratio_to_blob(points.double().numpy(), sites)


def fit_cloud(images, rotations, shifts, init, blur, loss, steps, rng) -> tuple:
    """The cloud ``init [P, 3]`` and the ``shifts [N, 2]`` fitted to ``images [N, H, W]`` at
    their ``rotations`` (held) for ``steps`` batches of 64 (Adam: 5e-3 on the points, 1e-3 on
    the shifts), rendered at ``blur`` pixels under ``loss``: both returned, detached."""
    points = torch.tensor(init, dtype=torch.float32, requires_grad=True)
    shifts = shifts.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [points], "lr": 5e-3}, {"params": [shifts], "lr": 1e-3}])
    size = images.shape[-1]
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(images), min(64, len(images)), replace=False))
        out = render(points, rotations[idx], shifts[idx], blur, size, size, order="latest")
        value = image_loss(normalise(out, "image"), normalise(images[idx], "image"), loss)
        opt.zero_grad()
        value.backward()
        opt.step()
    return points.detach(), shifts.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="folder with sim.csv and store.zarr")
    parser.add_argument("--blur", type=float, nargs="+", default=[1.0], help="render blur, px")
    parser.add_argument("--loss", default="l1", choices=("l1", "l2"))
    parser.add_argument("--start", default="blob", choices=("blob", "truth"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--level", type=float, default=1.0, help="the store level read (px)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for blur in args.blur:
        ratio = fit(args.cell, blur, args.loss, args.start, args.steps, args.level)
        print(f"blur {blur:g} px, {args.loss}, from {args.start}: Chamfer / blob {ratio:.2f}")


if __name__ == "__main__":
    main()
