"""Render a point file at one pose to an image (PNG or FITS).

The pose is an axis-angle rotation vector (radians; or --quaternion W X Y Z) and an x/y
translation in model units; sigma is in pixels. Uses the same renderer as training.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_args(parser) -> None:
    parser.add_argument("points", help="PLY, OBJ or CSV point file")
    parser.add_argument("--out", required=True, help="output image (.png or .fits)")
    rot = parser.add_mutually_exclusive_group()
    rot.add_argument(
        "--axis-angle",
        nargs=3,
        type=float,
        metavar=("RX", "RY", "RZ"),
        default=(0.0, 0.0, 0.0),
        help="rotation vector, radians (default 0)",
    )
    rot.add_argument("--quaternion", nargs=4, type=float, metavar=("W", "X", "Y", "Z"))
    parser.add_argument(
        "--translation",
        nargs=2,
        type=float,
        metavar=("TX", "TY"),
        default=(0.0, 0.0),
        help="model units (default 0 0)",
    )
    parser.add_argument("--sigma", type=float, default=2.0, help="pixels (default 2)")
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=(128, 128))
    parser.add_argument("--order", choices=("paper", "latest"), default="paper")


def main(args) -> int:
    import torch

    from holly.atomic import refuse_inputs
    from holly.data.imageio import write_image
    from holly.data.pointio import read_points
    from holly.errors import HollyError
    from holly.method import geometry
    from holly.method.render import render

    refuse_inputs({"--out": args.out}, [args.points])
    if args.sigma <= 0:
        raise HollyError(f"--sigma must be > 0, got {args.sigma}")
    if min(args.size) < 1:
        raise HollyError(f"--size must be positive, got {args.size}")
    points = torch.as_tensor(read_points(args.points), dtype=torch.float64)
    if args.quaternion:
        if not any(args.quaternion):
            raise HollyError("--quaternion must not be all zeros")
        quaternion = torch.tensor([args.quaternion], dtype=points.dtype)
        rotation = geometry.quaternion_to_matrix(quaternion)
    else:
        axis_angle = torch.tensor([args.axis_angle], dtype=points.dtype)
        rotation = geometry.axis_angle_to_matrix(axis_angle)
    h, w = args.size
    image = render(
        points,
        rotation,
        torch.tensor([args.translation], dtype=points.dtype),
        args.sigma,
        h,
        w,
        order=args.order,
    )[0]
    write_image(args.out, image.numpy(), header={"SIGMA": args.sigma, "ORDER": args.order})
    log.info(
        "rendered %d points to %s (total intensity %.1f)", len(points), args.out, float(image.sum())
    )
    return 0
