"""The README's results table: the default workflow's scores over several seeds, mean and spread.

``tools/results-table.py`` (``make results-table SEEDS="1 2 3"``) runs the workflow once per seed
into ``results/seeds/seed-<N>/`` and calls :func:`seed_table` on the summaries; this module only
reads ``summary.csv`` files (:mod:`holly.results.summary`) and formats numbers, so it is tested
without training anything.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from holly.errors import HollyError
from holly.results.summary import SUMMARY_CSV, read_summary_csv

# (summary column, README header, decimals) of the table, in this order.
SEED_COLUMNS = (
    ("chamfer", "Chamfer", 3),
    ("blob_chamfer", "blob", 3),
    ("random_init_chamfer", "random init", 3),
    ("chamfer_ratio_to_blob", "Chamfer / blob", 2),
    ("fscore", "F-score", 2),
    ("fscore_tight", "F at tau/2", 2),
    ("hausdorff95", "Hausdorff-95", 3),
    ("pose_error_amortised_median_deg", "CNN pose error (°)", 1),
    ("pose_error_median_deg", "median pose error (°)", 1),
    ("pose_accuracy_30", "within 30°", 2),
    ("wall_seconds", "train wall time (s)", 0),
)


def read_seed_summaries(runs: dict[int, str | os.PathLike]) -> dict[int, pd.DataFrame]:
    """``seed -> summary.csv`` of each seed's results folder (``seed -> folder``)."""
    if not runs:
        raise HollyError("no seeds to tabulate")
    out = {}
    for seed, folder in runs.items():
        path = Path(folder) / SUMMARY_CSV
        out[seed] = read_summary_csv(path)
        if out[seed] is None:
            raise HollyError(f"{path} not found: run the workflow for seed {seed} first")
    return out


def _cell(values: list[float], decimals: int) -> str:
    """``mean ± sd`` (sample standard deviation over seeds); ``–`` without values."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{decimals}f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def seed_table(summaries: dict[int, pd.DataFrame], columns=SEED_COLUMNS) -> str:
    """A markdown table, one row per experiment (in the first seed's order), each cell the mean
    ± sample standard deviation over the seeds. Distances in model units (summary.csv's)."""
    if not summaries:
        raise HollyError("no seeds to tabulate")
    seeds = sorted(summaries)
    names = list(summaries[seeds[0]]["experiment"])
    for seed in seeds:
        missing = set(names) - set(summaries[seed]["experiment"])
        if missing:
            raise HollyError(f"seed {seed} lacks experiments {sorted(missing)}")
    cols = [c for c in columns if any(c[0] in df for df in summaries.values())]
    lines = [
        "| experiment | " + " | ".join(header for _, header, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name in names:
        cells = []
        for col, _, decimals in cols:
            values = []
            for seed in seeds:
                df = summaries[seed]
                if col in df:
                    values.append(df.loc[df["experiment"] == name, col].iloc[0])
            cells.append(_cell(values, decimals))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
