"""Do a simulated store's images determine their poses, given the TRUE structure?

The cloud is the simulated sites themselves. Each image's pose is searched against it as
holly's refinement searches (random rotations scored on ~16-pixel copies, the best few refined
at full size: :func:`holly.method.refine.fresh_search`), and the best-fitting pose is compared
with the image's true pose, or its nearest symmetric twin (cep152, the pore). If the best fit
is far from the truth while the truth is known exactly, the loss itself prefers wrong poses,
and a method that keeps one pose per image (holly's pose table) builds its cloud from them.
This separates "the search fails" from "the data do not say".

    python tools/pose_identifiability.py CELL_DIR [--loss poisson] [--rotations 1024]

``CELL_DIR`` holds ``sim.csv`` (with its truth files) and the ``store.zarr`` that `holly
localise` made from it, e.g. a robustness cell's ``OUT/work/<cell>``. It prints the median
angle between each image's best-fitting and true pose, the share within 10 and 30 degrees, and
the share of images whose true pose (its shift fitted) fits at least as well as the best found,
and how differently the sites draw at the two poses (0: the same image, a symmetric twin that
does a fitted cloud no harm; 1: no overlap), for the images within 10 deg and beyond 30. With
``--fit-steps 1500`` it also fits a cloud at the found and at the true poses (L1, from the
sites' blob, as tools/fixed_pose_fit.py fits) and prints their Chamfer / blob: far poses that
still give the true poses' number do a cloud built on them no harm.
docs/maintainer-notes.md ("Do the images determine the poses?") has the numbers it gave.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fixed_pose_fit import fit_at_poses  # tools/ is the script's own folder on sys.path

from holly.data.imagestore import ImageStore
from holly.data.locsim import read_record, store_poses, store_sites
from holly.data.shapes import DIHEDRAL, SYMMETRY_ORDER
from holly.errors import HollyError
from holly.method import refine
from holly.method.geometry import geodesic_angle, random_rotations
from holly.method.render import render, total_blur
from holly.results.evaluate import symmetry_rotations

log = logging.getLogger("pose_identifiability")


@dataclass(frozen=True)
class Identifiability:
    errors_deg: np.ndarray  # [T] best-fitting pose against the true pose
    truth_fits_as_well: np.ndarray  # [T] bool: the true pose's loss <= the best found's
    drawn_apart: np.ndarray  # [T] how differently the sites draw at the two poses, 0..1
    fits: dict  # "found" / "true": Chamfer / blob of a cloud fitted at those poses

    def summary(self) -> str:
        e, apart = self.errors_deg, self.drawn_apart

        def median_of(values: np.ndarray) -> str:  # "none" where no image falls in the range
            return f"{np.median(values):.2f}" if len(values) else "none"

        return (
            f"{len(e)} images: best-fitting pose {np.median(e):.1f} deg from the true one "
            f"(median), {np.mean(e < 10):.0%} within 10 deg, {np.mean(e < 30):.0%} within 30; "
            f"the true pose fits as well on {self.truth_fits_as_well.mean():.0%}; the sites "
            f"drawn at the two poses differ by {median_of(apart[e < 10])} (median) where "
            f"within 10 deg, {median_of(apart[e > 30])} where "
            "beyond 30 (0: the same image, 1: no overlap)"
            + "".join(f"; a cloud fitted at the {k} poses: {v:.2f}" for k, v in self.fits.items())
        )


def true_pose_losses(sites, rotations, target, sigma, spec, steps: int = 150) -> tuple:
    """Per-image loss of the sites at the true rotations and the shifts that give it, each
    image's shift fitted (the store's bounding-box centring moves the particle's centre off the
    sites' mean)."""
    shifts = torch.zeros(len(target), 2, requires_grad=True)
    opt = torch.optim.Adam([shifts], lr=0.02)
    for _ in range(steps):
        loss = refine.pose_losses(sites, rotations, shifts, sigma, target, spec).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return refine.pose_losses(sites, rotations, shifts, sigma, target, spec), shifts.detach()


def drawn_apart(sites, pose_a: tuple, pose_b: tuple, sigma, spec) -> np.ndarray:
    """Half the L1 distance between the sites' noise-free images at two (rotation, shift)
    poses, each normalised to sum 1: 0 where they draw the same image (a symmetric twin,
    harmless to a cloud fitted from it), 1 where they do not overlap."""
    size = (spec.height, spec.width)
    with torch.no_grad():
        a, b = (
            render(sites, rot, shift, total_blur(sigma, spec.data_blur), *size, order="latest")
            for rot, shift in (pose_a, pose_b)
        )
        a, b = a / a.sum((-2, -1), keepdim=True), b / b.sum((-2, -1), keepdim=True)
        return (0.5 * (a - b).abs().sum((-2, -1))).numpy()


