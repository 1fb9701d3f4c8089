"""Download a Zenodo record's files with resume and md5 checks, or pin a record in a manifest.

Examples:
  holly fetch 10.5281/zenodo.5608206 --write-manifest config/zenodo-5608206.yaml
  holly fetch --manifest config/zenodo-5608206.yaml --dest resources/zenodo/5608206 --extract
  holly fetch 4836173 --dest resources/zenodo/4836173 --files results.zip
  holly fetch 5608206 --dest resources/zenodo/holly --extract --done resources/zenodo/holly.json

Files are written as NAME.part, resumed after an interruption, checked against the md5 pinned in
the manifest (else the record's own md5) and only then renamed to NAME. A file that fails the
check is kept as NAME.bad-md5. Files already present with the right md5 are skipped. The API base
URL can also be set with the HOLLY_ZENODO_API environment variable.

--done PATH writes a JSON summary (record, files with md5, unpacked folders) after everything
succeeded, and only then: a workflow declares it as the output, so a failed or interrupted
download leaves no output for the workflow manager to delete, and the NAME.part files survive
for the next run to resume. Files saved from keys of Zenodo's GitHub integration
(owner/repo-tag.zip) are named after the part behind the "/".
"""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path

from holly.data import archive, zenodo
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
    parser.add_argument(
        "--done",
        type=Path,
        metavar="JSON",
        help="after success, write what was fetched and unpacked to this JSON file",
    )


def main(args: argparse.Namespace) -> int:
    from holly.atomic import refuse_inputs

    if args.retries < 0:
        raise HollyError(
            f"--retries must be >= 0 (extra attempts after a failure), got {args.retries}"
        )
    outputs = {"--write-manifest": args.write_manifest, "--done": args.done, "--dest": args.dest}
    refuse_inputs(outputs, [args.manifest], into={"--dest"})
    if args.done is not None and args.done == args.write_manifest:
        raise HollyError("--done and --write-manifest name the same file; give two paths")
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
    extracted = {}
    if args.extract:
        for path in paths:
            if archive.archive_kind(path):
                folder = path.parent / archive.archive_stem(path)
                archive.extract(path, folder)
                extracted[path.name] = str(folder)
    if args.done is not None:
        pins = manifest.md5 if manifest else {}
        _write_done(args.done, record, paths, extracted, args.dest, pins)
    return 0


def _write_done(
    path: Path, record: zenodo.Record, paths, extracted: dict, dest: Path, pins: dict
) -> None:
    """The --done summary, written atomically: its presence means every step succeeded."""
    from holly.atomic import write_json

    by_local = {zenodo.local_name(f.name): f for f in record.files}
    files = []
    for p in paths:
        entry = by_local[p.name]
        files.append(
            {
                "key": entry.name,
                "path": str(p),
                "size": p.stat().st_size,
                "md5": pins.get(entry.name) or entry.md5,
            }
        )
    write_json(
        path,
        {
            "record": record.record_id,
            "doi": record.doi,
            "title": record.title,
            "dest": str(dest),
            "files": files,
            "extracted": extracted,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    log.info("wrote %s", path)
