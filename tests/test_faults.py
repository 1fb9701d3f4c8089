"""Faults and bad inputs of issue 24 that ended in a traceback, a wrong result with exit 0, or an
unclear message: each now ends with one ``error:`` line and exit 2 (or exit 0 with the right
result), leaving nothing partial."""

from __future__ import annotations

import errno
import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch
from conftest import make_fake_run
from test_train import TINY

from holly.cli import main
from holly.config import from_dict
from holly.errors import HollyError
from holly.train.trainer import Trainer, train

SHORT = {**TINY, "train": {**TINY["train"], "max_steps": 6}}  # checkpoints at steps 3 and 6


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _train_args(out, cfg=TINY, *extra):
    return ["train", "--config-json", json.dumps(cfg), "--out", str(out), *extra]


# -- checkpoints -----------------------------------------------------------------------------
def _misfit(path):
    state = torch.load(path, weights_only=True)
    state["model"]["points"] = torch.zeros(5, 3)
    torch.save(state, path)


def test_a_checkpoint_that_does_not_fit_falls_back_to_an_intact_one(tmp_path, capsys):
    run = train(from_dict(SHORT), tmp_path / "run")
    _misfit(run / "checkpoints" / "last.pt")
    train(from_dict(TINY), run, resume="yes")  # continues from step_00000006.pt
    assert (run / "checkpoints" / "unreadable" / "last.pt").is_file()
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().split()[1:]]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_no_checkpoint_fits_one_error_line(tmp_path, capsys):
    run = train(from_dict(SHORT), tmp_path / "run")
    for path in (run / "checkpoints").glob("*.pt"):
        _misfit(path)
    assert main(_train_args(run, TINY, "--resume", "yes")) == 2
    line = _error(capsys)
    assert "does not fit the model" in line and "points is (5, 3), not (20, 3)" in line


def test_an_empty_checkpoint_says_so(tmp_path, capsys):
    run = train(from_dict(SHORT), tmp_path / "run")
    for path in (run / "checkpoints").glob("step_*.pt"):
        path.unlink()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert main(_train_args(run, TINY, "--resume", "yes")) == 2
    assert "last.pt: the file is empty (0 bytes)" in _error(capsys)


def test_a_full_disk_inside_torch_save(tmp_path, capsys, monkeypatch):
    def full(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    assert main(_train_args(run)) == 2
    line = _error(capsys)
    assert "cannot write checkpoint" in line and "No space left" in line
    assert "--resume yes" in line
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.pt"))


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"),
    ],
)
def test_out_of_memory_names_the_sizes_to_lower(tmp_path, capsys, monkeypatch, exc):
    def oom(self, step):
        raise exc

    monkeypatch.setattr(Trainer, "train_step", oom)
    assert main(_train_args(tmp_path / "run")) == 2
    line = _error(capsys)
    assert "out of memory" in line and "render.height" in line and "train.batch_size" in line


def test_other_runtime_errors_are_not_hidden(tmp_path, monkeypatch):
    def bug(self, step):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Trainer, "train_step", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(_train_args(tmp_path / "run"))


