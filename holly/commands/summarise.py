"""Summarise evaluated runs: one CSV row per experiment, a comparison chart and an HTML table.

Each --run is NAME=RUN_DIR (or just RUN_DIR, named by its folder); the run folders must have
been evaluated (`holly evaluate`). The CSV has the metrics of the reconstruction and of the
baselines (blob_, random_init_, floor_ prefixes), pose errors, and the run's size and time.
"""

from __future__ import annotations

import argparse

from holly.results.report import parse_runs, write_summary


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="NAME=RUN_DIR",
        help="an evaluated run folder; repeat for each experiment",
    )
    parser.add_argument("--out", required=True, metavar="CSV", help="summary table to write")
    parser.add_argument("--chart", metavar="PATH", help="comparison chart (.png/.svg) to write")
    parser.add_argument("--table", metavar="HTML", help="standalone HTML table to write")
    parser.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs
    from holly.run.runfolder import RunFolder

    runs = parse_runs(args.run)
    outputs = {"--out": args.out, "--chart": args.chart, "--table": args.table}
    refuse_inputs(outputs, [f for run in runs.values() for f in RunFolder(run).result_files()])
    write_summary(parse_runs(args.run), args.out, args.chart, args.table, args.dpi)
    return 0
