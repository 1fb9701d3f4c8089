"""One writer per run folder (issue 24): the advisory lock `.holly.lock` (RunFolder.lock).

Real processes: a second writer exits 2 naming the holder's pid; a holder killed with -9
leaves no lock behind that blocks a plain rerun; evaluations share the lock.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import make_fake_run

from holly.cli import main
from holly.errors import HollyError
from holly.run.runfolder import LOCK, RunFolder

TINY = {
    "seed": 3,
    "data": {"shape": "tetrapod", "particles": 16, "test_particles": 2, "augment": 1},
    "render": {"height": 16, "width": 16},
    "model": {"num_points": 8},
    "sigma": {"values": [2.0]},
    "train": {"epochs": 1, "batch_size": 8, "log_every": 1, "test_images": 2, "threads": 1},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

HOLDER = """
import sys, time
from holly.run.runfolder import RunFolder
with RunFolder(sys.argv[1]).lock(sys.argv[2], shared=sys.argv[3] == "shared"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(run, command="train", shared=False):
    """A process holding the lock of ``run``; returns it once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), command, "shared" if shared else "exclusive"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def error_line(capsys):
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def holder():
    procs = []

    def start(*args, **kwargs):
        procs.append(hold(*args, **kwargs))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            kill9(proc)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, holder):
    run = make_fake_run(tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    proc = holder(run, "train")
    for argv in (
        ["evaluate", run, "--out", tmp_path / "e.json"],
        ["compare", run, run, "--out", tmp_path / "c.json"],
        ["refine", run, "--steps", "1"],
        ["train", "--config-json", json.dumps(TINY), "--out", run, "--resume", "auto"],
    ):
        assert main([str(a) for a in argv]) == 2
        line = error_line(capsys)
        assert f"pid {proc.pid}, holly train" in line and str(run) in line, line
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "c.json").exists()
    assert sorted(p.name for p in run.iterdir()) == sorted([*before, LOCK])


def test_evaluations_share_the_lock_but_not_with_training(tmp_path, capsys, holder):
    run = make_fake_run(tmp_path / "run")
    proc = holder(run, "evaluate", shared=True)
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e.json")]) == 0
    assert (tmp_path / "e.json").is_file()
    assert (run / LOCK).is_file()  # the other evaluation still holds it
    cfg = json.dumps(TINY)
    assert main(["train", "--config-json", cfg, "--out", str(run), "--force"]) == 2
    assert f"pid {proc.pid}" in error_line(capsys)
    assert (run / "points.ply").is_file()  # --force removed nothing


def test_a_killed_holder_does_not_block_a_rerun(tmp_path, holder):
    run = tmp_path / "run"
    kill9(holder(run, "train"))
    assert (run / LOCK).is_file()  # left behind by kill -9: harmless
    cfg = json.dumps({**TINY, "train": {**TINY["train"], "max_steps": 2}})
    assert main(["train", "--config-json", cfg, "--out", str(run)]) == 0
    assert (run / "points.ply").is_file()
    assert not (run / LOCK).exists()  # the last holder removes it


def test_two_real_trainings_of_one_folder(tmp_path):
    """Two `holly train` processes: the second exits 2 naming the first's pid; after a kill -9
    of the first, the plain rerun (same command) continues the run."""
    run = tmp_path / "run"
    long = {**TINY, "data": {**TINY["data"], "particles": 400}, "train": {**TINY["train"]}}
    long["train"].update(epochs=50, checkpoint_every=5)
    argv = [sys.executable, "-m", "holly", "train", "--config-json", json.dumps(long)]
    argv += ["--out", str(run), "--resume", "auto"]
    first = subprocess.Popen(argv, env=ENV, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it holds the lock and has a checkpoint
            held = (run / LOCK).is_file() and (run / LOCK).read_text().startswith(str(first.pid))
            if held and (run / "checkpoints" / "last.pt").is_file():
                break
            assert first.poll() is None, "the first training ended before the test"
            time.sleep(0.2)
        else:
            pytest.fail("the first training took no lock within 120 s")
        second = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and f"pid {first.pid}, holly train" in errors[0], errors
    finally:
        kill9(first)
    rerun = subprocess.run(
        [*argv[:-2], "--max-steps", "12", "--resume", "auto"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (run / "points.ply").is_file() and not (run / LOCK).exists()


def test_the_lock_leaves_no_folder_behind_when_refused(tmp_path):
    run = RunFolder(tmp_path / "a" / "b" / "run")
    with pytest.raises(HollyError, match="boom"):
        with run.lock("train"):
            raise HollyError("boom")
    assert not (tmp_path / "a").exists()


def test_the_lock_file_is_no_run_file(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    (run.root / LOCK).write_text("12345 holly train\n")  # a stale lock file
    assert not run.holds_run()
    assert run.lock_file not in run.trained_files()
    with run.lock("train"):
        run.claim(resume=False)


def test_a_read_only_run_is_evaluated_elsewhere(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path / "run")
    real_open = os.open

    def read_only(path, *args, **kwargs):  # what a folder without write permission does
        if str(path).endswith(LOCK):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    out = tmp_path / "e.json"
    argv = ["evaluate", str(run), "--out", str(out), "--aligned", str(tmp_path / "a.ply")]
    assert main(argv) == 0 and out.is_file()
    cfg = json.dumps(TINY)
    assert main(["train", "--config-json", cfg, "--out", str(run), "--resume", "auto"]) == 2
