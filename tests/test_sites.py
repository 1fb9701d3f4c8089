"""Binding-site recall (holly/results/sites.py) on synthetic pores with known answers, and the
ring check's ``sites`` block."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from holly.results.sites import site_recall
from holly.results.structure import check


def pore(radius=48.0, height=30.0):
    """An NPC-like model: two 8-fold rings of site pairs (nm)."""
    phi = np.repeat(np.arange(8) * np.pi / 4, 2) + np.tile([0.0, 0.25], 8)
    ring = np.column_stack([radius * np.cos(phi), radius * np.sin(phi), np.zeros(16)])
    return np.concatenate([ring + [0, 0, height], ring - [0, 0, height]])


def test_points_on_every_site_at_any_pose_are_all_recalled():
    sites = pore()
    rng = np.random.default_rng(0)
    cloud = np.repeat(sites, 4, axis=0) + rng.normal(0, 1.5, (128, 3))
    cloud = cloud @ Rotation.random(random_state=2).as_matrix().T + [5.0, -3.0, 8.0]
    out = site_recall(cloud, sites)
    i10 = out["distances_nm"].index(10.0)
    assert out["site_recall"][i10] == 1.0 and out["point_precision"][i10] == 1.0
    assert out["site_recall_headline"] == 1.0 and out["site_recall_2d_headline"] == 1.0


def test_half_the_corners_missing_gives_half_the_recall():
    sites = pore()
    keep = np.array([k // 2 % 2 == 0 for k in range(32)])  # every other pair
    cloud = np.repeat(sites[keep], 5, axis=0)
    cloud = cloud + np.random.default_rng(1).normal(0, 1.0, cloud.shape)
    assert site_recall(cloud, sites)["site_recall_headline"] == 0.5


def test_a_blob_reaches_sites_but_its_points_lie_between_them():
    sites = pore()
    rng = np.random.default_rng(3)
    blob = rng.uniform(-55, 55, (3000, 3))
    blob = blob[np.hypot(blob[:, 0], blob[:, 1]) < 55]
    out = site_recall(blob, sites)
    i10 = out["distances_nm"].index(10.0)
    assert out["site_recall"][i10] > 0.9 and out["point_precision"][i10] < 0.4


def test_ring_check_reports_site_recall_with_the_scales():
    sites = pore()
    cloud = np.repeat(sites, 3, axis=0) / 100.0  # model units of 100 nm
    out = check("ring", cloud, nm_per_unit=100.0, model=sites / 10.0, model_nm_per_unit=10.0)
    assert out["site_recall"] == 1.0 and out["sites"]["handedness"] in ("proper", "mirrored")
    assert check("ring", cloud, model=sites).get("site_recall") is None  # no nm: no recall
