"""Write one self-contained HTML report: summary table, comparison chart, every run's figures
with captions, and an interactive 3D viewer per run (works offline: nothing is fetched).

Needs the outputs of `holly summarise` and `holly figures` (figures in RUN_DIR/figures/).
Captions are the RST files of --captions (the workflow's workflow/report/ folder).
"""

from __future__ import annotations

import argparse

from holly.results.report import build_report, parse_runs


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="NAME=RUN_DIR",
        help="a run folder with figures; repeat for each experiment",
    )
    parser.add_argument(
        "--summary", required=True, metavar="CSV", help="table from `holly summarise`"
    )
    parser.add_argument("--chart", metavar="PATH", help="comparison chart from `holly summarise`")
    parser.add_argument("--captions", metavar="DIR", help="folder of RST captions")
    parser.add_argument(
        "--format",
        default="png",
        choices=("png", "svg"),
        help="format of the run figures (default png)",
    )
    parser.add_argument(
        "--max-snapshots",
        type=int,
        default=40,
        metavar="N",
        help="snapshots on each viewer's slider (default 40)",
    )
    parser.add_argument("--title", default="holly results", help="report title")
    parser.add_argument("--out", required=True, metavar="HTML", help="report to write")


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs
    from holly.run.runfolder import RunFolder

    runs = parse_runs(args.run)
    inputs = [f for run in runs.values() for f in RunFolder(run).result_files()]
    refuse_inputs({"--out": args.out}, [*inputs, args.summary, args.chart, args.captions])
    build_report(
        parse_runs(args.run),
        args.summary,
        args.out,
        chart=args.chart,
        fig_format=args.format,
        captions_dir=args.captions,
        title=args.title,
        max_snapshots=args.max_snapshots,
    )
    return 0
