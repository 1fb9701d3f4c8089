"""``refine.start_points``: a known cloud where the refinement starts (train/startpoints.py)."""

import json
import logging

import numpy as np
import pytest

from holly.checksums import sha256_file
from holly.cli import main
from holly.config import from_dict
from holly.data.pointio import read_points, write_points
from holly.errors import HollyError
from holly.train import train
from holly.train.startpoints import read_start_points
from tests.test_poses import TINY_REFINE

FRAME = (32, 32)  # TINY_REFINE's render size


def _points_file(tmp_path, n, name="start.ply", seed=1):
    path = tmp_path / name
    write_points(path, np.random.default_rng(seed).normal(size=(n, 3)) * 0.5)
    return path


def test_more_points_than_the_cloud_give_a_seeded_subset_of_the_files_rows(tmp_path):
    path = _points_file(tmp_path, 50)
    rows = read_points(path).astype(np.float32)
    first, again = (
        read_start_points(path, 20, seed=4, frame=FRAME),
        read_start_points(path, 20, seed=4, frame=FRAME),
    )
    assert first.points.shape == (20, 3) and np.array_equal(first.points, again.points)
    assert all((rows == p).all(1).any() for p in first.points)  # rows of the file, no new ones
    assert len(np.unique(first.points, axis=0)) == 20
    assert not np.array_equal(first.points, read_start_points(path, 20, seed=5, frame=FRAME).points)
    assert first.sha256 == sha256_file(path)
    assert np.array_equal(
        read_start_points(path, 50, seed=4, frame=FRAME).points, rows
    )  # all, in order


def test_too_few_points_or_no_file_name_the_key_and_the_file(tmp_path):
    path = _points_file(tmp_path, 10)
    with pytest.raises(HollyError, match=r"refine.start_points.*10 points.*at most 10"):
        read_start_points(path, 20, seed=0, frame=FRAME)
    with pytest.raises(HollyError, match=r"refine.start_points.*missing.ply"):
        read_start_points(tmp_path / "missing.ply", 20, seed=0, frame=FRAME)


def test_points_in_other_units_than_the_models_are_refused(tmp_path):
    nm = tmp_path / "nm.ply"  # a structure of ~50 nm written in nm: far outside the frame
    write_points(nm, np.random.default_rng(0).normal(size=(30, 3)) * 50.0)
    with pytest.raises(HollyError, match=r"refine.start_points.*nm.ply.*outside.*model units"):
        read_start_points(nm, 20, seed=0, frame=FRAME)
    um = tmp_path / "um.ply"  # the same in micrometres: collapsed to a point
    write_points(um, np.random.default_rng(0).normal(size=(30, 3)) * 5e-5)
    with pytest.raises(HollyError, match=r"rms radius"):
        read_start_points(um, 20, seed=0, frame=FRAME)


def test_config_refuses_start_points_without_a_refinement_or_beside_a_fusion():
    refine = TINY_REFINE["refine"]
    with pytest.raises(HollyError, match=r"refine.start_points.*refine.steps"):
        from_dict({**TINY_REFINE, "refine": {**refine, "steps": 0, "start_points": "a.ply"}})
    with pytest.raises(HollyError, match=r"refine.start_points.*refine.fusion"):
        from_dict({**TINY_REFINE, "refine": {**refine, "fusion": True, "start_points": "a.ply"}})


def test_the_refinement_starts_from_the_file_and_the_run_records_its_checksum(tmp_path, caplog):
    """With the cloud's learning rate at 0 the refinement cannot move it: the finished cloud is
    then exactly the file's points, where a run without the key ends on the CNN's cloud."""
    path = _points_file(tmp_path, 20)
    refine = {**TINY_REFINE["refine"], "points_lr": 0.0}
    plain = train(from_dict({**TINY_REFINE, "refine": refine}), tmp_path / "plain")
    cfg = {**TINY_REFINE, "refine": {**refine, "start_points": str(path)}}
    with caplog.at_level(logging.INFO, logger="holly"):
        run = train(from_dict(cfg), tmp_path / "run")
    start = read_points(path).astype(np.float32)
    assert np.allclose(read_points(run / "points.ply"), start, atol=1e-6)
    assert not np.allclose(read_points(plain / "points.ply"), start, atol=1e-2)
    assert f"the cloud starts from {path}" in caplog.text
    inputs = json.loads((run / "provenance.json").read_text())["inputs"]
    assert inputs[str(path)] == sha256_file(path)
    # the CNN phase's snapshots are its own cloud, not the file's
    assert not np.allclose(read_points(run / "snapshots" / "points_00000003.ply"), start)


def test_cli_stops_with_exit_2_before_training_when_the_file_is_missing(tmp_path, capsys):
    cfg = {**TINY_REFINE, "refine": {**TINY_REFINE["refine"], "start_points": "nope.ply"}}
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    assert main(["train", "--config-json", config.read_text(), "--out", str(out)]) == 2
    assert "refine.start_points" in capsys.readouterr().err
    assert not (out / "metrics.csv").exists() and not (out / "checkpoints").exists()


def test_a_declared_symmetry_is_imposed_on_the_files_cloud(tmp_path):
    """With ``refine.symmetry`` the refinement's first cloud, the file's here, is made
    symmetric before the table is searched; with the cloud's learning rate at 0 it stays so."""
    from scipy.spatial import cKDTree

    path = _points_file(tmp_path, 20)
    refine = {**TINY_REFINE["refine"], "points_lr": 0.0, "symmetry": 4}
    cfg = {**TINY_REFINE, "refine": {**refine, "start_points": str(path)}}
    cloud = read_points(train(from_dict(cfg), tmp_path / "run") / "points.ply")
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert cKDTree(cloud).query(cloud @ quarter.T)[0].max() < 1e-4  # a quarter turn maps it
    assert not np.allclose(cloud, read_points(path), atol=1e-2)  # onto itself; not the file's
    cnn_start = {**TINY_REFINE, "refine": refine}  # without the file: the CNN's cloud, made so
    assert not np.allclose(
        read_points(train(from_dict(cnn_start), tmp_path / "cnn") / "points.ply"), cloud, atol=1e-2
    )
