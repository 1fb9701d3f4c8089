"""Copy the one file under a folder that matches a glob pattern (e.g. a model in an archive).

Examples:
  holly pick resources/zenodo/holly '**/objs/bunny_large.obj' --out resources/shapes/bunny.obj
  holly pick resources/zenodo/cep152-results '**/last.ply' --out resources/published/cep152.ply

PATTERN is relative to DIR: * matches within one folder name, ** any number of folders (none
included), so the top-level folder of a GitHub release zip need not be known. No match, or more
than one, is an error that lists what was found. PATTERN `auto` chooses by content among the
point files: a file named last.*, else the newest numbered snapshot of the largest family of
clouds with one point count, else the only 3D cloud; the choice and the reason are logged.
The copy is written beside OUT and renamed into place when complete. With --points the file
must be a point file holly can read (PLY, OBJ with v lines, CSV x,y,z); it is checked before the
copy.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from holly.atomic import atomic_path, refuse_inputs
from holly.data.archive import find_one

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path, help="folder to search")
    parser.add_argument("pattern", metavar="PATTERN", help="glob relative to DIR")
    parser.add_argument("--out", required=True, type=Path, help="where to copy the file")
    parser.add_argument(
        "--points", action="store_true", help="check that the file is a readable point file"
    )


def main(args: argparse.Namespace) -> int:
    if args.pattern == "auto":  # by content: the published cloud among the point files
        from holly.data.recordlayout import find_cloud

        found, reason = find_cloud(args.dir)
        log.info("chose %s", reason)
    else:
        found = find_one(args.dir, args.pattern, "file")
    if args.points:
        from holly.data.pointio import read_points

        n = len(read_points(found))
        log.info("%s: %d points", found, n)
    refuse_inputs({"--out": args.out}, [found])
    with atomic_path(args.out) as tmp:
        shutil.copyfile(found, tmp)
        os.chmod(tmp, 0o644)
    log.info("copied %s to %s", found, args.out)
    return 0
