"""Resume is exact for every file of the run folder (issue 24).

A tiny training is stopped in-process at several points (right after a checkpoint, between two
checkpoints, within the last three steps, in the refinement stage, while the final files are
written) and continued with ``--resume yes``; every file it leaves is then the same as that of an
uninterrupted run: ``metrics.csv`` minus its timing columns, ``test_poses.npz``,
``samples.npz``, snapshots, the point files and the checkpoints' tensors. A finished run resumed
is left untouched.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_poses import TINY_REFINE
from test_train import TINY

from holly.config import from_dict
from holly.run.runfolder import RunFolder
from holly.train.trainer import Trainer, train

TIMING = ("images_per_s", "elapsed_s")
SKIP = {"provenance.json"}  # creation and finishing times, the step it resumed from


class Killed(Exception):
    """Stands in for a kill: raised from inside the training loop."""


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in SKIP
    }


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # nan == nan


def _metrics(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(open(path))]


def assert_same_run(full: Path, resumed: Path, same_config=None) -> None:
    """Every file of two run folders the same (``provenance.json`` aside); ``same_config(a, b)``,
    if given, decides whether two resolved configs (``config.yaml``, a checkpoint's
    ``config``) count as the same, instead of equality."""
    a, b = _files(full), _files(resumed)
    assert a.keys() == b.keys()
    for name, path in a.items():
        other = b[name]
        if path.suffix == ".pt":
            x, y = (torch.load(p, weights_only=True) for p in (path, other))
            if same_config is not None:
                assert same_config(x.pop("config"), y.pop("config")), f"{name}: config"
            assert _same(x, y), name
        elif path.name == "config.yaml" and same_config is not None:
            x, y = (yaml.safe_load(p.read_text()) for p in (path, other))
            assert same_config(x, y), name
        elif path.suffix == ".npz":
            x, y = np.load(path), np.load(other)
            assert x.files == y.files, name
            for key in x.files:
                assert np.array_equal(x[key], y[key]), f"{name}: {key}"
        elif path.name == "metrics.csv":
            assert _metrics(path) == _metrics(other)
        else:
            assert path.read_bytes() == other.read_bytes(), name


def _kill(monkeypatch, where: str, step: int) -> None:
    """Make the next training raise :class:`Killed` at ``where``:

    * ``checkpoint``: right after the checkpoint of ``step`` is written,
    * ``step``: when step ``step + 1`` is about to run (its predecessor's rows, snapshot and
      checkpoint written),
    * ``final``: while the final files are written (``test_poses.npz`` written, ``samples.npz``
      not yet).
    """
    if where == "checkpoint":
        save = Trainer.save_checkpoint

        def hook(self):
            save(self)
            if self.step == step:
                raise Killed

        monkeypatch.setattr(Trainer, "save_checkpoint", hook)
    elif where == "step":
        for name in ("train_step", "refine_step"):
            original = getattr(Trainer, name)

            def hook(self, *args, _original=original):
                if self.step == step:
                    raise Killed
                return _original(self, *args)

            monkeypatch.setattr(Trainer, name, hook)
    else:

        def hook(self, **arrays):
            raise Killed

        monkeypatch.setattr(RunFolder, "write_samples", hook)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return {
        "tiny": train(from_dict(TINY), root / "tiny"),
        "refine": train(from_dict(TINY_REFINE), root / "refine"),
    }


CONFIGS = {"tiny": TINY, "refine": TINY_REFINE}


@pytest.mark.parametrize(
    "config,where,step",
    [
        ("tiny", "checkpoint", 3),
        ("tiny", "step", 10),  # within the last three steps, between two checkpoints
        ("tiny", "final", 0),  # the last step's checkpoint written: only the final files left
        ("refine", "checkpoint", 12),  # the amortised phase done, the refinement not started
        ("refine", "step", 16),  # in the refinement stage (12 amortised + 6 refine steps)
        ("refine", "final", 0),  # refining the held-out poses
    ],
)
def test_a_killed_run_resumes_to_the_same_files(
    tmp_path, monkeypatch, uninterrupted, config, where, step
):
    cfg = from_dict(CONFIGS[config])
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill(patch, where, step)
        with pytest.raises(Killed):
            train(cfg, run)
    assert not (run / "points.ply").exists()
    # what `kill -9` inside a checkpoint write leaves: removed by the next train
    stale = run / "checkpoints" / ".last.pt.k9x_ab12.tmp"
    stale.write_bytes(b"partial")
    train(cfg, run, resume="yes")
    assert not stale.exists()
    assert_same_run(uninterrupted[config], run)


def test_a_finished_run_resumed_is_left_untouched(tmp_path):
    run = train(from_dict(TINY), tmp_path / "run")

    def state():
        files = sorted(p for p in run.rglob("*") if p.is_file())
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    before = state()
    for mode in ("yes", "auto"):
        train(from_dict(TINY), run, resume=mode)
    assert state() == before


def test_a_checkpoint_without_calibration_batches_still_resumes(tmp_path, monkeypatch):
    # made by holly before the checkpoints held the BatchNorm calibration batches
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill(patch, "checkpoint", 6)
        with pytest.raises(Killed):
            train(from_dict(TINY), run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["calibration"]
    state["holly_checkpoint"] = 1
    torch.save(state, last)
    train(from_dict(TINY), run, resume="auto")
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert steps == [2, 4, 6, 8, 10, 12]
    assert (run / "points.ply").is_file() and (run / "test_poses.npz").is_file()
