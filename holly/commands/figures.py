"""Draw the figures of one run: loss, sigma, input/rendering montage, 3D views, pose error.

Reads the run folder written by `holly train` (and, if present, `holly evaluate`'s
aligned_points.ply, so the reconstruction is drawn over the ground truth) and writes
OUT/loss.FMT, sigma.FMT, montage.FMT, views.FMT and pose_error.FMT.

--only NAME writes one of the optional figures instead (repeatable): `evolution`, the cloud at
--snapshots steps from the random start to the end (x-y view, ground truth behind it), or
`vs_published`, the reconstruction next to a published cloud: --published PLY, --aligned PLY
(from `holly evaluate RUN --ground-truth PLY --aligned ALIGNED.ply --out JSON`) and --scores JSON;
`view_tilts`, the held-out views' out-of-plane tilts against uniform 3D views
(holly/results/views.py); `fusion`, a `refine.fusion` run's own particle fusion with its cloud
over it, in one frame.
"""

from __future__ import annotations

import argparse

from holly.results.figurekeys import EXTRA_FIGURES
from holly.results.figures import extra_figures, run_figures


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `holly train`")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument(
        "--format", default="png", choices=("png", "svg", "pdf"), help="file format (default png)"
    )
    parser.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")
    parser.add_argument(
        "--montage-images",
        type=int,
        default=8,
        metavar="N",
        help="input/rendering pairs in the montage (default 8)",
    )
    parser.add_argument("--title", help="name used in titles (default: the folder name)")
    parser.add_argument(
        "--only",
        action="append",
        choices=EXTRA_FIGURES,
        help="write this optional figure instead of the standard set (repeatable)",
    )
    parser.add_argument(
        "--snapshots", type=int, default=6, help="clouds in the evolution figure (default 6)"
    )
    parser.add_argument(
        "--with",
        dest="others",
        action="append",
        default=[],
        metavar="RUN",
        help="learning_curve: also draw this run's curve (repeatable)",
    )
    parser.add_argument("--published", metavar="PLY", help="vs_published: the published cloud")
    parser.add_argument(
        "--aligned", metavar="PLY", help="vs_published: our cloud aligned onto the published one"
    )
    parser.add_argument(
        "--scores", metavar="JSON", help="vs_published: that comparison's evaluation JSON"
    )


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs
    from holly.run.runfolder import RunFolder

    runs = [RunFolder(r) for r in (args.run_dir, *args.others)]
    inputs = [f for rf in runs for f in rf.result_files() if f != rf.figures]
    inputs += [args.published, args.aligned, args.scores]
    refuse_inputs({"--out": args.out}, inputs, into={"--out"})
    if args.only:
        extra_figures(
            args.run_dir,
            args.out,
            args.only,
            args.format,
            args.dpi,
            args.title,
            published=args.published,
            aligned=args.aligned,
            comparison=args.scores,
            max_snapshots=args.snapshots,
            others=tuple(args.others),
        )
        return 0
    run_figures(args.run_dir, args.out, args.format, args.dpi, args.montage_images, args.title)
    return 0
