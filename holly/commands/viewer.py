"""Write an offline 3D viewer (one HTML file) of a run's reconstruction over training.

Drag to rotate, a slider steps through the training snapshots; the reconstruction and the
ground truth are drawn in two colours (aligned when `holly evaluate` has run). The page has
its JavaScript and data inline and loads nothing from the network.
"""

from __future__ import annotations

import argparse

from holly.results.viewer import write_viewer


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `holly train`")
    parser.add_argument("--out", required=True, metavar="HTML", help="page to write")
    parser.add_argument(
        "--max-snapshots",
        type=int,
        default=40,
        metavar="N",
        help="snapshots on the slider, evenly picked (default 40)",
    )
    parser.add_argument("--title", help="page title")


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs
    from holly.run.runfolder import RunFolder

    refuse_inputs({"--out": args.out}, RunFolder(args.run_dir).result_files())
    write_viewer(args.run_dir, args.out, args.max_snapshots, args.title)
    return 0
