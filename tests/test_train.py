"""Training loop: outputs, exact resume, seeding, and CLI errors (tiny, fast runs)."""

import csv

import numpy as np
import pytest
import torch

from holly.cli import main
from holly.config import from_dict
from holly.data.pointio import read_points
from holly.errors import HollyError
from holly.train import train

TINY = {
    "seed": 3,
    "data": {"shape": "tetrapod", "particles": 48, "test_particles": 4, "augment": 2},
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 20},
    "sigma": {"values": [4.0, 2.0]},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "log_every": 2,
        "snapshot_every": 3,
        "checkpoint_every": 3,
        "test_images": 8,
        "threads": 1,
    },
}


def test_run_folder_layout(tmp_path):
    out = train(from_dict(TINY), tmp_path / "run")
    for name in (
        "config.yaml",
        "provenance.json",
        "metrics.csv",
        "initial_points.ply",
        "ground_truth.ply",
        "test_poses.npz",
        "samples.npz",
        "points.ply",
        "checkpoints/last.pt",
        "snapshots/points_00000003.ply",
    ):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]  # 96 images / 16 = 6 per epoch
    assert all(np.isfinite(float(r["test_loss"])) for r in rows)
    poses = np.load(out / "test_poses.npz")
    assert poses["rot_true"].shape == poses["rot_pred"].shape == (8, 3, 3)
    assert read_points(out / "points.ply").shape == (20, 3)
    assert not np.allclose(read_points(out / "points.ply"), read_points(out / "initial_points.ply"))


def test_resume_gives_the_same_points(tmp_path):
    full = train(from_dict(TINY), tmp_path / "full")
    half_cfg = from_dict({**TINY, "train": {**TINY["train"], "max_steps": 6}})
    part = train(half_cfg, tmp_path / "part")
    assert len(list(csv.DictReader(open(part / "metrics.csv")))) == 3
    train(from_dict(TINY), tmp_path / "part", resume=True)
    a, b = read_points(full / "points.ply"), read_points(part / "points.ply")
    assert np.array_equal(a, b)
    steps = [int(r["step"]) for r in csv.DictReader(open(part / "metrics.csv"))]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_resume_rejects_a_different_config(tmp_path, capsys):
    train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 3}}), tmp_path / "r")
    changed = {**TINY, "train": {**TINY["train"], "lr": 0.01}}
    import json

    code = main(
        ["train", "--config-json", json.dumps(changed), "--out", str(tmp_path / "r"), "--resume"]
    )
    assert code == 2
    assert "different config (train.lr)" in capsys.readouterr().err


def test_resume_accepts_a_checkpoint_older_than_a_new_config_key(tmp_path, capsys):
    # a checkpoint made before train.channels_last existed: the key counts as its default
    run = tmp_path / "r"
    train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 6}}), run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    del state["config"]["train"]["channels_last"]
    torch.save(state, last)
    train(from_dict(TINY), run, resume=True)  # continues: steps 8..12 appended
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert steps == [2, 4, 6, 8, 10, 12]
    # a non-default value of that key is still another config
    torch.save(state, last)
    nhwc = {**TINY, "train": {**TINY["train"], "channels_last": True}}
    with pytest.raises(HollyError, match=r"different config \(train.channels_last\)"):
        train(from_dict(nhwc), run, resume=True)


def test_same_seed_same_result(tmp_path):
    cfg = from_dict({**TINY, "train": {**TINY["train"], "max_steps": 4}})
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert np.array_equal(read_points(a / "points.ply"), read_points(b / "points.ply"))
    c = train(from_dict({**cfg.to_dict(), "seed": 4}), tmp_path / "c")
    assert not np.array_equal(read_points(a / "points.ply"), read_points(c / "points.ply"))


@pytest.mark.parametrize("variant,rotation", [("latest", "axis_angle"), ("paper", "6d")])
def test_variants_train(tmp_path, variant, rotation):
    cfg = {
        **TINY,
        "variant": variant,
        "model": {"num_points": 20, "rotation": rotation},
        "train": {**TINY["train"], "max_steps": 3},
    }
    if variant == "latest":
        cfg["train"] = {**cfg["train"], "lr": 4e-3, "points_lr": 4e-4}
    out = train(from_dict(cfg), tmp_path / "v")
    assert (out / "points.ply").exists()


def test_cli_errors_exit_2_without_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2
    assert "error: config file" in capsys.readouterr().err
    assert main(["train", "--config-json", '{"train": {"epochs": -1}}', "--out", str(out)]) == 2
    assert "'train.epochs' must be >= 1" in capsys.readouterr().err
    assert main(["train", "--config-json", '{"data": {"shape": "blob"}}', "--out", str(out)]) == 2
    assert "unknown shape 'blob'" in capsys.readouterr().err
    assert main(["train", "--config-json", "{not json", "--out", str(out)]) == 2
    assert not (out / "points.ply").exists()


