"""tools/gpu-check.sh, the one prepared command for a borrowed GPU machine, run on the CPU at
tiny scale (DEVICE=cpu): every step must run, say how it ended, and leave no more files than
the device tool brings back (8), so that the minutes of a GPU loan are not lost to a broken
script."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_gpu_check_script_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "OUT": str(out),
        "PAPER_S": "20",
        "PAPER_RUN": str(tmp_path / "paper-length"),
        "BENCH_ARGS": "--size 32 --batch 8 --points 50 --repeats 2 --dense-repeats 1",
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        ["bash", "tools/gpu-check.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    for step in ("setup", "bench", "paper-length"):
        assert f"== {step}:" in summary
    assert summary.count("exit 0 after") == 3
    assert "missing here: nothing" in (out / "setup.log").read_text()
    assert "stopped after 20 s (not finished)" in (out / "paper-length.log").read_text()
    bench = json.loads((out / "bench.json").read_text())
    assert {"renderer", "training_step"} <= set(bench)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files


def test_gpu_check_script_fails_clearly_without_wheels_for_what_is_missing(tmp_path):
    """A machine without plyfile and no carried .gpu-wheels/: the setup step fails and says
    what to do; the remaining steps still run (and the exit status is the first failure's)."""
    # a python that hides plyfile from the check (and only from it)
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'plyfile' else _find(n, *a)\n"
    )
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "OUT": str(tmp_path / "out"),
        "PAPER_S": "1",
        "PAPER_RUN": str(tmp_path / "paper-length"),
        "BENCH_ARGS": "--size 16 --batch 2 --points 10 --repeats 1 --dense-repeats 1",
        "PYTHONPATH": str(hider),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    work = tmp_path / "checkout"  # a copy of the script without .gpu-wheels beside it
    (work / "tools").mkdir(parents=True)
    for name in ("gpu-check.sh", "gpu-wheels.txt"):
        (work / "tools" / name).write_text((ROOT / "tools" / name).read_text())
    (work / "holly").symlink_to(ROOT / "holly")
    (work / "config").symlink_to(ROOT / "config")
    proc = subprocess.run(
        ["bash", "tools/gpu-check.sh"], cwd=work, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    setup = (tmp_path / "out" / "setup.log").read_text()
    assert "missing here: plyfile" in setup
    assert "make gpu-wheels" in setup
    assert "== bench:" in (tmp_path / "out" / "summary.txt").read_text()
