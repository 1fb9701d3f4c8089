"""Shared test fixtures: fake run folders, a headless browser, the repository root.

``make_fake_run(path)`` writes every file of a finished, evaluated run folder (layout in
docs/architecture.md) from seeded synthetic data, so figure, summary, viewer and report code can
be tested without training.
"""

from __future__ import annotations

import os

# One compute thread for every test process and what it starts, unless a test or a workflow
# rule (OMP_NUM_THREADS={threads}) asks for more. Set before numpy and torch load: two processes
# each running two OpenMP threads on two cores (a test beside another, or beside the machine's
# other work) spin against each other, and a 35 s training ran 17x slower that way.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def make_fake_run(
    path,
    *,
    n_points: int = 40,
    steps: int = 60,
    snapshot_every: int = 10,
    image_size: int = 16,
    n_test: int = 12,
    seed: int = 0,
    evaluated: bool = True,
    simulated: bool = True,
    name: str | None = None,
) -> Path:
    """Write a fake finished run folder at ``path`` and return it.

    The final cloud is the ground truth (a built-in shape, subsampled) seen through a known
    mirrored rigid move plus noise; ``aligned_points.ply`` undoes that move exactly, as
    ``holly evaluate`` would. Snapshots move from the initial cloud to the final one.

    Parameters
    ----------
    evaluated : bool
        Also write ``evaluation.json`` and ``aligned_points.ply``.
    simulated : bool
        Write ``ground_truth.ply`` and ``test_poses.npz`` (a real-data run has neither).
    """
    from holly.data.pointio import write_points
    from holly.data.shapes import builtin_shape
    from holly.run.runfolder import RunFolder

    run = Path(path)
    rf = RunFolder(run)  # the one owner of the layout (docs/architecture.md)
    rf.checkpoints.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gt = builtin_shape("tetrapod")
    truth_sample = gt[rng.choice(len(gt), n_points, replace=False)]
    aligned = truth_sample + rng.normal(scale=0.02, size=truth_sample.shape)
    rot = _rotation(rng) @ np.diag([1.0, 1.0, -1.0])  # a mirrored move, as evaluation allows
    shift = np.array([0.1, -0.05, 0.2])
    final = (aligned - shift) @ rot  # aligned = final @ rot.T + shift
    initial = rng.uniform(-1, 1, size=(n_points, 3))
    cfg = {
        "name": name or run.name,
        "variant": "paper",
        "seed": seed,
        "device": "cpu",
        "data": {"source": "simulated" if simulated else "zarr", "shape": "tetrapod"},
        "render": {"height": image_size, "width": image_size},
        "model": {"num_points": n_points},
        "train": {"epochs": 3},
    }
    (rf.config).write_text(yaml.safe_dump(cfg, sort_keys=False))
    (rf.provenance).write_text(
        json.dumps(
            {
                "created": "2026-01-01T00:00:00+00:00",
                "device": "cpu: fake, 1 threads",
                "git": {"commit": "0" * 40, "dirty": False},
                "seed": seed,
                "config": cfg,
            }
        )
    )
    rows = []
    for k, step in enumerate(range(snapshot_every, steps + 1, snapshot_every)):
        rows.append(
            {
                "step": step,
                "epoch": k // 2,
                "train_loss": 900.0 / (k + 1),
                "test_loss": 950.0 / (k + 1),
                "sigma_in": 8.0 * 0.7**k,
                "sigma_pred_mean": 7.0 * 0.72**k,
                "lr_cnn": 4e-4,
                "lr_points": 4e-4,
                "images_per_s": 300.0,
                "elapsed_s": 0.5 * (k + 1),
            }
        )
        t = step / steps
        write_points(rf.snapshot(step), (1 - t) * initial + t * final)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[c]) for c in header) for r in rows]
    (rf.metrics).write_text("\n".join(lines) + "\n")
    write_points(rf.initial_points, initial)
    (rf.last_checkpoint).write_bytes(b"fake")
    yy, xx = np.mgrid[:image_size, :image_size]
    blobs = np.stack(
        [np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / 8.0) for c in rng.uniform(4, image_size - 4, 8)]
    )
    np.savez(
        rf.samples,
        inputs=blobs / blobs.sum((1, 2), keepdims=True),
        renderings=np.roll(blobs, 1, axis=2) / blobs.sum((1, 2), keepdims=True),
        sigma=1.5,
    )
    if simulated:
        write_points(rf.ground_truth, gt)
        rot_true = np.stack([_rotation(rng) for _ in range(n_test)])
        noise = np.stack([_rotation(np.random.default_rng(i)) for i in range(n_test)])
        rot_pred = np.where(np.arange(n_test)[:, None, None] % 2 == 0, rot_true, noise)
        np.savez(
            rf.test_poses,
            rot_true=rot_true,
            rot_pred=rot_pred,
            trans_true=np.zeros((n_test, 2)),
            trans_pred=np.zeros((n_test, 2)),
            sigma_in=np.full(n_test, 1.5),
            sigma_pred=np.full(n_test, 1.6),
        )
    if evaluated:
        metrics = {
            "chamfer": 0.03,
            "hausdorff": 0.1,
            "hausdorff95": 0.08,
            "precision": 0.9,
            "recall": 0.4,
            "fscore": 0.55,
            "handedness": "mirrored",
        }
        evaluation = {
            "n_points": n_points,
            "n_ground_truth": len(gt) if simulated else None,
            "tau": 0.15 if simulated else None,
            "reconstruction": metrics if simulated else None,
            "random_init": {**metrics, "chamfer": 0.4, "fscore": 0.1} if simulated else None,
            "blob": {**metrics, "chamfer": 0.2, "fscore": 0.3} if simulated else None,
            "ground_truth_floor": {**metrics, "chamfer": 0.02, "fscore": 0.6}
            if simulated
            else None,
            "pose_error_deg": {"median": 45.0, "mean": 60.0} if simulated else None,
            "chamfer_ratio_to_blob": 0.15 if simulated else None,
        }
        (rf.evaluation).write_text(json.dumps(evaluation, indent=2))
        if simulated:
            write_points(rf.aligned_points, aligned)
    write_points(rf.points, final)  # last, as `holly train` does
    return run


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """A finished, evaluated fake run folder named ``demo``."""
    return make_fake_run(tmp_path / "demo")


