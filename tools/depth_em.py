"""Hard EM that also fits the z of 3D localisations: does depth give a chiral shape one hand?

holly renders the xy projection of each particle and drops z (`holly localise` keeps it in the
store's localisation table, unused). From a projection a chiral cloud and its mirror image
explain every image equally (pose R of one is pose F R F of the other, F = diag(1, 1, -1)),
and at 30 % labelling the images are too sparse to keep the poses of one hand
(docs/maintainer-notes.md, "A global refit"). Their z tells the two apart: F R F draws the same
xy with every depth negated.

Each image gets a DEPTH image beside its intensity image, ``D(p) = sum_i z_i K(p - xy_i)`` over
its localisations (z centred on the particle's mean), and the cloud draws
``sum_j (R x_j)_z G(p - (R x_j + t)_xy)``, plus ``t_z`` times its intensity (a depth offset,
fitted in closed form). The pose search scores the intensity's Poisson deviance plus ``--lam``
times the depth's chi-square (variance ``(local mean z^2 + sigma_z^2)`` times the intensity: the
localisations scatter in xy too, so the depth image's shot noise carries their z). Each round
searches every image afresh (random rotations on quarter-size copies, the best 4 refined by 30
steps) and fits a new cloud from the last one's moment-matched blob at those poses (L1 on the
intensity plus the depth term scaled to the L1 at the fit's start, times ``--lam``), as
tools/hand_em.py does without depth. ``--lam 0`` is that tool's experiment on these images.

    python tools/depth_em.py CELL_DIR --start sphere|truth|mirrored:F [--lam 1] [--rounds 4]
        [--images 1000] [--rotations 1024] [--fit-steps 800] [--seed 0] [--identify 256]

``CELL_DIR`` holds ``sim.csv`` (with its truth files) and the ``store.zarr`` that `holly
localise` made from it (a robustness cell's ``OUT/work/<cell>``); the images are drawn from the
table's localisations, one per particle (no in-plane copies), at the store's size and scale.
Each round prints the cloud's Chamfer / blob and its distance to the sites and to their mirror
image, each aligned by a proper turn (``hands``; z is absolute here, so the TRUE hand is the
first). ``--identify N`` instead searches N images against the true sites and prints how far
the best poses are from the true ones, with and without depth. docs/maintainer-notes.md
("Depth from 3D localisations") has the numbers it gave.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hand_em import hands  # tools/ is the script's folder on sys.path
from truth_start import sites_in_model_units, truth_start

from holly.data.imagestore import ImageStore
from holly.data.locsim import read_record, read_truth
from holly.errors import HollyError
from holly.method.geometry import axis_angle_to_matrix, geodesic_angle, random_rotations
from holly.method.loss import POISSON_FLOOR, poisson_deviance
from holly.method.render import render
from holly.results.evaluate import blob_baseline, chamfer_ratio_to_blob

log = logging.getLogger("depth_em")
LEVEL_PX = 1.0  # each localisation drawn as a 1-pixel Gaussian, as the store's finest level
POOL = 4  # the search scores quarter-size copies
KEEP, POSE_STEPS, POSE_LR = 4, 30, 0.01  # candidates refined per image, their steps and rate
BATCH = 32  # images searched at once
# The table's y points down (as read); the renderer's up. Turning the frame by 180 degrees
# about x flips y and z together, a proper turn, so the data keep their hand.
TABLE_TO_RENDERER = np.diag([1.0, -1.0, -1.0])


def particle_images(table_path: Path, n: int, nm_per_unit: float, size: int):
    """Intensity and depth images ``[n, size, size]`` of the table's first ``n`` particles,
    each normalised to an intensity of 100 (the depth by the same factor), centred on its
    localisations' mean in x, y and z, in model units and the renderer's frame."""
    import pandas as pd

    table = pd.read_csv(table_path)
    xyz = table[["x [nm]", "y [nm]", "z [nm]"]].to_numpy(np.float64)
    owner = table["particle"].to_numpy()
    groups = [xyz[owner == p] for p in range(n)]
    if any(len(g) == 0 for g in groups):
        raise HollyError(f"{table_path}: a particle below {n} has no localisations")
    width = max(len(g) for g in groups)
    points = torch.zeros(n, width, 3, dtype=torch.float64)
    valid = torch.zeros(n, width, dtype=torch.float64)
    for p, g in enumerate(groups):
        points[p, : len(g)] = torch.from_numpy((g - g.mean(0)) / nm_per_unit @ TABLE_TO_RENDERER)
        valid[p, : len(g)] = 1.0
    intensity, depth = [], []
    for rows in torch.arange(n).split(100):
        eye = torch.eye(3, dtype=torch.float64).expand(len(rows), 3, 3)
        zero = torch.zeros(len(rows), 2, dtype=torch.float64)
        pts, mask = points[rows], valid[rows]
        for out, weight in ((intensity, mask), (depth, mask * pts[..., 2])):
            out.append(render(pts, eye, zero, LEVEL_PX, size, size, weight, "latest"))
    intensity, depth = torch.cat(intensity), torch.cat(depth)
    scale = 100.0 / intensity.sum((-2, -1), keepdim=True)
    return (intensity * scale).float(), (depth * scale).float()


def model_images(points, rotations, shifts, sigma: float, size: int):
    """The cloud's intensity and depth images ``[B, size, size]`` at the poses, normalised as
    :func:`particle_images` normalises the data."""
    z = torch.einsum("bij,nj->bni", rotations, points)[..., 2]
    intensity = render(points, rotations, shifts, sigma, size, size, order="latest")
    depth = render(points, rotations, shifts, sigma, size, size, mask=z, order="latest")
    scale = 100.0 / intensity.sum((-2, -1), keepdim=True).clamp_min(1e-9)
    return intensity * scale, depth * scale


def deviance_and_depth(model, data, sigma_z: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image ``[B]``: the intensity's Poisson deviance, and the depth's chi-square with the
    depth offset ``t_z`` fitted in closed form (weighted least squares)."""
    (m_int, m_dep), (d_int, d_dep) = model, data
    deviance = poisson_deviance(m_int, d_int).sum((-2, -1))
    r = m_int + POISSON_FLOOR * d_int.mean((-2, -1), keepdim=True) + 1e-12  # its floored model
    mean_z = (m_dep / m_int.clamp_min(1e-9)).detach()
    weight = 1.0 / ((mean_z**2 + sigma_z**2) * r)
    resid = d_dep - m_dep
    tz = (weight * resid * m_int).sum((-2, -1)) / (weight * m_int**2).sum((-2, -1)).clamp_min(1e-12)
    chi2 = (weight * (resid - tz[:, None, None] * m_int) ** 2).sum((-2, -1))
    return deviance, 0.5 * chi2


