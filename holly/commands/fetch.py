"""Download a Zenodo record's files with resume and md5 checks, or pin a record in a manifest.

Examples:
  holly fetch 10.5281/zenodo.5608206 --write-manifest config/zenodo-5608206.yaml
  holly fetch --manifest config/zenodo-5608206.yaml --dest resources/zenodo/5608206 --extract
  holly fetch 4836173 --dest resources/zenodo/4836173 --files results.zip

Files are written as NAME.part, resumed after an interruption, checked against the md5 pinned in
the manifest (else the record's own md5) and only then renamed to NAME. A file that fails the
check is kept as NAME.bad-md5. Files already present with the right md5 are skipped. The API base
URL can also be set with the HOLLY_ZENODO_API environment variable.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from holly import archive, zenodo
from holly.errors import HollyError

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "record",
        nargs="?",
        help="record id (4751057), Zenodo DOI (10.5281/zenodo.4751057) or record URL; "
        "default: the manifest's record",
    )
    parser.add_argument("--dest", type=Path, help="folder to download into")
    parser.add_argument(
        "--files",
        nargs="+",
        metavar="NAME",
        help="only these files (default: all, or the manifest's)",
    )
    parser.add_argument(
        "--manifest", type=Path, help="manifest YAML whose md5s are checked (and files fetched)"
    )
    parser.add_argument(
        "--write-manifest", type=Path, metavar="PATH", help="write the record's manifest to PATH"
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        help=f"Zenodo API base URL (default: ${zenodo.API_ENV} or {zenodo.DEFAULT_API})",
    )
    parser.add_argument(
        "--extract",
        action="store_true",
        help="unpack downloaded zip/tar archives into DEST/<name without suffix>",
    )
    parser.add_argument(
        "--retries", type=int, default=5, help="extra attempts after a failure (default 5)"
    )


def main(args: argparse.Namespace) -> int:
    manifest = zenodo.read_manifest(args.manifest) if args.manifest else None
    if args.record is None and manifest is None:
        raise HollyError("name a RECORD or give --manifest")
    record_id = zenodo.parse_record_id(args.record if args.record is not None else manifest.record)
    if args.dest is None and args.write_manifest is None:
        raise HollyError("give --dest DIR to download, or --write-manifest PATH")

    record = zenodo.get_record(record_id, args.api, retries=args.retries)
    if manifest is not None and manifest.record not in (record_id, record.record_id):
        raise HollyError(
            f"manifest {args.manifest} is for record {manifest.record}, not {record.record_id}"
        )
    if args.write_manifest is not None:
        zenodo.write_manifest(record, args.write_manifest)
        log.info("wrote manifest of record %s to %s", record.record_id, args.write_manifest)
    if args.dest is None:
        return 0
    files = args.files if args.files else (manifest.names if manifest else None)
    paths = zenodo.fetch_record(
        record,
        args.dest,
        files=files,
        md5=manifest.md5 if manifest else None,
        retries=args.retries,
    )
    if args.extract:
        for path in paths:
            if archive.archive_kind(path):
                archive.extract(path, path.parent / archive.archive_stem(path))
    return 0
