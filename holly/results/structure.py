"""Checks of a reconstruction against a structure known in advance, without holly's renderer.

Each check is a pure function of the cloud (``points [N, 3]``, any length unit) that measures
what the structure should have, so a real-data run can be judged without ground-truth points:

* ``tetrahedron`` (:func:`tetrahedron`): four vertex clusters (seeded k-means), the six edges
  between their centres (equal for a regular tetrahedron: ``edge_spread`` = (max - min) / mean
  is 0) and how compact the clusters are (``compactness``: the fraction of points within a
  quarter edge of their cluster's centre), beside the localisation precision when known.
* ``ring`` (:func:`ring`): the ring radius (median radial distance in the best-fitting plane,
  whose normal is taken as the symmetry axis) and the angular spectrum of the projected cloud,
  ``|mean exp(i k phi)|`` for orders ``k = 1..12``; an 8-fold pore has order 8 dominant.
  A model cloud (e.g. the NPC model's 32 sites) gets the same measurement for comparison.
* ``flat`` (:func:`flat`): the principal extents (central 95 % range along each principal axis)
  and ``flatness`` = smallest / largest extent (0 for a flat object), beside the same 2D
  extents of the localisations themselves (median over particles, :func:`particle_extents`).

Lengths come back in the cloud's units; :func:`check` adds ``*_nm`` values where the caller
knows nm per unit. ``evaluation.json`` holds the result under ``structure`` (holly evaluate
``--structure``).
"""

from __future__ import annotations

import numpy as np

from holly.errors import HollyError
from holly.method.clusters import kmeans
from holly.results.sites import site_recall

CHECKS = ("tetrahedron", "ring", "flat")
# The targets for the shared particle sets (docs: README, real data).
TETRAHEDRON_TARGETS = {"edge_spread_max": 0.03, "compactness_min": 0.9}
RING_TARGETS = {"radius_ratio_tolerance": 0.10, "dominant_order": 8}
MAX_ORDER = 12


def _cloud(points: np.ndarray, at_least: int) -> np.ndarray:
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) < at_least or not np.isfinite(x).all():
        raise HollyError(
            f"a structure check needs at least {at_least} finite points [N, 3], got shape {x.shape}"
        )
    return x


def _edges(centres: np.ndarray) -> np.ndarray:
    """The 6 distances between 4 centres, ascending."""
    i, j = np.triu_indices(4, 1)
    return np.sort(np.linalg.norm(centres[i] - centres[j], axis=1))


