"""Calibrate the half-set FSC resolution against the error to ground truth (simulated data).

For each built-in shape and each particle count, trains the two half-set runs (`holly train
--half 1|2` semantics, same steps for every condition), scores each half against the ground
truth (`holly evaluate`: Chamfer after the mirror-aware alignment, pose error) and compares the
halves (`holly compare`: Chamfer between them, FSC resolution at 0.143 and 0.5, and each
half's FSC resolution against the ground-truth density). Writes ``calibration.csv`` and
``calibration.md`` (the README's table) to --out; finished conditions are skipped on a rerun.

    nice -n 10 env OMP_NUM_THREADS=1 python tools/calibrate_fsc.py --out results/calibration

Small on purpose (32x32 images, 100 points, 800 and 250 steps per half): the CPU it was made on is
shared. Every number is in model units (1 unit = 8 pixels at 32x32).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from holly.config import from_dict
from holly.results.evaluate import evaluate_run
from holly.results.halfsets import compare_runs
from holly.run.runfolder import RunFolder, write_evaluation, write_halfsets
from holly.train import train

SHAPES = ("cep152", "tetrapod", "helix")
PARTICLES = (200, 1600)  # total training particles; each half trains on half of them
# The settings of tests/test_learning.py (a short CPU run that learns cep152's structure).
BASE = {
    "seed": 0,
    "device": "cpu",
    "data": {"test_particles": 16, "augment": 8},
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 100, "rotation": "6d"},
    "loss": {"kind": "l1"},
    "sigma": {"values": [3.0, 2.0, 1.4, 1.0, 0.7], "schedule": "geometric"},
    "train": {
        "batch_size": 32,
        "points_lr": 0.005,
        "log_every": 100,
        "snapshot_every": 100000,
        "checkpoint_every": 100000,
        "test_images": 128,
        "threads": 1,
    },
}

log = logging.getLogger("calibrate_fsc")


def condition_config(shape: str, particles: int, steps: int, seed: int) -> dict:
    """One condition's experiment config: ``epochs`` chosen so each half trains ~``steps``."""
    cfg = copy.deepcopy(BASE)
    cfg["seed"] = seed
    cfg["name"] = f"{shape}-p{particles}-s{steps}"
    cfg["data"].update(shape=shape, particles=particles)
    per_half_images = (particles // 2) * cfg["data"]["augment"]
    steps_per_epoch = max(1, per_half_images // cfg["train"]["batch_size"])
    cfg["train"]["epochs"] = max(1, math.ceil(steps / steps_per_epoch))
    cfg["train"]["max_steps"] = steps
    return cfg


def run_condition(out: Path, cfg: dict) -> dict:
    folder = RunFolder(out / cfg["name"])
    halves = [RunFolder(folder.root / f"half{half}") for half in (1, 2)]
    result = folder.read_halfsets()
    if result is None:
        for half, run in enumerate(halves, start=1):
            started = time.perf_counter()
            train(from_dict({**cfg, "validation": {"half": half}}), run.root, force=True)
            log.info(
                "%s half %d trained in %.0f s", cfg["name"], half, time.perf_counter() - started
            )
            write_evaluation(run.evaluation, evaluate_run(run.root))
        result = compare_runs(halves[0].root, halves[1].root)
        write_halfsets(folder.halfsets, result)
        result = folder.read_halfsets()
    evals = [run.read_evaluation() for run in halves]
    truth = result["vs_ground_truth"]
    row = {
        "shape": cfg["data"]["shape"],
        "particles": cfg["data"]["particles"],
        "steps_per_half": cfg["train"]["max_steps"],
        "sigma_units": result["sigma"],
        "resolution_limit": result["resolution_limit"],
        "halves_fsc_0143": result["resolution_0143"],
        "halves_fsc_0143_limited": result["resolution_0143_limited"],
        "halves_fsc_05": result["resolution_05"],
        "halves_chamfer": result["chamfer"],
        "gt_chamfer_mean": float(np.mean([truth[k]["chamfer"] for k in ("a", "b")])),
        "gt_fsc_0143_mean": float(np.mean([truth[k]["resolution_0143"] for k in ("a", "b")])),
        "gt_fsc_05_mean": float(np.mean([truth[k]["resolution_05"] for k in ("a", "b")])),
        "blob_chamfer": float(np.mean([e["blob"]["chamfer"] for e in evals])),
        "pose_error_median_deg": float(np.mean([e["pose_error_deg"]["median"] for e in evals])),
    }
    for key in ("head_usage", "unidentifiable_fraction"):  # pose diagnostics, where recorded
        values = [e.get(key) for e in evals]
        if any(v is not None for v in values):
            row[key] = json.dumps(values)
    return row


def markdown(table: pd.DataFrame) -> str:
    cols = [
        ("shape", "shape", "{}"),
        ("particles", "particles (both halves)", "{:d}"),
        ("steps_per_half", "steps per half", "{:d}"),
        ("halves_fsc_0143", "half-set FSC 0.143", "{:.3f}"),
        ("halves_fsc_05", "half-set FSC 0.5", "{:.3f}"),
        ("halves_chamfer", "Chamfer half vs half", "{:.3f}"),
        ("gt_chamfer_mean", "GT Chamfer (mean of halves)", "{:.3f}"),
        ("blob_chamfer", "blob Chamfer", "{:.3f}"),
        ("gt_fsc_0143_mean", "FSC 0.143 half vs GT", "{:.3f}"),
        ("pose_error_median_deg", "median pose error (°)", "{:.0f}"),
    ]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for rec in table.to_dict("records"):
        cells = []
        for key, _, spec in cols:
            text = spec.format(rec[key])
            if key == "halves_fsc_0143" and rec.get("halves_fsc_0143_limited"):
                text = "≤ " + text
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")

    def rho(a, b, rows=table):
        return rows[[a, b]].rank().corr().iloc[0, 1]

    lines.append("")
    lines.append(
        f"Spearman rank correlations over the {len(table)} conditions: with GT Chamfer, "
        f"half-set FSC 0.143 {rho('halves_fsc_0143', 'gt_chamfer_mean'):.2f}, FSC 0.5 "
        f"{rho('halves_fsc_05', 'gt_chamfer_mean'):.2f}, half-vs-half Chamfer "
        f"{rho('halves_chamfer', 'gt_chamfer_mean'):.2f}; half-set FSC 0.143 with the halves' "
        f"FSC 0.143 against the GT density {rho('halves_fsc_0143', 'gt_fsc_0143_mean'):.2f}, "
        f"FSC 0.5 with its GT twin {rho('halves_fsc_05', 'gt_fsc_05_mean'):.2f}. Within one "
        "shape, half-set FSC 0.143 / 0.5 with GT Chamfer: "
        + ", ".join(
            f"{shape} {rho('halves_fsc_0143', 'gt_chamfer_mean', g):.2f} / "
            f"{rho('halves_fsc_05', 'gt_chamfer_mean', g):.2f}"
            for shape, g in table.groupby("shape", sort=False)
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/calibration", help="output folder")
    parser.add_argument(
        "--steps", default="800,250", help="training steps per half (comma-separated)"
    )
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--particles", default=",".join(map(str, PARTICLES)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("holly").setLevel(logging.WARNING)
    # the code that runs is the code at the start (a later checkout does not change it)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for steps in map(int, args.steps.split(",")):
        for shape in args.shapes.split(","):
            for particles in map(int, args.particles.split(",")):
                cfg = condition_config(shape, particles, steps, args.seed)
                rows.append(run_condition(out, cfg))
                log.info("%s", rows[-1])
                table = pd.DataFrame(rows)
                table.to_csv(out / "calibration.csv", index=False)
    text = markdown(table) + f"\nholly commit {commit or 'unknown'}.\n"
    (out / "calibration.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
