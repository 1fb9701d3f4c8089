"""``summary.csv``: the table of experiments, one row per run, and its one writer and reader.

The rows are :func:`holly.results.report.summary_table`'s. ``holly summarise`` writes it
(:func:`holly.results.report.write_summary`), ``holly report`` reads it back into its HTML table,
and :mod:`holly.results.seedtable` reads one per seed (``RESULTS/summary.csv``, the workflow's
name for it: :data:`SUMMARY_CSV`). pandas writes it without an index; reading it back gives the
same columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from holly.atomic import atomic_path

SUMMARY_CSV = "summary.csv"  # its name in a workflow's results folder


def write_summary_csv(path: str | os.PathLike, summary: pd.DataFrame) -> None:
    """Write the table atomically, readable by everyone (results are meant to be shared)."""
    with atomic_path(path) as tmp:
        summary.to_csv(tmp, index=False)
        os.chmod(tmp, 0o644)


def read_summary_csv(path: str | os.PathLike) -> pd.DataFrame | None:
    """The table at ``path``; None when there is no such file (the caller says how to make it)."""
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None
