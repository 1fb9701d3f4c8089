"""The run folder owner: no data loss (refuse/force, resume fallback), clear errors on corrupt
files, non-finite guards in training and config, OSError as one `error:` line."""

import csv
import json

import numpy as np
import pytest

from holly.cli import main
from holly.config import from_dict
from holly.data.pointio import read_points
from holly.errors import HollyError
from holly.run.runfolder import RunFolder
from holly.train import train

TINY = {
    "seed": 3,
    "data": {"shape": "tetrapod", "particles": 32, "test_particles": 2, "augment": 1},
    "render": {"height": 16, "width": 16},
    "model": {"num_points": 12},
    "sigma": {"values": [3.0, 2.0]},
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "log_every": 2,
        "snapshot_every": 2,
        "checkpoint_every": 2,
        "test_images": 2,
        "threads": 1,
    },
}


def tiny(**train_keys):
    return from_dict({**TINY, "train": {**TINY["train"], **train_keys}})


def test_paths_follow_the_documented_layout(tmp_path):
    rf = RunFolder(tmp_path)
    assert rf.checkpoint(12) == tmp_path / "checkpoints" / "step_00000012.pt"
    assert rf.snapshot(7) == tmp_path / "snapshots" / "points_00000007.ply"
    assert rf.last_checkpoint == tmp_path / "checkpoints" / "last.pt"
    assert not rf.holds_run() and not rf.is_finished()


