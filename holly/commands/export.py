"""Write a run's point cloud in physical units (nm) or model units, as PLY, OBJ or CSV.

Examples:
  holly export results/cep152 --out cep152_nm.ply              # the final cloud, in nm
  holly export results/cep152 --out cloud.csv --units model    # model units, as trained
  holly export results/cep152 --points snapshots/points_00004000.ply --out step4000_nm.ply

nm needs a physical scale: a run trained on an image store that records nm per pixel (made by
holly localise from localisations in nm, or in camera pixels of known size). The scale is read
from the run's provenance.json (one model unit = height / 4 pixels); without one, --units nm is an
error and --units model copies the coordinates as they are.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from holly.errors import HollyError

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", type=Path, help="run folder (holly train --out)")
    parser.add_argument("--out", required=True, type=Path, help="point file to write")
    parser.add_argument(
        "--points",
        default="points.ply",
        help="cloud inside RUN to export (default points.ply, the final cloud)",
    )
    parser.add_argument(
        "--units", choices=("nm", "model"), default="nm", help="coordinates written (nm)"
    )


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs
    from holly.data.pointio import read_points, write_points
    from holly.run.runfolder import RunFolder

    source = args.run / args.points
    refuse_inputs({"--out": args.out}, [source, *RunFolder(args.run).result_files()])
    if not source.is_file():
        raise HollyError(f"{source} does not exist (is {args.run} a finished run folder?)")
    xyz = read_points(source)
    if args.units == "nm":
        scale = RunFolder(args.run).read_scale()
        if scale is None:
            raise HollyError(
                f"{args.run}: no physical scale (simulated data, or a store without nm per "
                "pixel: localise with nm coordinates or --pixel-size); use --units model"
            )
        xyz = xyz * scale["nm_per_model_unit"]
        comment = f"holly {source.name} in nm ({scale['nm_per_model_unit']:.6g} nm per model unit)"
    else:
        comment = f"holly {source.name} in model units (1 unit = height/4 pixels)"
    write_points(args.out, xyz, comment=comment)
    log.info("wrote %s (%d points, %s)", args.out, len(xyz), args.units)
    return 0
