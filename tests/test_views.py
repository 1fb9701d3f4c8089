"""holly.results.views: the spread of viewing directions, and when z is unresolved."""

import json
import logging

import numpy as np
import pytest

import holly.cli
from holly.data.locsim import view_rotations
from holly.data.shapes import builtin_shape
from holly.results.views import (
    UNIFORM_P90_DEG,
    cone_deg,
    run_views,
    tilt_summary,
    tilts_deg,
    view_directions,
    views_summary,
)


def haar(n, rng):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def in_gauge(rot, points, q):
    """The same images from cloud Q X with poses R Q^T: what a reconstruction may return."""
    return rot @ q.T, points @ q.T


def test_uniform_views_give_the_uniform_sphere_tilts():
    rng = np.random.default_rng(0)
    rot, _ = view_rotations(3000, "uniform", 0.0, rng)
    v = views_summary(rot)
    t = v["tilt_deg"]
    assert t["ks_uniform"] < 0.04
    assert t["median"] == pytest.approx(60.0, abs=3.0)
    assert t["p90"] == pytest.approx(UNIFORM_P90_DEG, abs=2.0)
    assert t["cone_deg"] > 80
    assert not v["unresolved_z"] and v["verdict"] == "views cover 3D"
    assert v["axis_eigenvalues"] == pytest.approx([1 / 3] * 3, abs=0.05)


@pytest.mark.parametrize("limit", [30.0, 45.0, 60.0])
def test_tilt_limited_spread_matches_the_simulated_one(limit):
    rng = np.random.default_rng(1)
    rot, _ = view_rotations(1000, "tilt", limit, rng)
    logo = builtin_shape("logo")
    rot, cloud = in_gauge(rot, logo, haar(1, rng)[0])  # any global rotation of the result
    v = views_summary(rot, cloud)
    t = v["tilt_deg"]
    assert abs(t["cone_deg"] - limit) < 10 and abs(t["max"] - limit) < 10
    assert t["p90"] <= limit + 1e-6
    assert t["ks_uniform"] > 0.2
    assert v["axis_to_normal_deg"] < 5  # the view axis is the flat logo's normal
    assert v["flatness"] < 1e-6
    assert v["unresolved_z"] is (limit < 25)


def test_narrow_tilt_is_unresolved():
    rot, _ = view_rotations(500, "tilt", 15.0, np.random.default_rng(2))
    v = views_summary(rot)
    assert v["unresolved_z"] and v["verdict"] == "flat, or unresolved in z"


def test_in_plane_views_report_unresolved_z():
    rng = np.random.default_rng(3)
    rot, _ = view_rotations(400, "inplane", 0.0, rng)
    q = haar(1, rng)[0]
    cloud = builtin_shape("tetrapod")  # even a confident 3D cloud: the data cannot tell
    rot, cloud = in_gauge(rot, cloud, q)
    v = views_summary(rot, cloud)
    assert v["tilt_deg"]["max"] < 1e-5 and v["tilt_deg"]["within_narrow"] == 1.0
    assert v["unresolved_z"] and v["verdict"] == "flat, or unresolved in z"
    assert abs(np.dot(v["axis"], q[:, 2])) == pytest.approx(1.0)  # the unresolved direction


def test_noisy_top_views_and_mirror_views_stay_unresolved():
    rng = np.random.default_rng(4)
    rot, _ = view_rotations(600, "tilt", 8.0, rng)
    flip = np.diag([1.0, -1.0, -1.0])  # the same view from below (mirror image)
    rot = np.where((np.arange(600) % 3 == 0)[:, None, None], flip @ rot, rot)
    assert views_summary(rot)["unresolved_z"]


def test_tilts_are_gauge_invariant():
    rng = np.random.default_rng(5)
    rot, _ = view_rotations(200, "tilt", 40.0, rng)
    q = haar(1, rng)[0]
    a, b = views_summary(rot)["tilt_deg"], views_summary(rot @ q.T)["tilt_deg"]
    assert a.pop("histogram") == b.pop("histogram") and a == pytest.approx(b)


def test_pure_helpers():
    assert cone_deg(UNIFORM_P90_DEG) == pytest.approx(90.0)
    assert cone_deg(0.0) == 0.0
    d = view_directions(np.eye(3)[None].repeat(2, 0))
    assert np.allclose(d, [0, 0, 1])
    assert tilts_deg(np.array([[0, 0, -1.0], [1.0, 0, 0]]), [0, 0, 1]) == pytest.approx([0, 90])
    s = tilt_summary(np.array([0.0, 10.0, 30.0]))
    assert s["within_narrow"] == pytest.approx(2 / 3) and s["max"] == 30.0
    assert s["histogram"] == [1, 1, 0, 1, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        view_directions(np.zeros((0, 3, 3)))


def test_evaluate_writes_the_views_block(tmp_path, caplog):
    from conftest import make_fake_run

    from holly.run.runfolder import RunFolder

    run = make_fake_run(tmp_path / "run", evaluated=False)
    rf = RunFolder(run)
    poses = dict(np.load(rf.test_poses))
    rot, _ = view_rotations(len(poses["rot_true"]), "inplane", 0.0, np.random.default_rng(6))
    poses["rot_pred"] = poses["rot_true"] = rot
    np.savez(rf.test_poses, **poses)
    with caplog.at_level(logging.WARNING, logger="holly.results.views"):
        assert holly.cli.main(["evaluate", str(run)]) == 0
    views = json.loads(rf.evaluation.read_text())["views"]
    assert views["unresolved_z"] is True and views["true"]["unresolved_z"] is True
    assert views["poses"] == "amortised (CNN)" and views["n_poses"] == len(rot)
    assert "unresolved in z" in caplog.text
    assert run_views(tmp_path / "nowhere") is None  # no poses: no block


def test_view_tilts_figure(tmp_path):
    from conftest import make_fake_run

    from holly.results.figures import view_tilts_figure
    from holly.results.views import held_out_tilts

    run = make_fake_run(tmp_path / "run", evaluated=False)
    tilts = held_out_tilts(run)
    assert set(tilts) == {"poses", "true"} and tilts["poses"].max() <= 90
    out = tmp_path / "figs"
    assert holly.cli.main(["figures", str(run), "--out", str(out), "--only", "view_tilts"]) == 0
    assert (out / "view_tilts.png").stat().st_size > 1000
    assert held_out_tilts(tmp_path / "nowhere") == {}
    view_tilts_figure({})  # no poses: an empty panel that says so
