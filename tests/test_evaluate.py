"""Tests of holly.results.evaluate (alignment, metrics, baselines, pose error) and `holly
evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from holly import cli
from holly.data.pointio import read_points, write_points
from holly.method.align import MIRROR, align, octahedral_rotations
from holly.method.geometry import random_rotations
from holly.results import evaluate as ev


def asymmetric_cloud(n: int, rng: np.random.Generator) -> np.ndarray:
    """A chiral, asymmetric cloud [n,3]: a widening helical arc plus an off-axis lump."""
    t = rng.random(n) * 1.5 * np.pi
    x = np.stack([np.cos(t) * (1 + 0.3 * t), np.sin(t), 0.4 * t], axis=1)
    x += 0.05 * rng.standard_normal((n, 3))
    x[: n // 8] = [1.2, 1.4, 0.2] + 0.15 * rng.standard_normal((n // 8, 3))
    return x


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return random_rotations(1, rng)[0]


def small_noise_rotations(n: int, deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotations [n,3,3] about random axes by angles ~ |N(0, deg)| (Rodrigues)."""
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    theta = np.radians(deg) * np.abs(rng.standard_normal(n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= np.swapaxes(k, 1, 2)
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def gt(rng):
    return asymmetric_cloud(300, rng)


# ---------------------------------------------------------------- rotations


def test_octahedral_group_has_24_distinct_proper_rotations():
    octa = octahedral_rotations()
    assert octa.shape == (24, 3, 3)
    np.testing.assert_allclose(np.linalg.det(octa), 1.0)
    assert len({m.tobytes() for m in octa.round(6)}) == 24


# ---------------------------------------------------------------- alignment


@pytest.mark.parametrize("mirror", [False, True])
def test_align_same_cloud_moved_gives_zero_chamfer_and_handedness(gt, rng, mirror):
    rot = random_rotation(rng)
    flip = MIRROR if mirror else np.eye(3)
    moved = gt @ flip @ rot.T + [2.0, -3.0, 0.5]
    al = align(moved, gt, seed=0)
    assert al.handedness == ("mirrored" if mirror else "proper")
    assert al.chamfer < 1e-6
    np.testing.assert_allclose(al.aligned, gt, atol=1e-6)
    assert np.linalg.det(al.rotation) == pytest.approx(-1.0 if mirror else 1.0)
    # a chiral shape cannot be fitted with the wrong handedness
    assert al.chamfer_other_handedness > 0.05


def test_align_recovers_known_rotation_of_subsampled_noisy_cloud(gt, rng):
    rot = random_rotation(rng)
    sub = gt[rng.choice(len(gt), 150, replace=False)] + 0.01 * rng.standard_normal((150, 3))
    al = align(sub @ rot.T + [0.3, 0.1, -0.2], gt, seed=3)
    assert al.handedness == "proper"
    # the alignment undoes the rotation: R_align ≈ rot^T
    angle = np.degrees(np.arccos(np.clip((np.trace(al.rotation @ rot) - 1) / 2, -1, 1)))
    assert angle < 3.0
    assert al.chamfer < 0.06


def test_align_without_mirror_reports_proper_and_worse_chamfer_for_mirror_image(gt):
    al = align(gt @ MIRROR, gt, allow_mirror=False)
    assert al.handedness == "proper"
    assert al.chamfer_other_handedness is None
    assert al.chamfer > 0.05


def test_clearly_different_cloud_has_large_chamfer(gt, rng):
    sphere = rng.standard_normal((200, 3))
    sphere *= 1.5 / np.linalg.norm(sphere, axis=1, keepdims=True)
    same = align(gt[::2] @ random_rotation(rng).T, gt).chamfer
    other = align(sphere, gt).chamfer
    assert other > 0.3
    assert other > 10 * max(same, 1e-3)


# ---------------------------------------------------------------- metrics


def test_metrics_on_hand_computed_example():
    a = np.array([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]])
    b = np.array([[0.0, 0, 0], [1.2, 0, 0]])
    # a->b: 0, 0.2, 3.8; b->a: 0, 0.2
    assert ev.chamfer(a, b) == pytest.approx(0.5 * (4.0 / 3 + 0.1))
    assert ev.hausdorff(a, b) == pytest.approx(3.8)
    union = [0, 0.2, 3.8, 0, 0.2]
    assert ev.hausdorff95(a, b) == pytest.approx(np.percentile(union, 95))
    # tau 0.5: precision 2/3 (a), recall 1 (b); F = 2 * (2/3) / (5/3) = 0.8
    assert ev.fscore(a, b, 0.5) == pytest.approx(0.8)
    # tau 0.1: precision 1/3, recall 1/2 -> F = 0.4
    assert ev.fscore(a, b, 0.1) == pytest.approx(0.4)
    m = ev.shape_metrics(a, b, 0.1)
    assert (m["precision"], m["recall"]) == (pytest.approx(1 / 3), pytest.approx(0.5))


def test_fscore_zero_when_nothing_within_tau():
    assert ev.fscore(np.zeros((2, 3)), np.ones((3, 3)), 0.5) == 0.0


def test_default_tau_and_cloud_stats():
    x = np.array([[0.0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 3]])
    centroid = x.mean(0)
    assert ev.default_tau(x) == pytest.approx(0.1 * np.linalg.norm(x - centroid, axis=1).max())
    stats = ev.cloud_stats(x)
    assert stats["n_points"] == 4
    assert stats["extent"] == [2.0, 1.0, 3.0]
    # nearest other point: origin 1, (2,0,0) 2, (0,1,0) 1, (0,0,3) 3
    assert stats["nn_spacing_median"] == pytest.approx(1.5)
    assert stats["nn_spacing_mean"] == pytest.approx(7 / 4)


# ---------------------------------------------------------------- baselines


def test_blob_baseline_matches_second_moments(gt, rng):
    blob = ev.blob_baseline(gt, 20000, rng)
    np.testing.assert_allclose(blob.mean(0), gt.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(blob.T), np.cov(gt.T), atol=0.03)


def test_blob_is_worse_than_jittered_subsample(gt, rng):
    tau = ev.default_tau(gt)
    blob, _ = ev.score(ev.blob_baseline(gt, 150, rng), gt, tau)
    sub = gt[rng.choice(len(gt), 150, replace=False)] + 0.02 * rng.standard_normal((150, 3))
    good, _ = ev.score(sub, gt, tau)
    assert good["chamfer"] < 0.5 * blob["chamfer"]
    assert good["fscore"] > blob["fscore"] + 0.2


def test_ground_truth_floor_is_a_subset(gt, rng):
    floor = ev.ground_truth_floor(gt, 100, rng)
    assert floor.shape == (100, 3)
    assert ev.nn_distances(floor, gt)[0].max() == 0.0
    assert len(ev.ground_truth_floor(gt, 1000, rng)) == len(gt)


# ---------------------------------------------------------------- poses


@pytest.mark.parametrize("h", [0, 1])
def test_pose_error_removes_gauge_for_both_handedness(rng, h):
    t, noise_deg = 400, 2.0
    rot_true = random_rotations(t, rng)
    gauge = random_rotation(rng) @ (MIRROR if h else np.eye(3))
    flip = np.linalg.matrix_power(MIRROR, h)
    noise = small_noise_rotations(t, noise_deg, rng)
    rot_pred = noise @ flip @ rot_true @ gauge
    err = ev.pose_error(rot_true, rot_pred)
    assert err.handedness == ("mirrored" if h else "proper")
    np.testing.assert_allclose(err.gauge, gauge, atol=0.02)
    # |N(0, 2 deg)| has median 0.674 * 2 deg and mean 0.798 * 2 deg
    assert err.median == pytest.approx(0.674 * noise_deg, rel=0.15)
    assert err.mean == pytest.approx(0.798 * noise_deg, rel=0.15)
    assert err.out_of_plane_median <= err.median + 1e-9
    assert err.errors_deg.shape == (t,)


def test_pose_error_without_gauge_correction_would_be_large(rng):
    rot_true = random_rotations(200, rng)
    rot_pred = random_rotations(200, rng)  # unrelated poses: no gauge can explain them
    assert ev.pose_error(rot_true, rot_pred).median > 30


# ---------------------------------------------------------------- CLI


def make_run(path, rng, with_poses=True):
    gt = asymmetric_cloud(354, rng)
    rot = random_rotation(rng)
    recon = gt[rng.choice(354, 200, replace=False)] + 0.02 * rng.standard_normal((200, 3))
    recon = recon @ MIRROR @ rot.T + [0.2, 0.0, -0.1]
    write_points(path / "ground_truth.ply", gt)
    write_points(path / "initial_points.ply", rng.uniform(-1, 1, (200, 3)))
    write_points(path / "points.ply", recon)
    if with_poses:
        rot_true = random_rotations(64, rng)
        rot_pred = small_noise_rotations(64, 1.0, rng) @ MIRROR @ rot_true @ MIRROR @ rot.T
        np.savez(path / "test_poses.npz", rot_true=rot_true, rot_pred=rot_pred)
    return gt


def test_cli_writes_documented_json(tmp_path, rng):
    gt = make_run(tmp_path, rng)
    assert cli.main(["evaluate", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    documented = {
        "n_points", "n_ground_truth", "tau", "reconstruction", "random_init", "blob",
        "ground_truth_floor", "pose_error_deg", "chamfer_ratio_to_blob",
    }  # fmt: skip
    assert documented <= result.keys()
    metric_keys = {"chamfer", "hausdorff", "hausdorff95", "fscore", "handedness"}
    for name in ("reconstruction", "random_init", "blob", "ground_truth_floor"):
        assert metric_keys <= result[name].keys()
    assert (result["n_points"], result["n_ground_truth"]) == (200, 354)
    assert result["tau"] == pytest.approx(ev.default_tau(gt))
    recon = result["reconstruction"]
    assert recon["handedness"] == "mirrored"
    assert recon["chamfer"] < result["blob"]["chamfer"] < result["random_init"]["chamfer"]
    assert result["chamfer_ratio_to_blob"] < 0.5
    assert result["pose_error_deg"]["handedness"] == "mirrored"
    assert result["pose_error_deg"]["median"] < 3
    assert result["pose_gauge_vs_alignment_deg"] < 5
    aligned = read_points(tmp_path / "aligned_points.ply")
    assert ev.chamfer(aligned, gt) == pytest.approx(recon["chamfer"], abs=1e-4)
    assert not list(tmp_path.glob(".*.tmp"))
    # the tools' ratio (tools/scatter_floor.py, tools/fixed_pose_fit.py) is the one reported
    points = read_points(tmp_path / "points.ply")
    assert ev.chamfer_ratio_to_blob(points, gt) == pytest.approx(result["chamfer_ratio_to_blob"])


def test_cli_without_ground_truth_reports_cloud_stats(tmp_path, rng):
    make_run(tmp_path, rng, with_poses=False)
    (tmp_path / "ground_truth.ply").unlink()
    (tmp_path / "metrics.csv").write_text(
        "step,epoch,train_loss,test_loss,sigma_in\n10,0,5.0,6.0,3.0\n20,0,4.0,4.5,2.0\n"
    )
    out = tmp_path / "sub" / "eval.json"
    assert cli.main(["evaluate", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ground_truth"] is None
    # real data: the fit to held-out images is the last test loss of training
    assert result["held_out_fit"] == {
        "step": 20,
        "test_loss": 4.5,
        "train_loss": 4.0,
        "sigma_in": 2.0,
    }
    assert result["reconstruction"] is None and result["pose_error_deg"] is None
    assert result["cloud"]["n_points"] == 200
    assert result["cloud"]["nn_spacing_mean"] > 0


def test_cli_missing_points_exits_2_and_writes_nothing(tmp_path, rng, capsys):
    make_run(tmp_path, rng)
    (tmp_path / "points.ply").unlink()
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "points.ply" in err
    assert not (tmp_path / "evaluation.json").exists()
    assert not (tmp_path / "aligned_points.ply").exists()


def test_cli_rejects_bad_pose_file(tmp_path, rng, capsys):
    make_run(tmp_path, rng, with_poses=False)
    np.savez(tmp_path / "test_poses.npz", something_else=np.zeros(3))
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "rot_pred" in capsys.readouterr().err  # the one key every run writes
    assert not (tmp_path / "evaluation.json").exists()


def test_pose_error_gauge_survives_a_symmetric_twin_mode(rng):
    """Images predicted at a twin of their pose (what a CNN does on a pseudo-symmetric shape, here
    a 3-fold one) must not spoil the gauge of the others: a plain chordal mean would land
    between the two modes and make every error look large."""
    from scipy.spatial.transform import Rotation

    rot_true = Rotation.random(300, random_state=1).as_matrix()
    gauge = Rotation.random(random_state=2).as_matrix()
    twin = Rotation.from_euler("z", 120, degrees=True).as_matrix()
    rot_pred = rot_true @ gauge
    rot_pred[::3] = rot_true[::3] @ twin @ gauge
    result = ev.pose_error(rot_true, rot_pred)
    errors = result.errors_deg
    assert np.allclose(errors[1::3], 0, atol=1e-6) and np.allclose(errors[2::3], 0, atol=1e-6)
    assert np.allclose(errors[::3], 120, atol=1e-6)
    assert result.median < 1e-6


def test_pose_error_minimises_over_the_shape_symmetry():
    """For a 9-fold symmetric ground truth, a prediction at a symmetric twin of the true pose
    (rot_true S_k) gives the same image and must count as correct."""
    from scipy.spatial.transform import Rotation

    rot_true = Rotation.random(200, random_state=3).as_matrix()
    gauge = Rotation.random(random_state=4).as_matrix()
    k = np.random.default_rng(5).integers(0, 9, 200)
    rot_pred = rot_true @ ev.symmetry_rotations(9)[k] @ gauge
    assert ev.pose_error(rot_true, rot_pred, symmetry_order=9).median < 1e-6
    assert ev.pose_error(rot_true, rot_pred).median > 20  # without the symmetry: large errors


def test_a_flat_ring_turned_over_counts_as_its_true_pose():
    """The pore's corners lie in a plane: turned over (half a turn about an axis in it) it
    gives the same image, so with ``dihedral`` those twins count as correct too (D8)."""
    from scipy.spatial.transform import Rotation

    rot_true = Rotation.random(200, random_state=6).as_matrix()
    group = ev.symmetry_rotations(8, dihedral=True)
    assert len(group) == 16 and np.allclose(np.linalg.det(group), 1.0)
    k = np.random.default_rng(7).integers(0, 16, 200)
    rot_pred = rot_true @ group[k]
    assert ev.pose_error(rot_true, rot_pred, symmetry_order=8, dihedral=True).median < 1e-6
    # C8 alone: the consensus gauge follows one half, the other half is 180 degrees off
    errors = ev.pose_error(rot_true, rot_pred, symmetry_order=8).errors_deg
    assert 0.3 < (errors > 179.0).mean() < 0.7


def make_snapshots(path, gt, rng, noise=(0.6, 0.2, 0.02)):
    """Snapshots at steps 500, 1000, ... approaching ``gt``; the last is also points.ply."""
    (path / "snapshots").mkdir(exist_ok=True)
    rot = random_rotation(rng)
    clouds = []
    for k, scale in enumerate(noise, start=1):
        cloud = gt[rng.choice(len(gt), 200, replace=False)] + scale * rng.standard_normal((200, 3))
        write_points(path / "snapshots" / f"points_{500 * k:08d}.ply", cloud @ rot.T)
        clouds.append(cloud @ rot.T)
    (path / "metrics.csv").write_text(
        "step,epoch,train_loss,test_loss,sigma_in,phase\n"
        "500,0,5.0,6.0,3.0,amortised\n1000,0,4.0,4.5,2.0,amortised\n"
        "1500,0,3.0,4.0,1.5,amortised\n1500,0,2.0,,1.5,refine\n"
    )
    return clouds


def test_cli_snapshots_scores_the_learning_curve(tmp_path, rng):
    gt = make_run(tmp_path, rng, with_poses=False)
    clouds = make_snapshots(tmp_path, gt, rng)
    write_points(tmp_path / "points.ply", clouds[-1])  # as `holly train`: last snapshot = final
    assert cli.main(["evaluate", str(tmp_path), "--snapshots"]) == 0
    rows = pd.read_csv(tmp_path / "snapshot_scores.csv")
    assert list(rows["step"]) == [500, 1000, 1500]
    assert list(rows["sigma_in"]) == [3.0, 2.0, 1.5]  # amortised rows only
    ratios = list(rows["chamfer_ratio_to_blob"])
    assert ratios[0] > ratios[1] > ratios[2]  # the clouds approach the ground truth
    assert ratios[0] > 0.5 and ratios[2] < 0.3
    assert (rows["fscore_tight"] <= rows["fscore"]).all()
    # the final snapshot's row repeats evaluation.json (same tau, alignment and blob)
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert rows["chamfer"].iloc[-1] == pytest.approx(result["reconstruction"]["chamfer"])
    assert ratios[-1] == pytest.approx(result["chamfer_ratio_to_blob"])
    assert rows["fscore"].iloc[-1] == pytest.approx(result["reconstruction"]["fscore"])


def test_cli_snapshots_of_an_unfinished_run(tmp_path, rng):
    gt = make_run(tmp_path, rng, with_poses=False)
    make_snapshots(tmp_path, gt, rng, noise=(0.6, 0.2))
    (tmp_path / "points.ply").unlink()  # still training
    assert cli.main(["evaluate", str(tmp_path), "--snapshots"]) == 0
    assert list(pd.read_csv(tmp_path / "snapshot_scores.csv")["step"]) == [500, 1000]
    assert not (tmp_path / "evaluation.json").exists()


@pytest.mark.parametrize("missing", ["ground_truth.ply", "snapshots"])
def test_cli_snapshots_without_inputs_exits_2_naming_them(tmp_path, rng, capsys, missing):
    gt = make_run(tmp_path, rng, with_poses=False)
    make_snapshots(tmp_path, gt, rng)
    target = tmp_path / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
    else:
        target.unlink()
    assert cli.main(["evaluate", str(tmp_path), "--snapshots"]) == 2
    assert missing in capsys.readouterr().err
    assert not (tmp_path / "snapshot_scores.csv").exists()
    assert not (tmp_path / "evaluation.json").exists()
