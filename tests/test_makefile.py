"""`make run` fits the machine: the torch build choice, and what each target installs."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHOICE = ROOT / "tools" / "torch-choice.sh"


def choose(arg: str, tmp_path: Path, gpu: bool | None) -> subprocess.CompletedProcess:
    """Run tools/torch-choice.sh with a fake nvidia-smi (None: no nvidia-smi at all)."""
    env = dict(os.environ, NVIDIA_SMI=str(tmp_path / "nvidia-smi"))
    if gpu is not None:
        fake = tmp_path / "nvidia-smi"
        listing = "GPU 0: NVIDIA H200 (UUID: GPU-0)" if gpu else "No devices were found"
        fake.write_text(f"#!/bin/sh\necho '{listing}'\nexit {0 if gpu else 6}\n")
        fake.chmod(0o755)
    return subprocess.run(["sh", str(CHOICE), arg], capture_output=True, text=True, env=env)


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="two torch builds only on Linux")
@pytest.mark.parametrize(
    ("arg", "gpu", "expected"),
    [
        ("auto", None, "cpu"),  # no nvidia-smi: a laptop or CI runner
        ("auto", False, "cpu"),  # nvidia-smi without a GPU (driver only)
        ("auto", True, "cuda"),
        ("cpu", True, "cpu"),  # an explicit choice wins
        ("cuda", None, "cuda"),
    ],
)
def test_torch_choice(tmp_path, arg, gpu, expected):
    proc = choose(arg, tmp_path, gpu)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_torch_choice_rejects_unknown(tmp_path):
    proc = choose("rocm", tmp_path, None)
    assert proc.returncode == 2 and "TORCH must be auto, cpu or cuda" in proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_run_installs_the_workflow_only_and_test_adds_the_test_tools(tmp_path):
    def plan(target: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}", "TORCH=cpu"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    run = plan("run")
    assert "tools/torch-choice.sh cpu" in run
    assert '"torch==2.13.0+cpu"' in run and "download.pytorch.org/whl/cpu" in run
    assert "-e ." in run and ".[test]" not in run
    assert "snakemake --cores all" in run
    test = plan("test")
    assert "-e '.[test]'" in test and "tools/run-tiers" in test


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_paper_length_trains_both_configs_resumably_then_scores_and_draws_them(tmp_path):
    out = tmp_path / "pl"
    proc = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "paper-length", f"VENV={tmp_path / 'venv'}",
         "TORCH=cpu", f"PAPER_LENGTH={out}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert "for run in tetrapod tetrapod-improved" in plan
    assert "--config config/paper-length-$run.yaml" in plan and "--resume auto" in plan
    assert f"holly evaluate {out}/$run --snapshots" in plan
    assert "--only learning_curve" in plan and f"--with {out}/tetrapod-improved" in plan
    for run in ("tetrapod", "tetrapod-improved"):
        assert (ROOT / "config" / f"paper-length-{run}.yaml").is_file()