def _pooled(images: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(images[:, None], POOL)[:, 0] * POOL * POOL


def _centroids(intensity: torch.Tensor) -> torch.Tensor:
    """Intensity centroids ``[B, 2]`` in model units (x right, y up; 1 unit = size / 4 px)."""
    size = intensity.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mass = intensity.sum((-2, -1))
    cx, cy = ((intensity * g).sum((-2, -1)) / mass for g in (xs, ys))
    return torch.stack([(cx - size / 2) * 4 / size, (size / 2 - cy) * 4 / size], -1)


def search(points, data, sigma: float, sigma_z: float, lam: float, n_rotations: int, gen):
    """Each image's best rotation ``[B, 3, 3]`` and shift ``[B, 2]``: ``n_rotations`` random
    rotations scored on quarter-size copies at the centroid-matching shift, the best
    :data:`KEEP` refined by :data:`POSE_STEPS` Adam steps at full size."""
    intensity, depth = data
    b, size = len(intensity), intensity.shape[-1]
    low = (_pooled(intensity), _pooled(depth))
    candidates = random_rotations(n_rotations, gen)
    centre = torch.einsum("cij,j->ci", candidates, points.mean(0))[:, :2]
    shifts = _centroids(low[0])[:, None, :] - centre[None]  # [B, C, 2]
    with torch.no_grad():
        scores = []
        for i in range(b):
            model = model_images(points, candidates, shifts[i], sigma / POOL, size // POOL)
            one = tuple(x[i].expand(n_rotations, -1, -1) for x in low)
            dev, chi2 = deviance_and_depth(model, one, sigma_z)
            scores.append(dev + lam * chi2)
    top = torch.stack(scores).topk(KEEP, largest=False).indices  # [B, KEEP]
    start = candidates[top].reshape(b * KEEP, 3, 3)
    shift = shifts[torch.arange(b)[:, None], top].reshape(b * KEEP, 2).clone().requires_grad_()
    turn = torch.zeros(b * KEEP, 3, requires_grad=True)
    target = tuple(x.repeat_interleave(KEEP, 0) for x in data)
    opt = torch.optim.Adam([turn, shift], lr=POSE_LR)

    def loss() -> tuple[torch.Tensor, torch.Tensor]:
        rotations = axis_angle_to_matrix(turn) @ start
        dev, chi2 = deviance_and_depth(
            model_images(points, rotations, shift, sigma, size), target, sigma_z
        )
        return dev + lam * chi2, rotations

    for _ in range(POSE_STEPS):
        value, _ = loss()
        opt.zero_grad()
        value.sum().backward()
        opt.step()
    with torch.no_grad():
        value, rotations = loss()
    rows = torch.arange(b) * KEEP + value.reshape(b, KEEP).argmin(1)
    return rotations[rows].detach(), shift[rows].detach()


def fit(init, rotations, shifts, data, sigma, sigma_z, lam, steps, gen):
    """A cloud fitted from ``init [P, 3]`` at the held rotations (shifts fitted along):
    ``steps`` batches of 64, Adam 5e-3 on the points and 1e-3 on the shifts, L1 on the
    intensity plus ``lam`` times the depth term scaled to the L1 at the first batch."""
    points = torch.tensor(init, dtype=torch.float32, requires_grad=True)
    shifts = shifts.clone().requires_grad_()
    opt = torch.optim.Adam([{"params": [points], "lr": 5e-3}, {"params": [shifts], "lr": 1e-3}])
    size, scale = data[0].shape[-1], None
    for _ in range(steps):
        idx = torch.randint(len(rotations), (64,), generator=gen)
        model = model_images(points, rotations[idx], shifts[idx], sigma, size)
        value = (model[0] - data[0][idx]).abs().sum((-2, -1)).mean()
        if lam > 0:
            chi2 = deviance_and_depth(model, (data[0][idx], data[1][idx]), sigma_z)[1].mean()
            if scale is None:
                scale = float(value.detach() / chi2.detach().clamp_min(1e-9))
            value = value + lam * scale * chi2
        opt.zero_grad()
        value.backward()
        opt.step()
    return points.detach()


def report(name: str, cloud: torch.Tensor, sites: np.ndarray, seconds: float) -> None:
    x = cloud.double().numpy()
    proper, mirrored = hands(x, sites)
    print(
        f"{name}: Chamfer / blob {chamfer_ratio_to_blob(x, sites):.3f}, hands {proper:.4f} / "
        f"{mirrored:.4f} (proper / mirrored), {seconds:.0f} s",
        flush=True,
    )


class Cell:
    """A simulated cell's images, true sites and poses, and blur, in the store's units."""

    def __init__(self, folder: Path, n_images: int):
        store = ImageStore.open(folder / "store.zarr")
        params = read_record(folder / "sim.csv")["params"]  # checked: a simulation record
        nm = store.nm_per_model_unit
        self.sites = sites_in_model_units(folder)
        self.rotations = read_truth(folder / "sim.csv")["rotations"]
        self.n = min(n_images, len(self.rotations))
        self.data = particle_images(folder / "sim.csv", self.n, nm, store.height)
        px_per_unit = store.height / 4
        precision_px = params["sigma_xy_nm"] / nm * px_per_unit
        self.sigma = math.hypot(LEVEL_PX, precision_px)  # the level with the data's scatter
        self.sigma_z = params["sigma_z_nm"] / nm


def searched(cloud, cell: Cell, rows: range, lam: float, n_rotations: int, gen):
    """Every row's best rotation and shift against ``cloud``, in batches of :data:`BATCH`."""
    found = [
        search(
            cloud,
            tuple(x[lo : min(lo + BATCH, rows.stop)] for x in cell.data),
            cell.sigma,
            cell.sigma_z,
            lam,
            n_rotations,
            gen,
        )
        for lo in range(rows.start, rows.stop, BATCH)
    ]
    return torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found])