def test_cuda_request_without_gpu_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--config-json", "{}", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_resume_after_outputs_were_deleted(tmp_path):
    """Snakemake deletes a failed job's outputs but not its checkpoints: resuming must rebuild
    the start files and still end with the same points as an uninterrupted run."""
    full = train(from_dict(TINY), tmp_path / "full")
    part = train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 6}}), tmp_path / "p")
    for name in (
        "metrics.csv",
        "config.yaml",
        "provenance.json",
        "initial_points.ply",
        "ground_truth.ply",
        "samples.npz",
        "points.ply",
    ):
        (part / name).unlink()
    train(from_dict(TINY), part, resume="auto")
    assert np.array_equal(read_points(full / "points.ply"), read_points(part / "points.ply"))
    assert np.array_equal(
        read_points(full / "initial_points.ply"), read_points(part / "initial_points.ply")
    )
    import json

    assert json.loads((part / "provenance.json").read_text())["resumed_from_step"] == 6


def test_auto_resume_starts_afresh_when_the_config_changed(tmp_path):
    out = train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 6}}), tmp_path / "r")
    assert (out / "snapshots" / "points_00000006.ply").exists()
    changed = from_dict({**TINY, "seed": 11, "train": {**TINY["train"], "max_steps": 4}})
    train(changed, out, resume="auto")
    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv"))]
    assert steps == [2, 4]
    assert not (out / "snapshots" / "points_00000006.ply").exists()  # stale snapshot removed
    fresh = train(changed, tmp_path / "fresh")
    assert np.array_equal(read_points(out / "points.ply"), read_points(fresh / "points.ply"))


def test_auto_resume_keeps_the_replaced_run_which_can_be_continued(tmp_path):
    """An edited config must not silently cost the replaced run: its newest checkpoint and
    config stay in checkpoints/replaced/, and continuing from them (steps 6 -> 9) ends exactly
    where an uninterrupted run of 9 steps ends."""
    import shutil

    nine = train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 9}}), tmp_path / "9")
    out = train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 6}}), tmp_path / "r")
    old_config = (out / "config.yaml").read_text()
    train(from_dict({**TINY, "seed": 11}), out, resume="auto")
    kept = out / "checkpoints" / "replaced"
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "last.pt"]
    assert (kept / "config.yaml").read_text() == old_config
    assert (out / "config.yaml").read_text() != old_config  # the folder now holds the new run

    other = tmp_path / "continued"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(kept / "last.pt", other / "checkpoints" / "last.pt")
    args = ["train", "--config", str(kept / "config.yaml"), "--out", str(other)]
    assert main([*args, "--resume", "yes", "--max-steps", "9"]) == 0
    assert np.array_equal(read_points(nine / "points.ply"), read_points(other / "points.ply"))

    train(from_dict({**TINY, "seed": 12}), out, resume="auto")  # one replaced run is kept
    assert "seed: 11" in (kept / "config.yaml").read_text()


def test_keep_checkpoints_prunes_old_ones_and_resume_still_works(tmp_path):
    """Checkpoints at steps 3, 6, 9, 12: keep 1 leaves step 12 and last.pt, which resumes."""
    cfg = {**TINY, "train": {**TINY["train"], "keep_checkpoints": 1}}
    part = train(from_dict({**cfg, "train": {**cfg["train"], "max_steps": 9}}), tmp_path / "r")
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == [
        "last.pt",
        "step_00000009.pt",
    ]
    train(from_dict(cfg), tmp_path / "r", resume=True)  # keep_checkpoints may change on resume
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == [
        "last.pt",
        "step_00000012.pt",
    ]
    full = train(from_dict(TINY), tmp_path / "full")  # default 3: step 3 pruned, 6, 9, 12 kept
    assert sorted(p.name for p in (full / "checkpoints").glob("step_*.pt")) == [
        f"step_{s:08d}.pt" for s in (6, 9, 12)
    ]
    assert np.array_equal(read_points(full / "points.ply"), read_points(part / "points.ply"))


@pytest.mark.parametrize(("keep", "left"), [(None, [1, 2, 10, 30]), (2, [10, 30]), (0, [])])
def test_prune_checkpoints_keeps_the_newest_by_step(tmp_path, keep, left):
    from holly.run.runfolder import RunFolder

    rf = RunFolder(tmp_path)
    folder = rf.checkpoints
    folder.mkdir()
    for step in (30, 2, 10, 1):  # by step, not by file time
        (folder / f"step_{step:08d}.pt").write_bytes(b"x")
    (folder / "last.pt").write_bytes(b"x")
    (folder / "step_best.pt").write_bytes(b"x")  # not a periodic checkpoint: left alone
    rf.prune_checkpoints(keep)
    assert [step for step, _ in rf.checkpoint_files()] == left
    assert (folder / "last.pt").exists() and (folder / "step_best.pt").exists()


