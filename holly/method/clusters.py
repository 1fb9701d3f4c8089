"""Seeded k-means: the clusters of a cloud's points (the tetrahedron check's vertices, a cloud
started at the fused localisations' clusters)."""

from __future__ import annotations

import numpy as np

from holly.errors import HollyError


def kmeans(
    points: np.ndarray, k: int, seed: int = 0, restarts: int = 10, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means (k-means++ starts, Lloyd iterations, best of ``restarts``).

    Parameters
    ----------
    points : ndarray [N, D]
    k : int
        Clusters (``k <= N``).
    seed : int
        Seeds the starts: same input and seed, same clusters.

    Returns
    -------
    centres : ndarray [k, D]
    labels : ndarray [N] int
    """
    x = np.asarray(points, dtype=np.float64)
    if len(x) < k:
        raise HollyError(f"k-means with {k} clusters needs at least {k} points, got {len(x)}")
    rng = np.random.default_rng(seed)
    best = (np.inf, None, None)
    for _ in range(restarts):
        centres = _plus_plus_starts(x, k, rng)
        labels = np.zeros(len(x), dtype=int)
        for it in range(iterations):
            d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)  # [N, k]
            new = d2.argmin(1)
            if it and np.array_equal(new, labels):
                break
            labels = new
            _move_centres(x, labels, centres)
        inertia = ((x - centres[labels]) ** 2).sum()
        if inertia < best[0]:
            best = (inertia, centres.copy(), labels.copy())
    return best[1], best[2]


def _plus_plus_starts(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: each next start drawn far from the chosen ones (a running minimum of the
    squared distances: the same draws as recomputing them, in O(N k) instead of O(N k^2))."""
    centres = x[[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        centres = np.vstack([centres, x[rng.choice(len(x), p=p)]])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(-1))
    return centres


def _move_centres(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> None:
    """Each non-empty cluster's centre to its points' mean (in place; the points in their
    original order, so the means are those of ``x[labels == j]``)."""
    order = np.argsort(labels, kind="stable")
    found, starts = np.unique(labels[order], return_index=True)
    for j, group in zip(found, np.split(x[order], starts[1:]), strict=True):
        centres[j] = group.mean(0)
