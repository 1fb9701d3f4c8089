"""A cloud with a declared N-fold rotational symmetry about z (``refine.symmetry``).

With sparse particles the image loss can prefer a clumped cloud once every image's pose is free
as well: on holly's simulated 30 % pores the refinement started from an 8-fold ring (the site
template's fusion) gathered it into five groups in 300 steps while its loss fell
(docs/maintainer-notes.md, "A site template and a declared symmetry"). Where the user knows the
structure's symmetry, the cloud is kept in it: ``N`` turns of ``count / N`` points, laid out
turn-major (point ``k m + j`` is point ``j`` of the part turned by ``2 pi k / N``), and after
every update projected back onto such clouds (each part the mean of its ``N`` turned-back
copies): the symmetric cloud nearest the updated one, so the update is a projected gradient
step. The axis is the model's z axis through the origin; the fusion's frame puts the declared
axis there (holly.data.fusionrecord.fusion_start).
"""

from __future__ import annotations

import numpy as np
import torch

from holly.method.clusters import kmeans
from holly.method.geometry import cyclic_turns


def orbit(part: torch.Tensor, order: int) -> torch.Tensor:
    """The cloud ``[order * m, 3]`` of ``part [m, 3]`` turned by each of the turns, turn-major."""
    turns = cyclic_turns(order, part.dtype).to(part.device)
    return torch.einsum("kab,mb->kma", turns, part).reshape(-1, 3)


def project(points: torch.Tensor, order: int) -> torch.Tensor:
    """The ``order``-fold symmetric cloud nearest ``points [order * m, 3]`` (turn-major): each
    part the mean of its turned-back copies."""
    if order <= 1:
        return points
    copies = points.reshape(order, -1, 3)
    turns = cyclic_turns(order, points.dtype).to(points.device)
    back = torch.einsum("kba,kmb->kma", turns, copies)  # R_k^T x
    return orbit(back.mean(0), order)


def fold(xy: np.ndarray, order: int) -> np.ndarray:
    """Points ``[N, 2+]`` each turned about z into the sector ``[0, 2 pi / order)``."""
    sector = 2 * np.pi / order
    k = np.floor(np.arctan2(xy[:, 1], xy[:, 0]) % (2 * np.pi) / sector)
    c, s = np.cos(-k * sector), np.sin(-k * sector)
    out = np.array(xy, dtype=np.float64, copy=True)
    out[:, 0], out[:, 1] = c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]
    return out


def symmetric_start(points: np.ndarray, order: int, seed: int) -> np.ndarray:
    """A symmetric cloud of ``len(points)`` points like ``points [N, 3]``: k-means centres of
    the points folded into one sector, turned into every other."""
    part, _ = kmeans(fold(points, order), len(points) // order, seed, restarts=1, iterations=50)
    return orbit(torch.from_numpy(part), order).numpy()


def symmetry_axis(points: np.ndarray, order: int, seed: int) -> np.ndarray:
    """The rotation ``Q [3, 3]`` that turns the cloud's likeliest ``order``-fold axis onto z:
    of its three principal axes, the one about which the cloud is closest to its symmetric
    start (mean nearest-neighbour distance both ways). A cloud from the CNN phase sits in a
    frame of its own; a fused one already has its axis on z."""
    centred = points - points.mean(0)
    _, vecs = np.linalg.eigh(np.cov(centred.T))
    best, best_gap = np.eye(3), np.inf
    for k in range(3):
        axis = vecs[:, k]
        others = [vecs[:, j] for j in range(3) if j != k]
        q = np.stack([others[0], np.cross(axis, others[0]), axis])  # rows: x, y, z; det +1
        turned = centred @ q.T
        gap = _chamfer(turned, symmetric_start(turned, order, seed))
        if gap < best_gap:
            best, best_gap = q, gap
    return best


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    return float(d.min(1).mean() + d.min(0).mean())