def test_run_ply_files_say_units_version_experiment_and_step(tmp_path):
    from holly import __version__
    from holly.data.pointio import read_ply_comments

    cfg = from_dict({**TINY, "name": "tiny", "train": {**TINY["train"], "max_steps": 3}})
    out = train(cfg, tmp_path / "run")
    final = read_ply_comments(out / "points.ply")
    # 32 px high images: 1 model unit = 32/4 = 8 px; simulated data have no nm
    assert final == {
        "holly": __version__,
        "experiment": "tiny",
        "step": "3",
        "units": "model units (1 unit = 8 px)",
    }
    assert read_ply_comments(out / "snapshots" / "points_00000003.ply")["step"] == "3"
    assert read_ply_comments(out / "initial_points.ply")["step"] == "0"
    assert "step" not in read_ply_comments(out / "ground_truth.ply")
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["threads"] == 1


def test_run_units_in_nm_when_the_pixel_size_is_known():
    from holly.units import describe_units, run_units

    units = run_units(64, pixel_nm=10.0)
    assert units["model_unit_px"] == 16.0 and units["model_unit_nm"] == 160.0
    assert describe_units(units) == "model units (1 unit = 16 px = 160 nm)"


def test_log_lines_carry_an_eta(tmp_path, caplog):
    """Without a terminal there is no bar: each metric line says how long is left."""
    import logging

    from holly.train.progress import duration_text

    with caplog.at_level(logging.INFO, logger="holly.train.progress"):
        train(from_dict({**TINY, "train": {**TINY["train"], "max_steps": 4}}), tmp_path / "r")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2 and all(", ETA " in line for line in lines)
    assert lines[-1].startswith("step 4/4") and lines[-1].endswith("ETA 0s")
    assert [duration_text(s) for s in (-1, 45.9, 192, 7500)] == ["0s", "45s", "3m12s", "2h05m"]


def test_refinement_log_lines_say_there_is_no_held_out_loss(tmp_path, caplog):
    """metrics.csv keeps NaN for the refinement's held-out loss; its log line says why."""
    import logging

    from holly.run.runfolder import RunFolder
    from holly.train.progress import MetricsLog

    metrics = MetricsLog(RunFolder(tmp_path), first_step=0, total_steps=10)
    row = {"step": 5, "train_loss": 3.0, "sigma_in": 1.0, "sigma_pred_mean": 0.9}
    row |= {"images_per_s": 100.0, "elapsed_s": 2.0}
    with caplog.at_level(logging.INFO, logger="holly.train.progress"):
        metrics.append(row | {"test_loss": 2.5})
        metrics.append(row | {"step": 6, "test_loss": float("nan")})
    lines = [r.getMessage() for r in caplog.records]
    assert " test 2.50 " in lines[0] and " test - (refinement) " in lines[1]
    assert "nan" not in lines[1]


def test_train_steps_sets_the_length_and_is_recorded(tmp_path, caplog):
    """train.steps: epochs derived from the data (96 images / 16 = 6 steps per epoch, 9 steps
    asked -> 2 epochs, 12 steps, whatever train.epochs says); short runs are warned about."""
    import json
    import logging

    cfg = from_dict({**TINY, "train": {**TINY["train"], "epochs": 40, "steps": 9}})
    with caplog.at_level(logging.WARNING, logger="holly.train.amortised"):
        out = train(cfg, tmp_path / "run")
    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv"))]
    assert steps[-1] == 12
    record = json.loads((out / "provenance.json").read_text())["training_length"]
    assert record["epochs"] == 2 and record["steps"] == 12 and record["source"] == "train.steps"
    assert record["short"] and "raise train.steps" in record["warning"]
    assert "training is short: 12 CNN steps" in caplog.text


@pytest.mark.parametrize("kind", ["masked_l1", "l1", "l2", "poisson"])
def test_every_loss_kind_trains_the_cnn_and_the_refinement(tmp_path, kind):
    """Each loss drives both phases (the CNN's hypotheses and the refinement's pose search):
    finite losses in every row, and a cloud that moved from where it started."""
    cfg = {
        **TINY,
        "model": {"num_points": 20, "rotation": "6d", "pose_hypotheses": 2},
        "loss": {"kind": kind},
        "train": {**TINY["train"], "max_steps": 3},
        "refine": {"steps": 2, "images": 8, "table_rotations": 8, "search_rotations": 8},
    }
    out = train(from_dict(cfg), tmp_path / kind)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {r["phase"] for r in rows} == {"amortised", "refine"}
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert not np.allclose(read_points(out / "points.ply"), read_points(out / "initial_points.ply"))
