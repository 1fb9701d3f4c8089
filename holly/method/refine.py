"""Per-image pose refinement against the learned cloud (after the amortised phase).

The CNN gives every image one pose per hypothesis head; for near-symmetric shapes it often
picks a symmetric twin of the true pose, and the cloud is then pulled towards the average of
the twins. Refinement, which needs no ground truth:

1. **A pose table** for a seeded subset of training images (``refine.images``): rotation,
   image-plane shift and sigma per image (:class:`PoseTable`).
2. **Candidates** per image (:func:`holly.method.poses.candidate_poses`): the K hypotheses,
   composed with the current cloud's own near-symmetries (found by self-registration,
   :func:`holly.method.align.self_symmetries`) and, optionally, the three image flips. Each
   image starts from its best-scoring candidate.
3. **Alternating descent**: per batch, ``refine.pose_steps`` Adam steps on the batch's poses
   (cloud fixed), then one step on the cloud (poses fixed). Every ``refine.rescore_every`` steps
   the candidates of every table image are scored again against the sharper cloud. In the first
   ``refine.global_steps`` steps each batch is first searched afresh over random rotations
   (:func:`fresh_search`), so that poses found against a wrong first cloud can still leave it.
4. **Held-out images** get the same candidate search and ``refine.test_steps`` pose steps with
   the cloud fixed (:func:`refine_poses`): their pose error is the one reported.

The loss is the experiment's L1 kind on per-image normalised images (each image sums to 100),
so an image's loss does not depend on which other images share its batch, and the pose table is
well defined. Everything is seeded and stored in the checkpoint, so a resumed refinement
continues exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from holly.method.align import self_symmetries
from holly.method.geometry import axis_angle_to_matrix, geodesic_angle
from holly.method.loss import hypothesis_losses, normalise
from holly.method.poses import candidate_poses, centroid_shifts
from holly.method.render import render, total_blur
from holly.method.viewprior import UNIFORM, PosePrior

log = logging.getLogger(__name__)

# Renders per chunk when scoring candidates (bounds memory: chunk x H x W floats).
SCORE_CHUNK = 4096


@dataclass
class RenderSpec:
    """What rendering and scoring need besides the poses."""

    height: int
    width: int
    loss_kind: str
    mask_threshold: float
    data_blur: float = 0.0  # pixels the data carry beyond their level (render.data_blur)


def pose_losses(
    points: torch.Tensor,
    rotations: torch.Tensor,
    shifts: torch.Tensor,
    sigma: torch.Tensor,
    target: torch.Tensor,
    spec: RenderSpec,
) -> torch.Tensor:
    """Per-image loss ``[B]`` of the cloud rendered at image-plane poses against per-image
    normalised ``target [B, H, W]``."""
    images = render(
        points,
        rotations,
        shifts,
        total_blur(sigma, spec.data_blur),
        spec.height,
        spec.width,
        order="latest",
    )
    return hypothesis_losses(images[:, None], target, "image", spec.loss_kind, spec.mask_threshold)[
        :, 0
    ]


@torch.no_grad()
def best_candidates(
    points: torch.Tensor,
    rotations: torch.Tensor,
    shifts: torch.Tensor,
    sigma: torch.Tensor,
    target: torch.Tensor,
    spec: RenderSpec,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image's best candidate.

    Parameters
    ----------
    rotations : Tensor [B, C, 3, 3]
    shifts : Tensor [B, C, 2]
    sigma : Tensor [B]
    target : Tensor [B, H, W]
        Per-image normalised images.

    Returns
    -------
    rotation [B, 3, 3], shift [B, 2], index [B] (long) of the winning candidate.
    """
    b, c = rotations.shape[:2]
    per_chunk = max(1, SCORE_CHUNK // c)
    losses = []
    for lo in range(0, b, per_chunk):
        sl = slice(lo, lo + per_chunk)
        n = rotations[sl].shape[0]
        loss = pose_losses(
            points,
            rotations[sl].reshape(n * c, 3, 3),
            shifts[sl].reshape(n * c, 2),
            sigma[sl].repeat_interleave(c),
            target[sl].repeat_interleave(c, 0),
            spec,
        )
        losses.append(loss.reshape(n, c))
    best = torch.cat(losses).argmin(1)
    rows = torch.arange(b, device=best.device)
    return rotations[rows, best], shifts[rows, best], best


class RowAdam:
    """Adam on the rows of one table ``[I, D]``, updating only the rows of each batch.

    A dense optimiser would keep moving every row by its stale momentum while other images are
    being refined; here a row changes only when its image is in the batch, with its own step
    count for the bias correction.
    """

    def __init__(self, rows: int, width: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros(rows, width)
        self.v = torch.zeros(rows, width)
        self.t = torch.zeros(rows)

    def to(self, device: torch.device) -> RowAdam:
        self.m, self.v, self.t = self.m.to(device), self.v.to(device), self.t.to(device)
        return self

    def step(self, table: torch.Tensor, idx: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t[idx] += 1
        self.m[idx] = b1 * self.m[idx] + (1 - b1) * grad
        self.v[idx] = b2 * self.v[idx] + (1 - b2) * grad * grad
        t = self.t[idx][:, None]
        m_hat = self.m[idx] / (1 - b1**t)
        v_hat = self.v[idx] / (1 - b2**t)
        table[idx] -= self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def reset(self, idx: torch.Tensor) -> None:
        """Forget the history of rows ``idx`` (their pose jumped to a new candidate)."""
        self.m[idx], self.v[idx], self.t[idx] = 0.0, 0.0, 0.0

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.m, self.v, self.t = state["m"], state["v"], state["t"]


class PoseTable:
    """Poses of ``I`` images: ``rotation = exp([w]x) @ base``, image-plane ``shift``, ``sigma``.

    ``base [I, 3, 3]`` is where an image's pose last jumped (a candidate); the refined part is
    the packed table ``x [I, 6] = (w (3, axis-angle, radians), shift (2, model units),
    sigma (1, pixels))``, optimised by :class:`RowAdam`. The rotations keep to the pose
    ``prior`` (projected, :mod:`holly.method.viewprior`; not stored: it is the config's).
    """

    def __init__(
        self,
        base: torch.Tensor,
        shifts: torch.Tensor,
        sigma: torch.Tensor,
        prior: PosePrior = UNIFORM,
    ):
        self.prior = prior
        self.base = base.clone()
        rotation_delta = torch.zeros_like(shifts[:, :1]).expand(-1, 3)
        self.x = torch.cat([rotation_delta, shifts, sigma[:, None]], 1)

    def __len__(self) -> int:
        return self.base.shape[0]

    def pose(self, idx: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Rotations ``[b, 3, 3]``, shifts ``[b, 2]``, sigma ``[b]`` of rows ``idx`` (from ``x``
        if given: the rows with gradient)."""
        x = self.x[idx] if x is None else x
        rotations = self.prior.project(axis_angle_to_matrix(x[:, :3]) @ self.base[idx])
        return rotations, x[:, 3:5], x[:, 5]

    def jump(self, idx: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor) -> None:
        """Set rows ``idx`` to new poses (sigma kept)."""
        self.base[idx] = rotations
        self.x[idx, :3] = 0.0
        self.x[idx, 3:5] = shifts

    def state_dict(self) -> dict:
        return {"base": self.base, "x": self.x}

    @classmethod
    def from_state(cls, state: dict, prior: PosePrior = UNIFORM) -> PoseTable:
        table = cls.__new__(cls)
        table.base, table.x, table.prior = state["base"], state["x"], prior
        return table


def cloud_symmetries(points: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Near-symmetries ``[J, 3, 3]`` of the cloud and its centroid ``[3]`` (torch, its device)."""
    x = points.detach().cpu().double().numpy()
    rotations, chamfer = self_symmetries(x, count, seed)
    log.info(
        "cloud near-symmetries: %d (chamfer %s)",
        len(rotations),
        " ".join(f"{c:.3f}" for c in chamfer),
    )
    as_t = torch.as_tensor(rotations, dtype=points.dtype, device=points.device)
    return as_t, torch.as_tensor(x.mean(0), dtype=points.dtype, device=points.device)


def search_candidates(
    points: torch.Tensor,
    hypotheses: torch.Tensor,
    shifts: torch.Tensor,
    sigma: torch.Tensor,
    target: torch.Tensor,
    spec: RenderSpec,
    symmetries: tuple[torch.Tensor, torch.Tensor],
    flips: bool,
    prior: PosePrior = UNIFORM,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best local candidate (:func:`holly.method.poses.candidate_poses`) of each image, in two
    rounds: the hypotheses with the cloud's near-symmetries, then the image flips of the winner (``K
    J + 4`` renders per image instead of ``4 K J``). Each candidate is scored at the shift that
    matches the image's intensity centroid (:func:`holly.method.poses.centroid_shifts`); ``shifts``
    only fixes the shape of the result. Candidates are projected onto the pose ``prior`` (the
    image flips keep to it: they turn a view of one face into a view of the other). See
    :func:`best_candidates` for the returns; the index is 0 when the image kept its first
    hypothesis."""
    points = points.detach()
    centroid = points.mean(0)
    rotations, _ = candidate_poses(hypotheses, shifts, symmetries[0], centroid, flips=False)
    rotations = prior.project(rotations)
    cand_shifts = centroid_shifts(rotations, target, centroid)
    rot, shift, first = best_candidates(points, rotations, cand_shifts, sigma, target, spec)
    if not flips:
        return rot, shift, first
    identity = symmetries[0][:1]
    rotations, _ = candidate_poses(rot[:, None], shift, identity, centroid, True)
    rotations = prior.project(rotations)
    cand_shifts = centroid_shifts(rotations, target, centroid)
    rot, shift, second = best_candidates(points, rotations, cand_shifts, sigma, target, spec)
    return rot, shift, first + second


@dataclass
class SearchSpec:
    """How :func:`search_poses` searches (``refine.search_*`` keys of the config)."""

    rotations: int  # seeded random rotations added to every image's candidates (global search)
    sigma: float  # pixels (full resolution): the blur at which candidates are scored
    keep: int  # distinct best candidates per image refined before the final choice
    ladder_steps: int  # pose steps at each of the three blur levels
    lr: float
    batch_size: int
    flips: bool
    seed: int
    prior: PosePrior = UNIFORM  # candidates and refined poses keep to it


# Candidates are scored at about this many pixels across (a pooled copy of each image): the
# score only has to rank poses at a blur of several pixels, and it costs H x W per render.
# Measured on a learned tetrapod (64 px, 256 held-out images, 1024 random rotations, keep 4):
# 16 px gave a median error of 0.7 deg, as good as 32 px, at a quarter of the cost.
SEARCH_SIZE = 16
DISTINCT_DEG = 30.0  # candidates kept for refinement differ by more than this
TOP_POOL = 16  # the distinct ones are picked among this many best-scoring candidates


def _pooled(images: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return images
    return torch.nn.functional.avg_pool2d(images[:, None], factor)[:, 0]


def _candidate_losses(points, rotations, target, sigma_px, spec, factor) -> tuple:
    """Losses ``[B, C]`` and shifts ``[B, C, 2]`` of candidate rotations ``[B, C, 3, 3]`` at a
    resolution reduced by ``factor``, each at its centroid-matching shift."""
    low = _pooled(target, factor)
    low = low * (100.0 / low.sum((-2, -1), keepdim=True).clamp_min(1e-12))
    low_spec = RenderSpec(
        low.shape[-2], low.shape[-1], spec.loss_kind, spec.mask_threshold, spec.data_blur / factor
    )
    shifts = centroid_shifts(rotations, low, points.mean(0))
    b, c = rotations.shape[:2]
    per_chunk = max(1, SCORE_CHUNK // c)
    sigma = torch.full((c,), sigma_px / factor, dtype=points.dtype, device=points.device)
    losses = []
    with torch.no_grad():
        for lo in range(0, b, per_chunk):
            n = rotations[lo : lo + per_chunk].shape[0]
            losses.append(
                pose_losses(
                    points,
                    rotations[lo : lo + n].reshape(n * c, 3, 3),
                    shifts[lo : lo + n].reshape(n * c, 2),
                    sigma.repeat(n),
                    low[lo : lo + n].repeat_interleave(c, 0),
                    low_spec,
                ).reshape(n, c)
            )
    return torch.cat(losses), shifts


def top_distinct(losses: torch.Tensor, rotations: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices ``[B, keep]`` of each row's best candidates that differ pairwise by more than
    :data:`DISTINCT_DEG` (greedy in loss order; padded with the best when fewer exist)."""
    pool = min(TOP_POOL, losses.shape[1])
    top = losses.topk(pool, dim=1, largest=False).indices  # [B, T], ascending loss
    rows = torch.arange(len(top), device=top.device)[:, None]
    cand = rotations[rows, top]  # [B, T, 3, 3]
    near = geodesic_angle(cand[:, :, None], cand[:, None, :]) < np.radians(DISTINCT_DEG)
    chosen = torch.zeros_like(top, dtype=torch.bool)
    chosen[:, 0] = True
    for t in range(1, pool):
        free = ~(chosen & near[:, t]).any(1) & (chosen.sum(1) < keep)
        chosen[:, t] = free
    rank = torch.where(chosen, 0, pool) + torch.arange(pool, device=top.device)
    first = rank.argsort(1)[:, :keep]  # positions of the chosen ones, best first
    picked = top.gather(1, first)
    ok = chosen.gather(1, first)
    return torch.where(ok, picked, top[:, :1])


def search_poses(
    points: torch.Tensor,
    hypotheses: torch.Tensor,
    images_at,
    final_sigma: float,
    spec: RenderSpec,
    search: SearchSpec,
    symmetries: tuple[torch.Tensor, torch.Tensor],
) -> PoseTable:
    """Poses of a set of images against a fixed cloud: a global candidate search, then local
    refinement of the best few candidates from coarse to fine blur, and the best of those.

    1. Candidates per image: its K hypotheses composed with the cloud's near-symmetries and the
       image flips (:func:`holly.method.poses.candidate_poses`), plus ``search.rotations`` seeded
       random rotations (the same for every image), each at the shift that matches the image's
       intensity centroid. They are scored at blur ``search.sigma`` on ~16-pixel copies.
    2. The ``search.keep`` best distinct candidates are refined by ``search.ladder_steps`` pose
       steps at each blur of ``search.sigma -> final_sigma`` (three geometric levels); a
       candidate far from the truth at the coarse blur can still win once details show.
    3. Each image keeps the candidate with the lowest loss at ``final_sigma``.

    Parameters
    ----------
    hypotheses : Tensor [B, K, 3, 3]
    images_at : callable
        ``images_at(sigma) -> Tensor [B, H, W]``: the images at blur ``sigma`` (pixels).

    Returns
    -------
    PoseTable
        ``B`` rows, sigma set to ``final_sigma``.
    """
    points = points.detach()
    table, m = _best_distinct_candidates(points, hypotheses, images_at, spec, search, symmetries)
    target = _refine_down_the_ladder(points, table, m, images_at, final_sigma, spec, search)
    rot, shift, sigma = _best_rows(points, table, m, target, spec)
    return PoseTable(rot, shift, sigma, search.prior)


@torch.no_grad()
def _best_rows(points, table: PoseTable, m: int, target, spec: RenderSpec) -> tuple:
    """Each image's best of its ``m`` consecutive rows of ``table`` (``target``: the rows'
    normalised images): rotations, shifts, sigmas ``[B, ...]``."""
    b, dev = len(table) // m, points.device
    losses = pose_losses(points, *table.pose(torch.arange(b * m, device=dev)), target, spec)
    return table.pose(torch.arange(b, device=dev) * m + losses.reshape(b, m).argmin(1))


def _best_distinct_candidates(
    points: torch.Tensor,
    hypotheses: torch.Tensor,
    images_at,
    spec: RenderSpec,
    search: SearchSpec,
    symmetries: tuple[torch.Tensor, torch.Tensor],
) -> tuple[PoseTable, int]:
    """Step 1 of :func:`search_poses`: the ``M = search.keep`` best distinct candidates of each
    image, scored at blur ``search.sigma``, as a table of ``B * M`` rows (each image's ``M``
    rows together) at sigma ``search.sigma``; and ``M``."""
    b = hypotheses.shape[0]
    local, _ = candidate_poses(
        hypotheses,
        hypotheses.new_zeros(b, 2),
        symmetries[0],
        symmetries[1],
        search.flips,
    )
    local = search.prior.project(local)
    gen = torch.Generator().manual_seed(search.seed * 9973 + 11)
    grid = search.prior.sample(search.rotations, gen).to(hypotheses)
    rotations = torch.cat([local, grid[None].expand(b, -1, -1, -1)], 1)  # [B, C, 3, 3]
    sigma = torch.full((b,), search.sigma, dtype=points.dtype, device=points.device)
    target = images_at(search.sigma)
    return _distinct_table(
        points, rotations, target, search.sigma, sigma, spec, search.keep, search.prior
    )


def _distinct_table(
    points, rotations, target, score_sigma: float, sigma, spec: RenderSpec, keep: int, prior
) -> tuple[PoseTable, int]:
    """The ``M`` (at most ``keep``) best distinct of each image's candidate ``rotations
    [B, C, 3, 3]``, scored on pooled copies of ``target`` (normalised images) rendered at
    ``score_sigma`` pixels, each at its centroid shift, as a table of ``B * M`` rows (each
    image's together, at its ``sigma [B]``); and ``M``."""
    factor = max(1, spec.height // SEARCH_SIZE)
    losses, low_shifts = _candidate_losses(points, rotations, target, score_sigma, spec, factor)
    pick = top_distinct(losses, rotations, keep)  # [B, M]
    b, m = pick.shape
    rows = torch.arange(b, device=pick.device)[:, None]
    # the low-resolution shift is the full-resolution one: q does not depend on the image size
    table = PoseTable(
        rotations[rows, pick].reshape(b * m, 3, 3),
        low_shifts[rows, pick].reshape(b * m, 2),
        sigma.repeat_interleave(m),
        prior,
    )
    return table, m


def _refine_down_the_ladder(
    points: torch.Tensor,
    table: PoseTable,
    m: int,
    images_at,
    final_sigma: float,
    spec: RenderSpec,
    search: SearchSpec,
) -> torch.Tensor:
    """Step 2 of :func:`search_poses`: ``search.ladder_steps`` pose steps on every row of
    ``table`` (``m`` per image) at each blur from ``search.sigma`` down to ``final_sigma``, in
    place. Returns the last level's targets, normalised images ``[B * m, H, W]``."""
    ladder = (
        np.geomspace(search.sigma, final_sigma, 3) if search.sigma > final_sigma else [final_sigma]
    )
    for level in ladder:
        table.x[:, 5] = float(level)
        target = normalised(images_at(float(level))).repeat_interleave(m, 0)
        refine_poses(
            points,
            table,
            target,
            spec,
            search.ladder_steps,
            search.lr,
            search.batch_size,
            learn_sigma=False,
        )
    return target


def pose_step(
    points: torch.Tensor,
    table: PoseTable,
    adam: RowAdam,
    idx: torch.Tensor,
    target: torch.Tensor,
    spec: RenderSpec,
    learn_sigma: bool = True,
) -> torch.Tensor:
    """One Adam step on the poses of rows ``idx`` with the cloud fixed (sigma only if
    ``learn_sigma``); returns the losses ``[b]`` before the step."""
    x = table.x[idx].clone().requires_grad_(True)
    loss = pose_losses(points.detach(), *table.pose(idx, x), target, spec)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    if not learn_sigma:
        grad[:, 5] = 0.0
    adam.step(table.x, idx, grad)
    return loss.detach()


def refine_poses(
    points: torch.Tensor,
    table: PoseTable,
    target: torch.Tensor,
    spec: RenderSpec,
    steps: int,
    lr: float,
    batch_size: int,
    learn_sigma: bool = True,
) -> PoseTable:
    """``steps`` pose-only Adam steps on every row of ``table`` (cloud fixed), in batches;
    ``target [I, H, W]`` are the rows' per-image normalised images."""
    adam = RowAdam(len(table), 6, lr).to(table.x.device)
    order = torch.arange(len(table), device=table.x.device)
    for _ in range(steps):
        for idx in order.split(batch_size):
            pose_step(points, table, adam, idx, target[idx], spec, learn_sigma)
    return table


def fresh_search(
    points: torch.Tensor,
    table: PoseTable,
    idx: torch.Tensor,
    target: torch.Tensor,
    spec: RenderSpec,
    rotations: torch.Tensor,
    keep: int,
    steps: int,
    lr: float,
) -> torch.Tensor:
    """Table rows ``idx`` searched afresh against the current cloud, their old poses dropped;
    returns which rows moved by more than :data:`DISTINCT_DEG`.

    Why: the table's first search is against the CNN's cloud, and when that cloud is wrong the
    poses it gives are consistent with it. Rows that only ever move locally (pose steps, the
    local rescoring) then keep the cloud where it is: on the sparse simulated helix the poses
    ended 130 deg from the truth while fitting their images better than the true poses did.
    Re-drawing each batch's poses from a fresh search at every visit (stochastic hard EM, as
    in cryo-EM's stochastic ab initio) lets the cloud and the poses leave such a pair. Keeping
    a row's old pose where it still fits better did not: 1-3 of 64 rows moved per batch. With
    the old poses dropped they move, but the helix did not get better in holly (0.55-0.58
    Chamfer / blob against 0.55-0.62; a prototype reached 0.45-0.48, its poses still wrong):
    hence off by default (docs/maintainer-notes.md, "A fresh pose search").

    Candidates are ``rotations [R, 3, 3]`` (fresh random ones per call, drawn from the table's
    prior: :meth:`PosePrior.sample`), scored on ~16-pixel copies of ``target [B, H, W]``
    (normalised images at the rows' level) at their centroid shifts; the ``keep`` best
    distinct get ``steps`` pose steps at full size (learning rate ``lr``), and each row jumps
    to the best of them (its sigma kept): :func:`search_poses`'s steps, from random
    rotations only and at one level.
    """
    points = points.detach()
    old, _, sigma = table.pose(idx)
    candidates = rotations[None].expand(len(idx), -1, -1, -1)
    trial, m = _distinct_table(
        points, candidates, target, float(sigma.mean()), sigma, spec, keep, table.prior
    )
    repeated = target.repeat_interleave(m, 0)
    with torch.enable_grad():
        refine_poses(points, trial, repeated, spec, steps, lr, len(trial), learn_sigma=False)
    new_rot, new_shift, _ = _best_rows(points, trial, m, repeated, spec)
    table.jump(idx, new_rot, new_shift)
    return geodesic_angle(old, new_rot) > np.radians(DISTINCT_DEG)


def table_subset(n_items: int, n_rows: int, seed: int) -> torch.Tensor:
    """The seeded subset of training items in the pose table (sorted)."""
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    return torch.randperm(n_items, generator=gen)[: min(n_rows, n_items)].sort().values


def batch_rows(n_rows: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Table rows of refinement ``step``: a fresh seeded permutation per pass over the table."""
    per_pass = max(1, n_rows // batch_size)
    epoch, k = divmod(step, per_pass)
    gen = torch.Generator().manual_seed(seed * 104729 + 31 * epoch + 5)
    return torch.randperm(n_rows, generator=gen)[k * batch_size : (k + 1) * batch_size]


def normalised(images: torch.Tensor) -> torch.Tensor:
    """Per-image normalisation used throughout refinement (each image sums to 100)."""
    return normalise(images, "image")