def vertex_clusters(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The four vertex clusters of a tetrahedral cloud: ``centres [4, 3]``, ``labels [N]``
    (seeded k-means, :func:`kmeans`; the same clusters the tetrahedron check measures)."""
    return kmeans(_cloud(points, 4), 4, seed)


REGULAR_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(8)
FLOOR_DRAWS = 50


def spread_floor(sizes: np.ndarray, sd: float, seed: int = 0, draws: int = FLOOR_DRAWS) -> dict:
    """The edge spread that sampling alone gives: a perfect regular tetrahedron (edge 1) with
    ``sizes[k]`` points about vertex ``k``, isotropic Gaussian scatter of per-axis ``sd`` (in
    edges), measured like a reconstruction (:func:`vertex_clusters`), ``draws`` times.

    A cluster centre of ``n`` points scattered by ``sd`` is off by ``sd / sqrt(n)`` per axis,
    so a cloud of few, loose points cannot show equal edges even when its shape is right: a
    spread at this floor is all the measurement can resolve. Returns ``median`` and ``p90``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        blobs = zip(REGULAR_TETRAHEDRON, sizes, strict=True)
        x = np.concatenate([v + rng.normal(0, sd, (max(int(n), 1), 3)) for v, n in blobs])
        e = _edges(vertex_clusters(x, seed)[0])
        out.append((e.max() - e.min()) / e.mean())
    return {"median": float(np.median(out)), "p90": float(np.percentile(out, 90))}


def tetrahedron(points: np.ndarray, precision: float | None = None, seed: int = 0) -> dict:
    """Four vertex clusters: edge lengths, their spread and the clusters' compactness.

    Parameters
    ----------
    points : ndarray [N, 3]
        The reconstruction (any length unit).
    precision : float, optional
        Localisation precision (per-axis sd) in the same unit, to compare the clusters' spread
        with: ``cluster_sd_over_precision`` (about 1 when the cloud is as sharp as the data).
    seed : int
        Seed of the k-means starts.

    Returns
    -------
    dict
        ``edges`` (6, ascending), ``edge_mean``, ``edge_spread`` ((max - min) / mean),
        ``compactness`` (fraction of points within ``edge_mean / 4`` of their centre),
        ``cluster_sizes``, ``smallest_cluster_share`` (the smallest cluster's points x 4 / N:
        near 0 when a vertex is almost empty), ``cluster_sd`` (per-axis sd of the points about
        their centres),
        ``precision``, ``cluster_sd_over_precision``, ``edge_spread_floor`` and
        ``edge_spread_floor_p90`` (median and 90th percentile of the spread a perfect regular
        tetrahedron sampled with these cluster sizes and scatter gives, :func:`spread_floor`),
        ``vertices`` (the 4 cluster centres), ``targets``, ``meets_targets``.
    """
    x = _cloud(points, 4)
    centres, labels = vertex_clusters(x, seed)
    edges = _edges(centres)
    mean = float(edges.mean())
    if mean <= 0:
        raise HollyError("the cloud's four clusters coincide: no tetrahedron to measure")
    spread = float((edges.max() - edges.min()) / mean)
    dist = np.linalg.norm(x - centres[labels], axis=1)
    compactness = float((dist <= mean / 4).mean())
    sd = float(np.sqrt((dist**2).mean() / 3))
    sizes = np.bincount(labels, minlength=4)
    floor = spread_floor(sizes, sd / mean, seed)
    t = TETRAHEDRON_TARGETS
    meets = spread <= t["edge_spread_max"] and compactness >= t["compactness_min"]
    return {
        "edges": edges.tolist(),
        "edge_mean": mean,
        "edge_spread": spread,
        # what a perfect regular tetrahedron sampled like this cloud would measure
        "edge_spread_floor": floor["median"],
        "edge_spread_floor_p90": floor["p90"],
        "vertices": centres.tolist(),
        "compactness": compactness,
        "cluster_sizes": sizes.tolist(),
        # 1 when the points are shared equally; near 0 when a vertex is (almost) empty
        "smallest_cluster_share": float(sizes.min() * 4 / len(x)),
        "cluster_sd": sd,
        "precision": precision,
        "cluster_sd_over_precision": sd / precision if precision else None,
        "targets": dict(t),
        "meets_targets": bool(meets),
    }


def _principal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and principal axes (rows, largest variance first) of a cloud."""
    centre = x.mean(0)
    _, vecs = np.linalg.eigh(np.cov((x - centre).T))
    return centre, vecs[:, ::-1].T


def angular_spectrum(phi: np.ndarray, max_order: int = MAX_ORDER) -> np.ndarray:
    """``|mean exp(i k phi)|`` for ``k = 1..max_order`` (``[max_order]``, each in [0, 1])."""
    k = np.arange(1, max_order + 1)
    return np.abs(np.exp(1j * k[:, None] * phi[None]).mean(1))


def _circle_centre(uv: np.ndarray) -> np.ndarray:
    """Centre of the least-squares circle through ``uv [N, 2]`` (Kasa's algebraic fit).

    Unlike the centroid, it stays at the ring's centre when the corners hold unequal numbers
    of points (a centroid pulled off-centre leaks order k into k +- 1 of the spectrum)."""
    a = np.column_stack([2 * uv, np.ones(len(uv))])
    b = (uv**2).sum(1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:2]
    if not np.isfinite(centre).all() or np.linalg.norm(centre) > np.abs(uv).max():
        return np.zeros(2)  # no circle to speak of: keep the centroid
    return centre


def ring(points: np.ndarray, max_order: int = MAX_ORDER) -> dict:
    """Ring radius and angular spectrum in the best-fitting plane.

    The symmetry axis is the normal of the best-fitting plane (the principal axis of least
    variance). Points are projected onto the plane around the best-fitting circle's centre
    (:func:`_circle_centre`); the radius is the median
    radial distance; the spectrum uses the points within 50 % of that radius from the ring (a
    point near the axis has no meaningful angle).

    Returns
    -------
    dict
        ``radius``, ``axis`` (unit normal), ``spectrum`` (orders 1..max_order),
        ``dominant_order`` (1-based), ``ring_points`` (used for the spectrum).
    """
    x = _cloud(points, 3)
    centre, axes = _principal(x)
    uv = (x - centre) @ axes[:2].T  # [N, 2] in the plane
    uv = uv - _circle_centre(uv)
    r = np.hypot(uv[:, 0], uv[:, 1])
    radius = float(np.median(r))
    near = np.abs(r - radius) <= 0.5 * radius
    phi = np.arctan2(uv[near, 1], uv[near, 0])
    spectrum = angular_spectrum(phi, max_order) if near.any() else np.zeros(max_order)
    return {
        "radius": radius,
        "axis": axes[2].tolist(),
        "spectrum": spectrum.tolist(),
        "dominant_order": int(spectrum.argmax()) + 1,
        "ring_points": int(near.sum()),
    }


def principal_extents(x: np.ndarray, coverage: float = 0.95) -> np.ndarray:
    """Central ``coverage`` range of ``x [N, D]`` along each principal axis, largest first."""
    centre, axes = _principal(np.asarray(x, dtype=np.float64))
    proj = (x - centre) @ axes.T
    lo, hi = np.percentile(proj, [50 * (1 - coverage), 50 * (1 + coverage)], axis=0)
    return np.sort(hi - lo)[::-1]


def particle_extents(
    xy: np.ndarray, particle: np.ndarray, coverage: float = 0.95, min_points: int = 3
) -> np.ndarray | None:
    """The data's own extents, for comparison with a flat check: the median over particles
    of each particle's 2D principal extents (``[2]``, largest first, units of ``xy``).

    ``xy [L, 2]`` are the localisations, ``particle [L]`` their particle; particles with fewer
    than ``min_points`` localisations are skipped (None when none is left)."""
    ext = [
        principal_extents(xy[particle == p], coverage)
        for p in np.unique(particle)
        if (particle == p).sum() >= min_points
    ]
    return np.median(np.array(ext), axis=0) if ext else None


def flat(points: np.ndarray, coverage: float = 0.95) -> dict:
    """Principal extents and flatness (smallest / largest extent).

    The extent along each principal axis is the central ``coverage`` range of the projections
    (robust to a few stray points).

    Returns
    -------
    dict
        ``extents`` (3, largest first), ``flatness``.
    """
    x = _cloud(points, 3)
    extents = principal_extents(x, coverage)
    if extents[0] <= 0:
        raise HollyError("the cloud has no extent: every point at one spot")
    return {
        "extents": extents.tolist(),
        "flatness": float(extents[-1] / extents[0]),
        "coverage": coverage,
    }


def check(
    kind: str,
    points: np.ndarray,
    *,
    nm_per_unit: float | None = None,
    precision: float | None = None,
    model: np.ndarray | None = None,
    model_nm_per_unit: float | None = None,
    seed: int = 0,
) -> dict:
    """One structure check of a reconstruction, with nm values where the scale is known.

    Parameters
    ----------
    kind : {"tetrahedron", "ring", "flat"}
    points : ndarray [N, 3]
        The reconstruction, model units.
    nm_per_unit : float, optional
        nm per model unit (the run's scale); adds ``*_nm`` lengths.
    precision : float, optional
        Localisation precision in model units (tetrahedron).
    model : ndarray [M, 3], optional
        ring: the known model's points (e.g. the NPC's binding sites), in ``model_nm_per_unit``
        nm per unit; its radius and spectrum are reported beside the cloud's and
        ``radius_ratio`` (cloud / model, in nm) when both scales are known.
    model_nm_per_unit : float, optional
        nm per unit of ``model`` (default 1: the model is in nm).

    Returns
    -------
    dict
        The ``structure`` block of ``evaluation.json``: ``check``, the measurement, ``units``.
    """
    if kind not in CHECKS:
        raise HollyError(f"unknown structure check {kind!r}; use one of {', '.join(CHECKS)}")
    nm = float(nm_per_unit) if nm_per_unit else None
    out: dict = {"check": kind, "units": "model units", "nm_per_unit": nm}
    if kind == "tetrahedron":
        out |= tetrahedron(points, precision, seed)
        if nm:
            out["edge_mean_nm"] = out["edge_mean"] * nm
            out["precision_nm"] = precision * nm if precision else None
    elif kind == "ring":
        out |= ring(points)
        out["radius_nm"] = out["radius"] * nm if nm else None
        if model is not None:
            m = ring(model)
            scale = float(model_nm_per_unit) if model_nm_per_unit else 1.0
            out["model"] = {
                "radius_nm": m["radius"] * scale,
                "dominant_order": m["dominant_order"],
                "spectrum": m["spectrum"],
                "points": len(model),
            }
            ratio = out["radius_nm"] / out["model"]["radius_nm"] if nm else None
            out["radius_ratio"] = ratio
            if nm:  # the model's sites: how many the cloud puts points at (holly.results.sites)
                sites = site_recall(np.asarray(points) * nm, np.asarray(model) * scale, seed=seed)
                out["sites"] = sites
                out["site_recall"] = sites["site_recall_headline"]
                out["site_recall_2d"] = sites["site_recall_2d_headline"]
            t = RING_TARGETS
            out["targets"] = dict(t)
            out["meets_targets"] = (
                None
                if ratio is None
                else bool(
                    abs(ratio - 1) <= t["radius_ratio_tolerance"]
                    and out["dominant_order"] == t["dominant_order"]
                )
            )
    else:
        out |= flat(points)
        out["extents_nm"] = [e * nm for e in out["extents"]] if nm else None
    return out


def headline(block: dict) -> dict:
    """The few scalars of a ``structure`` block for the summary table (``structure_*``)."""
    keys = {
        "tetrahedron": (
            "edge_spread",
            "edge_spread_floor",
            "compactness",
            "smallest_cluster_share",
            "cluster_sd_over_precision",
            "edge_mean_nm",
        ),
        "ring": ("radius_nm", "radius_ratio", "dominant_order", "site_recall", "site_recall_2d"),
        "flat": ("flatness",),
    }[block["check"]]
    row = {"structure_check": block["check"]}
    row |= {f"structure_{k}": block.get(k) for k in keys}
    if block["check"] == "flat":
        ext = block.get("extents_nm") or [None, None, None]
        row["structure_extent_nm"] = ext[0]
        row["structure_extent2_nm"] = ext[1]
    if block["check"] == "tetrahedron" and block.get("pose_error_deg"):  # against model files
        row["structure_pose_error_median_deg"] = block["pose_error_deg"]["refined"]["median"]
    return row