class Browser:
    """Headless Chromium (Debian's package): load a page, return its DOM and console lines."""

    def __init__(self, exe: Path):
        self.exe = exe

    def _run(self, url: str, *extra: str, budget_ms: int = 4000) -> subprocess.CompletedProcess:
        home = Path(os.environ.get("TMPDIR", "/tmp"))
        cmd = [
            str(self.exe),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            # offline: any attempt to reach the network fails instead of hanging
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            *extra,
            url,
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)}
        )

    def load(self, path: Path) -> tuple[str, list[str]]:
        """``(dom after scripts ran, console messages)`` of a local HTML file."""
        proc = self._run(Path(path).resolve().as_uri(), "--dump-dom")
        assert proc.returncode == 0, proc.stderr[-2000:]
        console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
        return proc.stdout, console

    def screenshot(self, path: Path, out: Path, size=(900, 1000)) -> Path:
        proc = self._run(
            Path(path).resolve().as_uri(),
            f"--screenshot={out}",
            f"--window-size={size[0]},{size[1]}",
        )
        assert out.is_file(), proc.stderr[-2000:]
        return out


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium; skips the test when /usr/bin/chromium is not installed."""
    exe = CHROMIUM if CHROMIUM.exists() else None
    if exe is None:
        found = shutil.which("chromium")
        exe = Path(found) if found else None
    if exe is None:
        pytest.skip(
            "headless browser test needs Debian's chromium (/usr/bin/chromium); "
            "install it with tools/system-deps.sh or `apt-get install chromium`"
        )
    return Browser(exe)


def viewer_states(dom: str) -> list[dict]:
    """``data-status`` and ``data-points-drawn`` of each viewer element in a dumped DOM."""
    states = []
    for tag in re.findall(r'<div class="holly-viewer"[^>]*>', dom):
        attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag))
        states.append(attrs)
    return states


def body_errors(dom: str) -> int | None:
    m = re.search(r'<body[^>]*data-viewer-errors="(\d+)"', dom)
    return int(m.group(1)) if m else None


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake (dry) run as ``{rule: count}``."""
    table = output.split("Job stats:", 1)[1]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }
