"""The checkpoint format and resume rules (holly/run/checkpoint.py) on their own, without
training: the module sees state dicts, modules and a loader callable, never the trainer."""

from __future__ import annotations

import pytest
import torch

from holly.config import from_dict
from holly.errors import HollyError
from holly.run import checkpoint
from holly.run.runfolder import RunFolder


def _folder(tmp_path, names=("last.pt", "step_00000003.pt", "step_00000006.pt")) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    for name in names:
        (run.checkpoints / name).write_bytes(name.encode())
    return run


def test_resume_tries_last_then_newest_and_sets_aside_the_unreadable(tmp_path):
    run = _folder(tmp_path)
    tried = []

    def load_from(path):
        tried.append(path.name)
        if path.name != "step_00000003.pt":
            raise checkpoint.UnreadableCheckpoint(path, "damaged")

    checkpoint.resume(run, "yes", load_from)
    assert tried == ["last.pt", "step_00000006.pt", "step_00000003.pt"]
    kept = sorted(p.name for p in (run.checkpoints / "unreadable").iterdir())
    assert kept == ["last.pt", "step_00000006.pt"]


def test_resume_no_reads_nothing_and_none_readable_touches_nothing(tmp_path):
    run = _folder(tmp_path)
    checkpoint.resume(run, "no", lambda path: pytest.fail("read in mode no"))

    def unreadable(path):
        raise checkpoint.UnreadableCheckpoint(path, "damaged")

    with pytest.raises(HollyError, match="no readable checkpoint .* last.pt: damaged"):
        checkpoint.resume(run, "auto", unreadable)
    assert not (run.checkpoints / "unreadable").exists()


def test_another_config_stops_yes_and_is_kept_aside_by_auto(tmp_path):
    run = _folder(tmp_path, ["last.pt"])

    def other_config(path):
        raise HollyError("made with a different config")

    with pytest.raises(HollyError, match="different config"):
        checkpoint.resume(run, "yes", other_config)
    checkpoint.resume(run, "auto", other_config)
    assert (run.replaced / "last.pt").read_bytes() == b"last.pt"
    assert not run.last_checkpoint.exists()


def _state(cfg: dict, model: torch.nn.Module, **extra) -> dict:
    return {"step": 3, "config": cfg, "model": model.state_dict(), "optimizer": {}, **extra}


def test_check_resumable_allows_the_resumable_keys_only(tmp_path):
    cfg = from_dict({"seed": 1}).to_dict()
    model = torch.nn.Linear(2, 3)
    path = tmp_path / "last.pt"
    longer = {**cfg, "train": {**cfg["train"], "max_steps": 7}, "device": "cpu"}
    checkpoint.check_resumable(_state(cfg, model), longer, model, path)
    # before the refinement stage has started, every refine key may change; after, not
    other_refine = {**cfg, "refine": {**cfg["refine"], "images": 3}}
    checkpoint.check_resumable(_state(cfg, model), other_refine, model, path)
    with pytest.raises(HollyError, match=r"different config \(refine.images\)"):
        checkpoint.check_resumable(_state(cfg, model, refinement={}), other_refine, model, path)
    with pytest.raises(HollyError, match=r"different config \(seed\)"):
        checkpoint.check_resumable(_state(cfg, model), {**cfg, "seed": 2}, model, path)
    with pytest.raises(checkpoint.UnreadableCheckpoint, match=r"weight is \(3, 2\), not \(4, 2\)"):
        checkpoint.check_resumable(_state(cfg, model), cfg, torch.nn.Linear(2, 4), path)


def test_save_load_and_a_misfit_changes_nothing(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    model = torch.nn.Linear(2, 3)
    state = {**_state({}, model), "holly_checkpoint": checkpoint.FORMAT}
    checkpoint.save(state, run, keep=1)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.pt", "step_00000003.pt"]
    loaded = checkpoint.load(run.last_checkpoint, torch.device("cpu"))
    assert loaded["holly_checkpoint"] == 2 and torch.equal(loaded["model"]["bias"], model.bias)
    assert checkpoint.calibration_batches(loaded, torch.device("cpu")) == []
    before = model.weight.detach().clone()
    with pytest.raises(checkpoint.UnreadableCheckpoint, match="does not fit"):
        with checkpoint.all_or_nothing(run.last_checkpoint, model):
            model.load_state_dict({"weight": torch.zeros(3, 2), "bias": torch.zeros(3)})
            raise KeyError("pose_adam")
    assert torch.equal(model.weight, before)
    (run.checkpoints / "empty.pt").write_bytes(b"")
    with pytest.raises(checkpoint.UnreadableCheckpoint, match="empty"):
        checkpoint.load(run.checkpoints / "empty.pt", torch.device("cpu"))
