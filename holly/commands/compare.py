"""Compare two reconstructions, normally an experiment's two half-set runs (gold-standard FSC).

Aligns RUN_B onto RUN_A (rigid, mirror allowed: the same alignment as against ground truth),
and reports their symmetric Chamfer distance and their Fourier shell correlation: both clouds
are rendered as 3D Gaussian densities at RUN_A's final sigma on one grid, and the resolution is
where the FSC drops below 0.143 and 0.5 (model units; also nm when the image store records its
pixel size). With ground truth (simulated runs, or --ground-truth) each half is also scored
against it. docs/validation.md explains the density, grid, mask and what the number means.

Writes the JSON (--out), optionally the FSC figure (--figure) and RUN_B's points aligned onto
RUN_A (--aligned, for the 3D viewer).
"""

from __future__ import annotations

import argparse
import contextlib
import logging

from holly.atomic import refuse_inputs
from holly.data.pointio import write_points
from holly.results.halfsets import compare_runs
from holly.run.runfolder import RunFolder, write_halfsets

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="first run folder (e.g. halves/half1)")
    parser.add_argument("run_b", metavar="RUN_B", help="second run folder, aligned onto RUN_A")
    parser.add_argument("--out", required=True, metavar="JSON", help="comparison to write")
    parser.add_argument("--figure", metavar="PATH", help="FSC curve figure (.png/.svg) to write")
    parser.add_argument("--aligned", metavar="PLY", help="write RUN_B's points aligned onto RUN_A")
    parser.add_argument(
        "--ground-truth",
        metavar="PATH",
        help="ground-truth points (default RUN_A/ground_truth.ply if it exists)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the alignment starts")
    parser.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")


def main(args: argparse.Namespace) -> int:
    ra, rb = RunFolder(args.run_a), RunFolder(args.run_b)
    outputs = {"--out": args.out, "--figure": args.figure, "--aligned": args.aligned}
    if args.figure:
        from holly.results.figures import check_figure_path

        check_figure_path(args.figure, "--figure")
    refuse_inputs(outputs, [*ra.trained_files(), *rb.trained_files(), args.ground_truth])
    with contextlib.ExitStack() as held:
        # a shared lock on each run read (not on --out's folder: in the workflow that is the
        # experiment's own run folder, which its training may be writing meanwhile)
        for rf in (ra, rb):
            if rf.root.is_dir():
                held.enter_context(rf.lock("compare", shared=True))
        return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    aligned = []
    result = compare_runs(
        args.run_a, args.run_b, ground_truth=args.ground_truth, seed=args.seed, aligned=aligned
    )
    figure = None
    if args.figure:
        from holly.results.figures import fsc_figure

        figure = fsc_figure(result)
    # everything is computed: write the files, the JSON last (the workflow's target)
    if args.aligned:
        write_points(args.aligned, aligned[0], comment="holly compare: aligned to run A")
    if figure is not None:
        from holly.results.figures import save_figure

        save_figure(figure, args.figure, args.dpi)
    write_halfsets(args.out, result)
    log.info("wrote %s", args.out)
    return 0
