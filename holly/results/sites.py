"""Binding-site recall: how many of a known model's sites a reconstruction puts points at.

A ring check (:func:`holly.results.structure.ring`) says whether the cloud has the model's
radius and symmetry; it does not say whether the cloud's points sit *on* the sites. Here the
reconstruction (nm) is rigidly aligned onto the model's sites (nm; mirror-aware ICP,
:func:`holly.method.align.align`, no scaling), then for each distance ``d``:

* ``site_recall``: the fraction of model sites with a reconstructed point within ``d``;
* ``point_precision``: the fraction of reconstructed points within ``d`` of a site (a blob
  covering the whole pore reaches every site, but most of its points lie between them).

The same two numbers are also given in the model's plane (``*_2d``: distances after dropping
the component along the model's symmetry axis, its principal axis of least variance), because
particles seen mostly from the top leave depth poorly resolved
(:mod:`holly.results.views`) while the in-plane arrangement is still measured.

The NPC model (smlm_datafusion3d's ``NPCModel.mat``) has its 32 sites in 16 pairs 12.2 nm apart,
neighbouring pairs at least 26 nm apart: :data:`RECALL_NM` (10 nm) is the headline distance,
less than half the distance to the next pair, so a point counted for a site lies at its pair.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from holly.method.align import align

RECALL_NM = 10.0  # headline distance (see the module docstring)
DISTANCES_NM = (5.0, 10.0, 15.0, 20.0)


def _recall(points: np.ndarray, sites: np.ndarray, d: float) -> tuple[float, float]:
    """(fraction of sites with a point within ``d``, fraction of points within ``d`` of a site)."""
    near_site = cKDTree(points).query(sites)[0] <= d
    near_point = cKDTree(sites).query(points)[0] <= d
    return float(near_site.mean()), float(near_point.mean())


def site_recall(
    points_nm: np.ndarray,
    sites_nm: np.ndarray,
    distances_nm: tuple[float, ...] = DISTANCES_NM,
    seed: int = 0,
) -> dict:
    """Recall of a model's sites by a reconstruction, after rigid alignment (both in nm).

    Parameters
    ----------
    points_nm : ndarray [N, 3]
        The reconstruction.
    sites_nm : ndarray [M, 3]
        The model's sites.
    distances_nm : tuple of float
        Distances at which recall and precision are measured.
    seed : int
        Seed of the alignment's random starts.

    Returns
    -------
    dict
        ``distances_nm``, ``site_recall``, ``point_precision`` and their ``*_2d`` (in the
        model's plane), each a list over the distances; ``site_recall_at`` (the headline
        distance, :data:`RECALL_NM`) with ``site_recall_headline`` and
        ``site_recall_2d_headline``; ``handedness`` and ``chamfer_nm`` of the alignment.
    """
    sites = np.asarray(sites_nm, np.float64)
    al = align(np.asarray(points_nm, np.float64), sites, seed=seed)
    centre = sites.mean(0)
    axes = np.linalg.eigh(np.cov((sites - centre).T))[1]  # columns, smallest variance first
    plane = axes[:, 1:]  # the model's plane: drop the symmetry axis
    flat_sites = (sites - centre) @ plane
    flat_points = (al.aligned - centre) @ plane
    out: dict = {"distances_nm": list(distances_nm)}
    for name, pts, ref in (("", al.aligned, sites), ("_2d", flat_points, flat_sites)):
        pairs = [_recall(pts, ref, d) for d in distances_nm]
        out[f"site_recall{name}"] = [p[0] for p in pairs]
        out[f"point_precision{name}"] = [p[1] for p in pairs]
    out["site_recall_at"] = RECALL_NM
    out["site_recall_headline"] = _recall(al.aligned, sites, RECALL_NM)[0]
    out["site_recall_2d_headline"] = _recall(flat_points, flat_sites, RECALL_NM)[0]
    out["handedness"] = al.handedness
    out["chamfer_nm"] = al.chamfer
    return out