def identifiability(
    cell: Path,
    loss: str,
    n_rotations: int,
    n_images: int,
    seed: int,
    fit_steps: int = 0,
    level: float = 1.0,
) -> Identifiability:
    """Search ``n_images`` images of ``cell`` (seeded choice) against the true sites; with
    ``fit_steps``, also fit a cloud (L1, from the sites' blob, :mod:`fixed_pose_fit`'s fit) at
    the found and at the true poses: are the far poses harmful to a cloud built on them?"""
    store = ImageStore.open(cell / "store.zarr")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(store.n_images, min(n_images, store.n_images), replace=False))
    images = torch.from_numpy(store.load_level(level)[pick].astype(np.float32))
    target = refine.normalised(images)
    rot_true = torch.from_numpy(store_poses(cell / "store.zarr", cell / "sim.csv")[pick]).float()
    sites = torch.as_tensor(store_sites(cell / "store.zarr", cell / "sim.csv"), dtype=torch.float32)
    size = images.shape[-1]
    spec = refine.RenderSpec(size, size, loss, 0.0, float(store.precision_px or 0.0))
    sigma = torch.full((len(pick),), float(level))
    table = refine.PoseTable(rot_true.clone(), torch.zeros(len(pick), 2), sigma.clone())
    gen = torch.Generator().manual_seed(seed)
    for rows in torch.arange(len(pick)).split(64):
        candidates = random_rotations(n_rotations, gen)
        refine.fresh_search(sites, table, rows, target[rows], spec, candidates, 4, 30, 0.01)
        log.info("searched %d of %d images against the true sites", int(rows[-1]) + 1, len(pick))
    found_rot, found_shift, _ = table.pose(torch.arange(len(pick)))
    with torch.no_grad():
        found = refine.pose_losses(sites, found_rot, found_shift, sigma, target, spec)
    truth, true_shift = true_pose_losses(sites, rot_true, target, sigma, spec)
    errors = twin_errors(rot_true, found_rot.detach(), cell)
    found_pose = (found_rot.detach(), found_shift.detach())
    apart = drawn_apart(sites, found_pose, (rot_true, true_shift), sigma, spec)
    fits = {}
    if fit_steps:
        blur, truth_np = spec.data_blur, sites.double().numpy()
        for name, (rot, shift) in (("found", found_pose), ("true", (rot_true, true_shift))):
            log.info("fitting a cloud at the %s poses (%d batches)", name, fit_steps)
            fits[name] = fit_at_poses(images, rot, shift, truth_np, blur, "l1", "blob", fit_steps)
    return Identifiability(errors, (truth <= found).numpy(), apart, fits)


def twin_errors(rot_true: torch.Tensor, found: torch.Tensor, cell: Path) -> np.ndarray:
    """Degrees from each found pose to the nearest true pose that gives the same image: the
    simulated shape's symmetric twins ``R S_k`` (cep152: C9, the pore: D8), as `holly
    evaluate` takes them."""
    shape = str((read_record(cell / "sim.csv").get("params") or {}).get("shape"))
    order = SYMMETRY_ORDER.get(shape, 1)
    twins = torch.from_numpy(symmetry_rotations(order, shape in DIHEDRAL)).float()
    angles = geodesic_angle(rot_true[:, None] @ twins[None], found[:, None])
    return np.degrees(angles.min(1).values.numpy())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="folder with sim.csv and store.zarr")
    parser.add_argument("--loss", default="poisson", choices=("l1", "l2", "poisson"))
    parser.add_argument("--rotations", type=int, default=1024, help="random rotations per batch")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-steps",
        type=int,
        default=0,
        help="also fit a cloud at the found and at the true poses for this many batches (1500)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    try:
        result = identifiability(
            args.cell, args.loss, args.rotations, args.images, args.seed, args.fit_steps
        )
    except (HollyError, FileNotFoundError) as exc:  # not a simulated cell: say which file
        print(f"pose_identifiability: {exc}", file=sys.stderr)
        return 2
    print(f"{args.cell} ({args.loss}): {result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
