#!/usr/bin/env python3
"""Regenerate the README's robustness table: simulated localisations, one factor at a time.

    python tools/robustness.py --scale small --jobs 2 --half-sets --with-prior
    python tools/robustness.py --scale tiny --shapes tetrapod --cells base      # a quick check
    python tools/robustness.py --out results/robustness --table-only            # re-tabulate

For each shape (--shapes; default cep152 tetrapod helix logo) and each cell (--cells; default
all seven: base = labelling 30 %, precision 10 % of the size, uniform views; label100, label50,
prec5, prec20, tilt30, inplane) the cell runs `holly simulate-localisations` → `holly localise`
→ `holly train` (--half-sets: also the two half-set runs and `holly compare`) → `holly evaluate
--locsim-truth`, each as a subprocess with one thread, in OUT/work/<cell>/ (logs in its logs/).
Each cell's record goes to OUT/cells/<cell>.json when it ends (done or failed, with the error);
a rerun skips the finished cells. Then OUT/robustness.csv and OUT/robustness.md (the table to
paste into the README, with the command). The grid, the seeds, the command lines and the table
are in holly/results/robustness.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from holly.errors import HollyError
from holly.results.robustness import (
    SCALES,
    SHAPES,
    grid,
    records_or_placeholders,
    run_cells,
    select,
    write_tables,
)

log = logging.getLogger("robustness")


def run_holly(argv: list[str], log_path: Path) -> None:
    """``holly ARGV`` with one thread, its stderr and stdout into ``log_path``; raises with the
    log's last line when it fails."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as fh:
        fh.write("$ holly " + shlex.join(argv) + "\n")
        fh.flush()
        done = subprocess.run(
            [sys.executable, "-m", "holly", *argv], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    if done.returncode != 0:
        lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
        raise HollyError(
            f"holly {argv[0]} exited {done.returncode}: {lines[-1] if lines else ''} ({log_path})"
        )


def parse_overrides(items: list[str]) -> dict:
    """``--set SECTION.KEY=VALUE`` items as ``{"SECTION.KEY": value}`` (JSON values, else
    strings)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or "." not in key:
            raise HollyError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. loss.kind=l2")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="shapes (all four)")
    parser.add_argument("--cells", nargs="+", help="conditions or cell names (default: all)")
    parser.add_argument(
        "--with-prior",
        action="store_true",
        help="also the tilt30 and inplane cells with the matching pose prior (model.pose_prior)",
    )
    parser.add_argument(
        "--half-sets", action="store_true", help="also the half-set runs and their FSC resolution"
    )
    parser.add_argument("--scale", choices=SCALES, default="small", help="data/training size")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (1)")
    parser.add_argument("--out", default="results/robustness", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed the cells' seeds come from")
    parser.add_argument("--table-only", action="store_true", help="only tabulate the records")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a training config key for every cell (repeatable; VALUE read as JSON, else a "
        "string), e.g. --set loss.kind=l2, or a `holly localise` option as localise.NAME, "
        "e.g. --set localise.centre=centroid; use another --out for each variant",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cells = select(grid(args.shapes, args.with_prior), args.cells)
        out = Path(args.out)
        if not args.table_only:
            overrides = parse_overrides(args.set)
            run_cells(
                cells, out, args.scale, args.seed, run_holly, args.half_sets, args.jobs, overrides
            )
        csv_path, md_path = write_tables(out, records_or_placeholders(out, cells))
    except HollyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