# -- refine ----------------------------------------------------------------------------------
def test_refine_refuses_a_run_without_checkpoints(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    (run / "checkpoints" / "last.pt").unlink()
    before = (run / "points.ply").read_bytes()
    assert main(["refine", str(run), "--steps", "2"]) == 2
    line = _error(capsys)
    assert "no checkpoint" in line and "last.pt" in line and "--force" in line
    assert (run / "points.ply").read_bytes() == before


def test_refine_of_an_interrupted_run_names_the_command_that_works(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    (run / "points.ply").unlink()
    assert main(["refine", str(run)]) == 2
    assert f"holly train --config {run / 'config.yaml'} --out {run} --resume yes" in _error(capsys)


# -- compare ---------------------------------------------------------------------------------
def test_compare_refuses_runs_of_different_experiments(tmp_path, capsys):
    a = make_fake_run(tmp_path / "a", n_points=40)
    b = make_fake_run(tmp_path / "b", n_points=30, image_size=32)
    out = tmp_path / "c.json"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 2
    line = _error(capsys)
    assert "not runs of one experiment" in line and "model.num_points 40 vs 30" in line
    assert "render.height" in line and not out.exists()


def test_compare_with_itself_warns(tmp_path, caplog):
    a = make_fake_run(tmp_path / "a")
    assert main(["compare", str(a), str(a), "--out", str(tmp_path / "c.json")]) == 0
    assert "compared with itself" in caplog.text


def test_compare_unknown_figure_suffix_is_refused_first(tmp_path, capsys):
    a, b = make_fake_run(tmp_path / "a"), make_fake_run(tmp_path / "b", seed=1)
    out, aligned = tmp_path / "c.json", tmp_path / "al.ply"
    args = ["compare", str(a), str(b), "--out", str(out), "--aligned", str(aligned)]
    assert main([*args, "--figure", str(tmp_path / "x.xyz")]) == 2
    assert "unknown figure format '.xyz'" in _error(capsys)
    assert not out.exists() and not aligned.exists()


# -- localisations, point files, shapes ------------------------------------------------------
def test_localise_coordinates_beyond_float_range(tmp_path, capsys):
    src = tmp_path / "big.csv"
    src.write_text("x [nm],y [nm],particle\n1e308,2,0\n-1e308,4,0\n5,5,0\n")
    out = tmp_path / "b.zarr"
    assert main(["localise", str(src), "--out", str(out), "--sigmas", "2"]) == 2
    assert "beyond what floating point can scale" in _error(capsys)
    assert not out.exists()


def test_an_hdf5_whose_locs_is_a_group(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    src = tmp_path / "g.hdf5"
    with h5py.File(src, "w") as f:
        f.create_group("locs")["x"] = np.arange(5.0)
    assert main(["localise", str(src), "--out", str(tmp_path / "g.zarr"), "--sigmas", "2"]) == 2
    assert "/locs is a group" in _error(capsys)


def test_a_png_named_ply(tmp_path, capsys):
    fake = tmp_path / "x.ply"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert main(["render", str(fake), "--out", str(tmp_path / "o.png")]) == 2
    assert "is not a PLY file" in (line := _error(capsys)) and "PNG image" in line


def test_shape_coordinates_near_1e300_are_scaled(tmp_path):
    from holly.data.shapes import load_shape

    path = tmp_path / "huge.ply"
    header = "ply\nformat ascii 1.0\nelement vertex 4\n"
    header += "".join(f"property double {c}\n" for c in "xyz") + "end_header\n"
    path.write_text(header + "1e300 0 0\n-1e300 0 0\n0 1e300 0\n0 0 -1e300\n")
    xyz = load_shape(str(path), fit_radius=1.2)
    assert np.isfinite(xyz).all()
    assert np.isclose(np.linalg.norm(xyz, axis=1).max(), 1.2)


# -- evaluation ------------------------------------------------------------------------------
def test_a_zero_extent_ground_truth_is_refused(tmp_path, capsys):
    from holly.data.pointio import write_points

    run = make_fake_run(tmp_path / "run")
    write_points(run / "ground_truth.ply", np.zeros((30, 3)))
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e.json")]) == 2
    assert "all its points at one place" in _error(capsys)


def test_nan_poses_are_named(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    poses = dict(np.load(run / "test_poses.npz"))
    poses["rot_pred"][0] = np.nan
    np.savez(run / "test_poses.npz", **poses)
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e.json")]) == 2
    line = _error(capsys)
    assert "non-finite poses (rot_pred)" in line and "SVD" not in line


# -- config, fetch, archives -----------------------------------------------------------------
def test_a_config_json_value_is_blamed_on_config_json(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    bad = json.dumps({"train": {"epochs": 0}})
    assert main(["train", "--config", str(cfg), "--config-json", bad, "--out", "x"]) == 2
    line = _error(capsys)
    assert line.startswith(f"error: --config-json (merged over {cfg})") and "train.epochs" in line


def test_fetch_refuses_negative_retries(tmp_path, capsys):
    assert main(["fetch", "123", "--dest", str(tmp_path / "d"), "--retries", "-3"]) == 2
    assert "--retries must be >= 0" in _error(capsys)


def test_fetch_refuses_a_manifest_written_over_itself(tmp_path, capsys):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("record: 1\n")
    args = ["fetch", "--manifest", str(manifest), "--write-manifest", str(manifest)]
    assert main(args) == 2
    assert "would replace the input" in _error(capsys)
    assert manifest.read_text() == "record: 1\n"


def test_render_and_figures_refuse_outputs_aimed_at_inputs(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    before = (run / "points.ply").read_bytes()
    assert main(["render", str(run / "points.ply"), "--out", str(run / "points.ply")]) == 2
    assert "would replace the input" in _error(capsys)
    assert main(["figures", str(run), "--out", str(run / "snapshots")]) == 2
    assert "would replace the input" in _error(capsys)
    assert (run / "points.ply").read_bytes() == before


def test_extract_limit_with_units_and_clear_sizes(tmp_path, monkeypatch):
    from holly.data.archive import extract, max_bytes

    monkeypatch.setenv("HOLLY_MAX_EXTRACT_BYTES", "2GB")
    assert max_bytes() == 2 * 10**9
    monkeypatch.setenv("HOLLY_MAX_EXTRACT_BYTES", "1.5 GiB")
    assert max_bytes() == int(1.5 * 2**30)
    monkeypatch.setenv("HOLLY_MAX_EXTRACT_BYTES", "lots")
    with pytest.raises(HollyError, match=r"HOLLY_MAX_EXTRACT_BYTES='lots' is not a size"):
        max_bytes()
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("data.txt", "x" * 3000)
    monkeypatch.setenv("HOLLY_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(HollyError) as info:
        extract(zpath, tmp_path / "out")
    assert "2.9 KiB (3000 bytes)" in str(info.value) and "1000 bytes" in str(info.value)
    assert "0.0 GiB" not in str(info.value)


def test_unpacked_folders_get_normal_permissions(tmp_path):
    from holly.data.archive import extract

    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("sub/deeper/data.txt", "x")
    old = os.umask(0o022)
    try:
        extract(zpath, tmp_path / "out")
    finally:
        os.umask(old)
    for folder in (tmp_path / "out", tmp_path / "out" / "sub", tmp_path / "out" / "sub" / "deeper"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
