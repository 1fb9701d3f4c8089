"""Draw the figures of one run: loss, sigma, input/rendering montage, 3D views, pose error.

Reads the run folder written by `holly train` (and, if present, `holly evaluate`'s
aligned_points.ply, so the reconstruction is drawn over the ground truth) and writes
OUT/loss.FMT, sigma.FMT, montage.FMT, views.FMT and pose_error.FMT.
"""

from __future__ import annotations

import argparse

from holly.figures import run_figures


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


def main(args: argparse.Namespace) -> int:
    run_figures(args.run_dir, args.out, args.format, args.dpi, args.montage_images, args.title)
    return 0
