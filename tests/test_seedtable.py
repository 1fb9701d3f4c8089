"""The results table over seeds (holly/results/seedtable.py, tools/results-table.py), on fake
summaries."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from holly.errors import HollyError
from holly.results.seedtable import seed_table

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "results-table.py"


def fake_summaries(folder: Path, chamfers: dict[int, tuple[float, float]]) -> None:
    for seed, (a, b) in chamfers.items():
        (folder / f"seed-{seed}").mkdir(parents=True)
        pd.DataFrame(
            {
                "experiment": ["tetrapod", "helix"],
                "chamfer": [a, b],
                "fscore": [0.9, float("nan")],
                "pose_error_median_deg": [100.0 + seed, 50.0],
                "pose_accuracy_30": [0.25 * seed, 1.0],
            }
        ).to_csv(folder / f"seed-{seed}" / "summary.csv", index=False)


def test_mean_and_sample_sd_per_experiment(tmp_path):
    fake_summaries(tmp_path, {1: (0.10, 0.20), 2: (0.12, 0.20), 3: (0.14, 0.20)})
    frames = {s: pd.read_csv(tmp_path / f"seed-{s}" / "summary.csv") for s in (1, 2, 3)}
    lines = seed_table(frames).splitlines()
    assert lines[0] == "| experiment | Chamfer | F-score | median pose error (°) | within 30° |"
    assert lines[2] == "| tetrapod | 0.120 ± 0.020 | 0.90 ± 0.00 | 102.0 ± 1.0 | 0.50 ± 0.25 |"
    # NaN scores: a dash
    assert lines[3] == "| helix | 0.200 ± 0.000 | – | 50.0 ± 0.0 | 1.00 ± 0.00 |"
    one_seed = seed_table({1: frames[1]}).splitlines()
    assert one_seed[2] == "| tetrapod | 0.100 | 0.90 | 101.0 | 0.25 |"
    with pytest.raises(HollyError, match="seed 2 lacks"):
        seed_table({1: frames[1], 2: frames[2].iloc[:1]})


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(TOOL), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_tool_commands_and_table(tmp_path):
    proc = tool("--seeds", "1", "2", "--out", "s", "--cores", "2", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first == "snakemake --cores 2 --configfile config/config.yaml s/seed-1.yaml"
    overlay = yaml.safe_load((tmp_path / "s" / "seed-2.yaml").read_text())
    assert overlay == {"results": "s/seed-2", "defaults": {"seed": 2}}
    fake_summaries(tmp_path / "s", {1: (0.10, 0.2), 2: (0.12, 0.2)})
    proc = tool("--seeds", "1", "2", "--out", "s", "--no-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "s" / "table.md").read_text()
    assert "| tetrapod | 0.110 ± 0.014 |" in table and 'SEEDS="1 2"' in table
    assert tool("--seeds", "3", "--out", "s", "--no-run", cwd=tmp_path).returncode == 2