def identify(cell: Cell, args, gen) -> None:
    """How far each image's best pose against the true sites lies from its true pose."""
    sites = torch.tensor(truth_start(cell.sites.copy(), 150, 0.0, 0.0, args.seed))
    rows = range(0, min(args.identify, cell.n))
    true = cell.rotations[: rows.stop]
    for lam in (0.0, args.lam):
        found = searched(sites.float(), cell, rows, lam, args.rotations, gen)[0].double().numpy()
        angle = np.degrees(geodesic_angle(found, true))
        print(
            f"lam {lam:g}: best pose {np.median(angle):.1f} deg from the truth (median of "
            f"{len(angle)}), within 10 / 30 deg: {(angle < 10).mean():.0%} / "
            f"{(angle < 30).mean():.0%}",
            flush=True,
        )


def mirrored_share(start: str) -> float | None:
    """The share of true sites ``--start`` mirrors (0 for truth), None for the sphere."""
    if start == "sphere":
        return None
    if start == "truth":
        return 0.0
    try:
        share = float(start.split(":", 1)[1]) if start.startswith("mirrored:") else -1.0
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise HollyError(f"--start {start}: give sphere, truth or mirrored:F with F in 0..1")
    return share


def start_cloud(start: str, sites: np.ndarray, seed: int) -> np.ndarray:
    share = mirrored_share(start)
    if share is None:
        return blob_baseline(sites, 150, np.random.default_rng(seed))
    return truth_start(sites.copy(), 150, share, 0.0, seed)


def rounds(cell: Cell, args, gen) -> None:
    rng = np.random.default_rng(args.seed)
    cloud = torch.tensor(start_cloud(args.start, cell.sites, args.seed), dtype=torch.float32)
    report("start", cloud, cell.sites, 0.0)
    for k in range(args.rounds):
        began = time.time()
        rotations, shifts = searched(cloud, cell, range(cell.n), args.lam, args.rotations, gen)
        init = blob_baseline(cloud.double().numpy(), len(cloud), rng)
        cloud = fit(
            init, rotations, shifts, cell.data, cell.sigma, cell.sigma_z, args.lam,
            args.fit_steps, gen,
        )  # fmt: skip
        report(f"round {k + 1}", cloud, cell.sites, time.time() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="folder with sim.csv and store.zarr")
    parser.add_argument("--start", default="sphere", help="sphere, truth or mirrored:F")
    parser.add_argument("--lam", type=float, default=1.0, help="weight of the depth (0: none)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--images", type=int, default=1000, help="particles used (one image each)")
    parser.add_argument("--rotations", type=int, default=1024, help="random rotations an image")
    parser.add_argument("--fit-steps", type=int, default=800, help="batches of 64 a refit")
    parser.add_argument("--identify", type=int, default=0, help="only the pose test, N images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    try:
        if min(args.rounds, args.images, args.fit_steps) < 1 or args.rotations < KEEP:
            raise HollyError(f"--rounds, --images, --fit-steps >= 1 and --rotations >= {KEEP}")
        if args.lam < 0:
            raise HollyError("--lam must be >= 0")
        for name in ("sim.csv", "sim.json", "store.zarr"):
            if not (args.cell / name).exists():
                raise HollyError(f"{args.cell / name} does not exist: give a simulated cell folder")
        mirrored_share(args.start)  # a bad --start fails before the reading
        gen = torch.Generator().manual_seed(args.seed)
        cell = Cell(args.cell, args.images)
        identify(cell, args, gen) if args.identify else rounds(cell, args, gen)
    except (HollyError, OSError, ValueError, KeyError) as exc:
        log.error("depth_em: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
