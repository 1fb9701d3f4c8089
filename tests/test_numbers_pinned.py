"""The restructure of issue 23 changed neither the numbers nor the resume format.

The package as it was before the restructure (commit :data:`PINNED`, the flat ``holly/`` layout)
is unpacked with ``git archive`` and trains the same tiny experiment as the current code, on the
same machine, each in its own ``python -m holly train`` process. Both runs must leave the same
files: ``points.ply``, ``initial_points.ply``, the snapshots, ``test_poses.npz``,
``metrics.csv`` without its timing columns, and every tensor and value of the checkpoints (the
same keys). A run of the pinned code killed midway (``kill -9`` right after a checkpoint, in the
amortised phase and in the refinement stage) is resumed by the current code with
``--resume auto`` and must end with the uninterrupted run's files.

Both sides run here and now: float results depend on the CPU's vector instructions (AVX2 and
AVX-512 round differently), so expected hashes stored in the repository would be wrong on some
machines. The pinned commit must be in the clone's history (CI clones main in full); in a
shallow clone or a source tarball the test skips, naming the commit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_poses import TINY_REFINE
from test_resume_exact import assert_same_run as _assert_same_files

ROOT = Path(__file__).resolve().parents[1]


def config_with_new_defaults(pinned: dict, current: dict) -> bool:
    """The current code's resolved config is the pinned code's, plus keys added since then at
    their defaults (the rule `--resume auto` applies: a key a checkpoint lacks compares as its
    default, holly/run/checkpoint.py)."""
    from holly.config import from_dict

    defaults = from_dict({"variant": pinned.get("variant", "paper")}).to_dict()
    trimmed = {}
    for section, value in current.items():
        if isinstance(value, dict) and section in pinned:
            old = pinned[section]
            added = {k: v for k, v in value.items() if k not in old}
            if any(defaults.get(section, {}).get(k) != v for k, v in added.items()):
                return False
            trimmed[section] = {k: v for k, v in value.items() if k in old}
        else:
            trimmed[section] = value
    return trimmed == pinned


def assert_same_run(pinned_run: Path, current_run: Path) -> None:
    _assert_same_files(pinned_run, current_run, config_with_new_defaults)


PINNED = "5107f9a"  # main before issue 23's first commit (813c7f6, stages as sub-packages)

# 12 amortised CNN steps (3 pose hypotheses) and 6 refinement steps; checkpoints every 3 steps.
# About 5 s of CPU per run on one thread.
CONFIG = json.dumps(TINY_REFINE)

# Run by the pinned code only: train, and SIGKILL the process right after the checkpoint of step
# argv[1] is written (before that, the pinned Trainer's `save_checkpoint` writes it atomically).
KILLED_AFTER_CHECKPOINT = """
import os, signal, sys
from holly.cli import main
from holly.train import Trainer

save, kill_at = Trainer.save_checkpoint, int(sys.argv[1])

def save_then_die(self):
    save(self)
    if self.step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

Trainer.save_checkpoint = save_then_die
sys.exit(main(sys.argv[2:]))
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _pinned_commit_missing() -> str | None:
    """Why the pinned commit cannot be read here, or None when it can."""
    git = shutil.which("git")
    if git is None:
        return "git is not installed"
    probe = subprocess.run(
        [git, "-C", str(ROOT), "cat-file", "-e", f"{PINNED}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return None if probe.returncode == 0 else f"{ROOT} is not a git clone holding it"


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> Path:
    """A folder whose ``holly/`` is the package at :data:`PINNED` (for ``PYTHONPATH``)."""
    why = _pinned_commit_missing()
    if why is not None:
        pytest.skip(f"needs the pre-restructure commit {PINNED} in the history: {why}")
    tree = tmp_path_factory.mktemp("pinned")
    archive = tree / "holly.tar"
    with open(archive, "wb") as out:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", PINNED, "holly/"],
            stdout=out,
            check=True,
        )
    # our own commit's files; the "data" filter where this Python has it (3.11.4 and later)
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive) as tar:
        tar.extractall(tree, **safe)
    archive.unlink()
    return tree


def _python(code_root: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run this test's Python with ``code_root``'s ``holly`` package first on the path.

    The working directory is ``cwd`` (a tmp folder), never the repository root, which Python
    would put first on ``sys.path`` and so import the current ``holly`` whatever ``PYTHONPATH``
    says. One compute thread, as in the other tests.
    """
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _train(code_root: Path, run: Path, *extra: str) -> None:
    done = _python(
        code_root,
        ["-m", "holly", "train", "--config-json", CONFIG, "--out", str(run), *extra],
        run.parent,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def runs(pinned, tmp_path_factory) -> dict[str, Path]:
    """The tiny experiment trained uninterrupted by the pinned code and by the current code."""
    root = tmp_path_factory.mktemp("runs")
    for code_root, name in ((pinned, "pinned"), (ROOT, "current")):
        where = _python(code_root, ["-c", "import holly; print(holly.__file__)"], root)
        assert Path(where.stdout.strip()) == code_root / "holly" / "__init__.py", where.stderr
        _train(code_root, root / name)
    return {"pinned": root / "pinned", "current": root / "current"}


def test_the_current_code_trains_to_the_pinned_codes_files(runs):
    for name in ("points.ply", "initial_points.ply", "test_poses.npz", "checkpoints/last.pt"):
        assert (runs["pinned"] / name).is_file(), name
    assert len(list((runs["pinned"] / "snapshots").glob("*.ply"))) == 6
    # every file but provenance.json: byte for byte, metrics.csv without its timing columns,
    # the .npz arrays one by one, the checkpoints' keys, tensors and values
    assert_same_run(runs["pinned"], runs["current"])


@pytest.mark.parametrize(
    "step",
    [
        6,  # in the amortised phase
        15,  # in the refinement stage (12 amortised steps + 3 refinement steps)
    ],
)
def test_a_run_of_the_pinned_code_killed_midway_resumes_under_the_current_code(
    runs, pinned, tmp_path, step
):
    run = tmp_path / "run"
    train = ["train", "--config-json", CONFIG, "--out", str(run)]
    killed = _python(pinned, ["-c", KILLED_AFTER_CHECKPOINT, str(step), *train], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "checkpoints" / f"step_{step:08d}.pt").is_file()
    assert not (run / "points.ply").exists()
    _train(ROOT, run, "--resume", "auto")
    # resumed from the pinned code's checkpoint, not started afresh (as --resume auto does when
    # it finds the checkpoint incompatible)
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["resumed_from_step"] == step
    assert not (run / "checkpoints" / "replaced").exists()
    assert_same_run(runs["pinned"], run)


def test_new_config_keys_count_only_at_their_defaults():
    pinned = {"variant": "paper", "model": {"num_points": 20}, "seed": 3}
    current = {"variant": "paper", "model": {"num_points": 20, "pose_prior": "uniform"}, "seed": 3}
    assert config_with_new_defaults(pinned, current)
    assert not config_with_new_defaults(
        pinned, {**current, "model": {"num_points": 20, "pose_prior": "tilt"}}
    )
    assert not config_with_new_defaults(pinned, {**current, "seed": 4})
    assert not config_with_new_defaults(pinned, {**current, "model": {"num_points": 21}})
