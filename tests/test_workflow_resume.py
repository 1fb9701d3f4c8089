"""A plain `snakemake` rerun after Ctrl-C resumes training and keeps its history (issue 9).

Before: the train rule declared metrics.csv and snapshots/ as outputs, so Snakemake deleted them
when it stopped the job, and the rerun stopped with IncompleteFilesException. Now points.ply is
the rule's only output and profiles/default sets rerun-incomplete.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

CONFIG = {
    "base": "none",
    "defaults": {
        "device": "cpu",
        "data": {"particles": 64, "test_particles": 4},
        "render": {"height": 32, "width": 32},
        "model": {"num_points": 20},
        "sigma": {"values": [3.0, 2.0]},
        "train": {
            "epochs": 40,  # 160 steps of batch 16: long enough to be stopped in the middle
            "batch_size": 16,
            "log_every": 4,
            "test_images": 4,
            "snapshot_every": 4,
            "checkpoint_every": 8,
            "threads": 1,
        },
    },
    "experiments": [{"name": "helix", "data": {"shape": "helix"}}],
}
TARGET = "results/helix/points.ply"


def _cmd(*args):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env():
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}


def test_default_profile_reruns_incomplete_jobs():
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile["rerun-incomplete"] is True
    train = (ROOT / "workflow" / "rules" / "train.smk").read_text()
    outputs = train.split("    output:")[1].split("    log:")[0]
    assert "metrics.csv" not in outputs and "snapshots" not in outputs  # history is not output


@pytest.mark.workflow
@pytest.mark.timeout(900)
def test_plain_rerun_after_ctrl_c_resumes_and_keeps_history(tmp_path):
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(CONFIG))
    args = (TARGET, "--cores", "1", "--configfile", "my.yaml")
    run = tmp_path / "results" / "helix"
    proc = subprocess.Popen(
        _cmd(*args),
        cwd=tmp_path,
        env=_env(),
        start_new_session=True,
        # a pytest started in the background (`cmd &`) passes SIGINT on as ignored, and Python
        # then keeps ignoring it: the Ctrl-C below would be lost and the run would finish
        preexec_fn=_default_sigint,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not list((run / "checkpoints").glob("step_*.pt")):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.5)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (run / "points.ply").exists()
    rows_before = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert rows_before, "the metric rows of the interrupted run were deleted"
    snaps_before = sorted(p.name for p in (run / "snapshots").glob("points_*.ply"))
    assert snaps_before

    again = subprocess.run(_cmd(*args), cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "IncompleteFilesException" not in again.stderr
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["resumed_from_step"] >= 8  # from a checkpoint, not from step 0
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert steps == list(range(4, 161, 4))  # one row per log step, none lost, none twice
    snaps = {p.name for p in (run / "snapshots").glob("points_*.ply")}
    assert {s for s in snaps_before if int(s[7:15]) <= prov["resumed_from_step"]} <= snaps
