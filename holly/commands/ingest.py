"""Convert pre-rendered FITS folders (one per sigma) into a holly image store (Zarr v3).

SRC_DIR holds one sub-folder per sigma in pixels (named 10, 10.0, 09, 1.41, ...), each with the
same image_NNNNNN.fits files (2D float32; 3D cubes are summed over the first axis). Image k of
the store is file number k at every level; particle_id = file number // --perturbations.

Orientation: by default each image is stored flipped vertically (flipud of the FITS data),
undoing CEPrender's flip on write, so row 0 is the top row and +y points up as in holly's
renderer. --no-flip keeps the FITS row order; it mirrors the reconstruction.

A bad file (unreadable, not FITS, wrong shape, NaN/inf, all zero, missing from one folder) stops
the ingest with an error naming it; --skip-bad drops that image from every level instead and lists
it in STORE's sibling <stem>.skipped.json. The store is written beside OUT and renamed into place
only when complete.

--find PATTERN searches SRC_DIR for the one folder matching a glob (e.g. '**/paper' in an
unpacked Zenodo record whose top-level folder name is not known) and ingests that folder.
--find auto chooses by content: the one folder whose sub-folders are named by numbers and hold
FITS files of the same names (logged with the reason); none or several is an error listing what
the record holds.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC_DIR", type=Path, help="folder of sigma sub-folders")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="STORE.zarr", help="image store to create"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="drop bad images from every level and report them"
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store flipud(FITS data), the renderer's convention (default: flip)",
    )
    parser.add_argument(
        "--perturbations",
        type=int,
        default=10,
        metavar="K",
        help="augmentation copies per particle in the input (default 10)",
    )
    parser.add_argument(
        "--record", metavar="ID", help="where the data came from, e.g. Zenodo record 4751057"
    )
    parser.add_argument(
        "--find",
        metavar="PATTERN",
        help="ingest the one folder under SRC_DIR matching this glob (e.g. '**/paper'), "
        "or 'auto': the folder of sigma folders, found by content",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing store")
    parser.add_argument(
        "--ome-zarr",
        type=Path,
        metavar="OUT",
        help="also export one level as OME-Zarr 0.5 for napari",
    )
    parser.add_argument(
        "--ome-sigma",
        type=float,
        metavar="S",
        help="level to export (nearest; default the smallest sigma)",
    )


def main(args: argparse.Namespace) -> int:
    from holly.data.ingest import export_ome_zarr, ingest_fits, peak_rss_mib

    src = args.src
    if args.find == "auto":  # by content: the folder of sigma folders with matching FITS
        from holly.data.recordlayout import find_sigma_tree

        src, reason = find_sigma_tree(args.src)
        log.info("ingesting %s (%s)", src, reason)
    elif args.find:
        from holly.data.archive import find_one

        src = find_one(args.src, args.find, "dir")
        log.info("ingesting %s", src)
    if args.ome_zarr is not None:  # both outputs checked before either is written
        from holly.atomic import refuse_inputs
        from holly.data.imagestore import guard_output

        guard_output(args.ome_zarr, [src], args.force)
        refuse_inputs({"--ome-zarr": args.ome_zarr}, [args.out])
    result = ingest_fits(
        src,
        args.out,
        flip=args.flip,
        skip_bad=args.skip_bad,
        perturbations=args.perturbations,
        record=args.record,
        overwrite=args.force,
    )
    if args.ome_zarr is not None:
        export_ome_zarr(result.store, args.ome_zarr, args.ome_sigma, overwrite=args.force)
    log.info(
        "%d images, %d sigma levels, %d skipped; %.0f files/s, peak RSS %.0f MiB",
        result.n_images,
        len(result.sigmas),
        len({e["index"] for e in result.skipped}),
        result.files_per_s,
        peak_rss_mib(),
    )
    return 0