def test_train_refuses_a_folder_holding_another_run(tmp_path, capsys):
    out = train(tiny(max_steps=2), tmp_path / "run")
    before = read_points(out / "points.ply")
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    cfg = json.dumps({**TINY, "seed": 4, "train": {**TINY["train"], "max_steps": 2}})
    assert main(["train", "--config-json", cfg, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--force" in err
    # nothing of the old run was touched
    assert np.array_equal(read_points(out / "points.ply"), before)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ckpts
    # --force replaces only the run's own files
    (out / "notes.txt").write_text("mine")
    assert main(["train", "--config-json", cfg, "--out", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not np.array_equal(read_points(out / "points.ply"), before)


def test_out_is_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    cfg = json.dumps({**TINY, "train": {**TINY["train"], "max_steps": 1}})
    assert main(["train", "--config-json", cfg, "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_unreadable_last_pt_falls_back_to_newest_step(tmp_path):
    full = train(tiny(), tmp_path / "full")
    part = train(tiny(max_steps=6), tmp_path / "part")
    rf = RunFolder(part)
    rf.last_checkpoint.write_bytes(b"truncated")  # e.g. the disk filled while writing
    rf.checkpoint(6).write_bytes(b"")  # the newest periodic one too
    train(tiny(), part, resume="auto")
    prov = rf.read_provenance()
    assert prov["resumed_from_step"] == 4  # the newest readable checkpoint
    assert np.array_equal(read_points(full / "points.ply"), read_points(part / "points.ply"))
    kept = sorted(p.name for p in (rf.checkpoints / "unreadable").iterdir())
    assert kept == ["last.pt", "step_00000006.pt"]  # set aside, not deleted
    assert (rf.checkpoints / "unreadable" / "last.pt").read_bytes() == b"truncated"
    steps = [int(r["step"]) for r in csv.DictReader(open(rf.metrics))]
    assert steps == sorted(set(steps)) and steps[-1] == full_steps(full)


def full_steps(run):
    return [int(r["step"]) for r in csv.DictReader(open(RunFolder(run).metrics))][-1]


def test_no_readable_checkpoint_deletes_nothing(tmp_path, capsys):
    out = train(tiny(max_steps=4), tmp_path / "r")
    rf = RunFolder(out)
    for _, path in rf.checkpoint_files():
        path.write_bytes(b"junk")
    rf.last_checkpoint.write_bytes(b"junk")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    cfg = json.dumps({**TINY, "train": {**TINY["train"], "max_steps": 4}})
    assert main(["train", "--config-json", cfg, "--out", str(out), "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "no readable checkpoint" in err and "nothing was deleted" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_checkpoint_without_its_config_is_unreadable(tmp_path):
    import torch

    out = train(tiny(max_steps=4), tmp_path / "r")
    rf = RunFolder(out)
    state = torch.load(rf.last_checkpoint, weights_only=True)
    del state["config"]
    torch.save(state, rf.last_checkpoint)
    train(tiny(max_steps=6), out, resume="yes")
    assert rf.read_provenance()["resumed_from_step"] == 4  # step_00000004.pt, not last.pt
    assert (rf.checkpoints / "unreadable" / "last.pt").is_file()


def test_corrupt_metrics_rows_do_not_break_resume(tmp_path):
    out = train(tiny(max_steps=4), tmp_path / "r")
    rf = RunFolder(out)
    with open(rf.metrics, "a") as fh:
        fh.write("garbage,row\n\x00\x00\n")
    train(tiny(max_steps=6), out, resume="yes")
    steps = [int(r["step"]) for r in csv.DictReader(open(rf.metrics))]
    assert steps == [2, 4, 6]


@pytest.mark.parametrize(
    "name, content, reader",
    [
        ("metrics.csv", "step,train_loss\n1,2\n", "read_metrics"),
        ("metrics.csv", "step,train_loss,test_loss,sigma_in\n1,x,2,3\n", "read_metrics"),
        ("metrics.csv", b"\xff\xfe\x00garbage", "read_metrics"),
        ("config.yaml", "a: [unclosed", "read_config"),
        ("config.yaml", "- a list", "read_config"),
        ("provenance.json", "{not json", "read_provenance"),
        ("evaluation.json", "[1, 2]", "read_evaluation"),
        ("samples.npz", b"PK\x03\x04broken", "read_samples"),
        ("test_poses.npz", b"not a zip", "read_test_poses"),
    ],
)
def test_corrupt_files_are_holly_errors(tmp_path, name, content, reader):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(HollyError, match=name.replace(".", r"\.")):
        getattr(RunFolder(tmp_path), reader)()


def test_corrupt_run_files_give_error_lines_in_every_command(fake_run, tmp_path, capsys):
    (fake_run / "metrics.csv").write_text("step,train_loss\n1,oops\n")
    (fake_run / "config.yaml").write_text("data: [unclosed\n")
    for argv in (
        ["evaluate", str(fake_run), "--out", str(tmp_path / "e.json")],
        ["figures", str(fake_run), "--out", str(tmp_path / "f")],
        ["summarise", f"--run=x={fake_run}", "--out", str(tmp_path / "s.csv")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


def test_evaluate_leaves_no_half_updated_set(fake_run, tmp_path, capsys):
    aligned = (fake_run / "aligned_points.ply").read_bytes()
    out = tmp_path / "folder.json"
    out.mkdir()
    assert main(["evaluate", str(fake_run), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert (fake_run / "aligned_points.ply").read_bytes() == aligned


def test_non_finite_config_values_are_rejected(tmp_path, capsys):
    for text in ("train: {lr: .nan}", "train: {points_lr: .inf}", "sigma: {values: [2.0, .nan]}"):
        (tmp_path / "c.yaml").write_text(text)
        assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path)]) == 2
        assert "finite" in capsys.readouterr().err
    cfg = '{"train": {"lr": NaN}}'
    assert main(["train", "--config-json", cfg, "--out", str(tmp_path / "r")]) == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_empty_config_and_missing_config_are_errors(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert main(["train", "--config", str(tmp_path / "empty.yaml"), "--out", str(tmp_path)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "holly config-default > my.yaml" in err
    assert not (tmp_path / "r").exists()


def test_config_default_prints_the_tuned_defaults(tmp_path, capsys):
    import yaml

    assert main(["config-default", "--out", str(tmp_path / "my.yaml")]) == 0
    cfg = yaml.safe_load((tmp_path / "my.yaml").read_text())
    root = yaml.safe_load(open(__import__("conftest").ROOT / "config" / "config.yaml"))
    assert cfg == root["defaults"]
    from_dict(cfg)  # a valid experiment config


def test_divergence_stops_with_a_clear_error(tmp_path, capsys, monkeypatch):
    import holly.train.trainer

    real_step = holly.train.trainer.Trainer.train_step

    def diverging(self, step):  # a step whose loss overflows, as a too-high lr makes it
        loss, sigma = real_step(self, step)
        return (float("nan") if step == 2 else loss), sigma

    monkeypatch.setattr(holly.train.trainer.Trainer, "train_step", diverging)
    cfg = json.dumps(TINY)
    assert main(["train", "--config-json", cfg, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 3" in err
    assert not (tmp_path / "r" / "points.ply").exists()


def test_os_errors_are_one_error_line(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    cfg = json.dumps({**TINY, "train": {**TINY["train"], "max_steps": 1}})
    out = tmp_path / "blocker" / "run"
    assert main(["train", "--config-json", cfg, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "blocker" in err and len(err.strip().splitlines()) == 1
