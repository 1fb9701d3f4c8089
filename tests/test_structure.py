"""Structure checks (holly/results/structure.py) on synthetic clouds whose answer is known."""

import numpy as np
import pytest

from holly.errors import HollyError
from holly.results import structure

VERTICES = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) / np.sqrt(8)


def _blobs(vertices, per, sd, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([v + rng.normal(0, sd, (per, 3)) for v in vertices])


def test_regular_tetrahedron_with_noise_has_equal_edges_and_compact_clusters():
    cloud = _blobs(VERTICES, 50, 0.03)  # edge 1, per-axis noise 3 % of it
    out = structure.tetrahedron(cloud, precision=0.03, seed=1)
    assert out["edge_spread"] < 0.03 and out["compactness"] > 0.99
    assert out["edge_mean"] == pytest.approx(1.0, abs=0.02)
    assert out["cluster_sizes"] == [50, 50, 50, 50] and out["smallest_cluster_share"] == 1.0
    assert out["cluster_sd_over_precision"] == pytest.approx(1.0, abs=0.15)
    assert out["meets_targets"]
    again = structure.tetrahedron(cloud, precision=0.03, seed=1)
    assert again == out  # seeded


def test_distorted_tetrahedron_and_a_diffuse_cloud_fail():
    stretched = VERTICES * np.array([1.0, 1.0, 1.6])
    out = structure.tetrahedron(_blobs(stretched, 50, 0.03))
    assert out["edge_spread"] > 0.2 and not out["meets_targets"]
    diffuse = structure.tetrahedron(_blobs(VERTICES, 50, 0.25))
    assert diffuse["compactness"] < 0.8 and not diffuse["meets_targets"]
    # three vertices and two strays where the fourth should be: an almost empty cluster
    three = np.concatenate(
        [_blobs(VERTICES[:3], 50, 0.03), VERTICES[3] + [[0.3, 0, 0], [-0.3, 0, 0]]]
    )
    empty = structure.tetrahedron(three)
    assert empty["smallest_cluster_share"] < 0.1


def _ring(order, n, radius=50.0, sd=1.5, seed=0, z=0.0):
    rng = np.random.default_rng(seed)
    corner = rng.integers(order, size=n)
    phi = 2 * np.pi * corner / order + 0.3 + rng.normal(0, 0.03, n)
    pts = np.stack([radius * np.cos(phi), radius * np.sin(phi), np.full(n, z)], 1)
    return pts + rng.normal(0, sd, (n, 3))


def test_eightfold_ring_has_order_eight_dominant_and_its_radius():
    pts = _ring(8, 400)
    # tilt it: the symmetry axis is found as the best-fitting plane's normal
    c, s = np.cos(0.7), np.sin(0.7)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    out = structure.ring(pts @ tilt.T)
    assert out["dominant_order"] == 8
    assert out["spectrum"][7] > 0.8 and max(out["spectrum"][:7]) < 0.2
    assert out["radius"] == pytest.approx(50.0, rel=0.03)
    assert abs(np.dot(out["axis"], tilt[:, 2])) == pytest.approx(1.0, abs=1e-2)
    assert structure.ring(_ring(9, 400))["dominant_order"] == 9


def test_ring_check_against_a_model_in_other_units():
    model = _ring(8, 32, radius=0.37, sd=0.0)  # in camera pixels of 130 nm
    cloud = _ring(8, 300, radius=0.5, sd=0.015)  # model units of 96 nm: radius 48 nm
    out = structure.check("ring", cloud, nm_per_unit=96.0, model=model, model_nm_per_unit=130)
    assert out["model"]["radius_nm"] == pytest.approx(0.37 * 130, rel=1e-6)
    assert out["radius_nm"] == pytest.approx(48.0, rel=0.03)
    assert out["radius_ratio"] == pytest.approx(48.0 / 48.1, rel=0.03)
    assert out["meets_targets"] is True
    unknown = structure.check("ring", cloud, model=model, model_nm_per_unit=130)
    assert unknown["radius_ratio"] is None and unknown["meets_targets"] is None


def test_flat_disc_has_flatness_near_zero_and_a_ball_near_one():
    rng = np.random.default_rng(0)
    r, phi = 40 * np.sqrt(rng.uniform(size=500)), rng.uniform(0, 2 * np.pi, 500)
    disc = np.stack([r * np.cos(phi), r * np.sin(phi), rng.normal(0, 0.5, 500)], 1)
    out = structure.check("flat", disc, nm_per_unit=2.0)
    assert out["flatness"] < 0.05
    assert out["extents"][0] == pytest.approx(out["extents"][1], rel=0.1)
    assert out["extents_nm"][0] == pytest.approx(2 * out["extents"][0])
    ball = structure.flat(rng.normal(size=(500, 3)))
    assert ball["flatness"] > 0.8


def test_headline_and_bad_input():
    row = structure.headline(structure.check("tetrahedron", _blobs(VERTICES, 10, 0.02)))
    assert row["structure_check"] == "tetrahedron" and row["structure_edge_spread"] < 0.05
    with pytest.raises(HollyError, match="unknown structure check"):
        structure.check("cube", VERTICES)
    with pytest.raises(HollyError, match="at least 4 finite points"):
        structure.tetrahedron(VERTICES[:3])


def test_particle_extents_are_the_median_over_particles():
    rng = np.random.default_rng(0)
    xy, pid = [], []
    for p, (a, b) in enumerate([(10, 4), (12, 5), (14, 6), (1, 1)]):
        q = rng.uniform(-0.5, 0.5, (400, 2)) * [a, b]
        turn = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(turn), np.sin(turn)
        xy.append(q @ np.array([[c, -s], [s, c]]).T + rng.normal(0, 50, 2))
        pid.append(np.full(400, p))
    ext = structure.particle_extents(np.concatenate(xy), np.concatenate(pid))
    # medians of (10, 12, 14, 1) and (4, 5, 6, 1) x 0.95 (the central 95 %)
    assert ext == pytest.approx([0.95 * 11, 0.95 * 4.5], rel=0.06)
    assert structure.particle_extents(np.zeros((2, 2)), np.array([0, 1])) is None
