"""Download Zenodo records: resolve a record, fetch its files with resume and md5 checks.

A record is named by its id (``"4751057"``), its DOI (``"10.5281/zenodo.4751057"``) or a
``https://zenodo.org/records/<id>`` / ``https://doi.org/<doi>`` URL. Its file list comes from the
Zenodo REST API, ``GET {api_base}/records/{id}``; ``api_base`` defaults to
``https://zenodo.org/api`` and can be changed with a parameter or the ``HOLLY_ZENODO_API``
environment variable (mirrors, the sandbox, loopback test servers).

Each file is written to ``<name>.part``, resumed after an interrupted transfer with an HTTP Range
request (restarting from byte 0 when the server ignores Range), verified against its md5 and only
then renamed to ``<name>``: a file under its final name is always complete and verified. A file
that fails the check is moved aside to ``<name>.bad-md5`` and never used.

A manifest (YAML: record id, DOI, and name/size/md5 of every file) pins a record so that a
workflow can check its inputs offline; see :func:`write_manifest` and :func:`read_manifest`.

The standard library's ``urllib`` does the HTTP. ``zenodo_get`` is not used: it hard-codes the
zenodo.org host (no mirror, no loopback test server) and restarts an interrupted file from byte 0;
the tests use it only as an independent reading of the record JSON.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from holly import __version__
from holly.atomic import atomic_path
from holly.checksums import file_digest
from holly.errors import HollyError

log = logging.getLogger(__name__)

DEFAULT_API = "https://zenodo.org/api"
API_ENV = "HOLLY_ZENODO_API"
PART_SUFFIX = ".part"
BAD_SUFFIX = ".bad-md5"

_CHUNK = 1 << 20  # bytes per read while streaming
_MAX_SLEEP = 120.0  # seconds, cap of one backoff pause
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
# ASCII digits only: str.isdigit and \d also accept other scripts' digits (١٢٣), which no URL takes
_DOI_RE = re.compile(r"^10\.5281/zenodo\.([0-9]+)$", re.IGNORECASE)
_URL_RE = re.compile(r"/records?/([0-9]+)(?:/|$)")


@dataclass(frozen=True)
class RecordFile:
    """One file of a Zenodo record.

    Attributes
    ----------
    name : str
        File name (Zenodo's ``key``); the name it gets on disk.
    size : int or None
        Size in bytes, when the record states it.
    md5 : str or None
        Lower-case hex md5 from the record's ``checksum`` (``"md5:<hex>"``).
    url : str
        Download URL (the file's ``links``).
    """

    name: str
    size: int | None
    md5: str | None
    url: str


@dataclass(frozen=True)
class Record:
    """A resolved Zenodo record: id, DOI, title and files."""

    record_id: str
    doi: str | None
    title: str | None
    files: tuple[RecordFile, ...]

    def file(self, name: str) -> RecordFile:
        """Return the file called ``name``; HollyError listing the available names if absent."""
        for f in self.files:
            if f.name == name:
                return f
        raise HollyError(
            f"file {name!r} is not in Zenodo record {self.record_id}; "
            f"available: {', '.join(f.name for f in self.files) or '(none)'}"
        )


@dataclass(frozen=True)
class Manifest:
    """A pinned record: what :func:`write_manifest` writes and :func:`read_manifest` reads.

    ``files`` holds ``(name, size, md5)`` tuples; ``md5`` maps name to md5 for :func:`fetch_record`.
    """

    record: str
    doi: str | None
    files: tuple[tuple[str, int | None, str], ...]

    @property
    def md5(self) -> dict[str, str]:
        return {name: md5 for name, _, md5 in self.files}

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.files]


# --- record resolution --------------------------------------------------------------------------


def api_base_url(api_base: str | None = None) -> str:
    """The API base URL: ``api_base`` if given, else ``$HOLLY_ZENODO_API``, else zenodo.org."""
    base = api_base or os.environ.get(API_ENV) or DEFAULT_API
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise HollyError(f"Zenodo API URL {base!r} must start with http:// or https://")
    return base.rstrip("/")


def parse_record_id(record: str | int) -> str:
    """Turn a record id, Zenodo DOI or record/DOI URL into the numeric record id.

    Raises
    ------
    HollyError
        If ``record`` is none of these (only Zenodo DOIs, ``10.5281/zenodo.<id>``, are understood).
    """
    text = str(record).strip()
    if text.isascii() and text.isdigit():
        return text
    lowered = text.lower()
    for prefix in ("doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/"):
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    match = _DOI_RE.match(text)
    if match:
        return match.group(1)
    if text.startswith(("http://", "https://")):
        match = _URL_RE.search(urllib.parse.urlsplit(text).path)
        if match:
            return match.group(1)
    raise HollyError(
        f"cannot read a Zenodo record from {str(record)!r}: give a record id (4751057), "
        "a Zenodo DOI (10.5281/zenodo.4751057) or a zenodo.org/records/<id> URL"
    )


def get_record(
    record: str | int,
    api_base: str | None = None,
    *,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Record:
    """Fetch a record's metadata and file list from ``GET {api_base}/records/{id}``.

    Parameters
    ----------
    record : str or int
        Record id, Zenodo DOI or URL (see :func:`parse_record_id`).
    api_base : str, optional
        API base URL; default ``$HOLLY_ZENODO_API`` or ``https://zenodo.org/api``.
    retries : int
        Extra attempts after connection errors, timeouts and 408/429/5xx answers.
    timeout : float
        Socket timeout in seconds.
    backoff : float
        First pause in seconds; it doubles after each failed attempt.

    Returns
    -------
    Record

    Raises
    ------
    HollyError
        Record not found (404/410), other HTTP errors, unreadable JSON, no files listed.
    """
    record_id = parse_record_id(record)
    base = api_base_url(api_base)
    url = f"{base}/records/{record_id}"
    body = _retrying(
        lambda: _get_bytes(url, timeout),
        what=f"metadata of Zenodo record {record_id} from {url}",
        retries=retries,
        backoff=backoff,
        not_found=f"Zenodo record {record_id} not found at {base}",
    )
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise HollyError(
            f"{url} did not answer with JSON ({exc}); is {base} a Zenodo API?"
        ) from exc
    if not isinstance(data, dict):
        raise HollyError(f"{url} answered with JSON that is not a Zenodo record")
    return _parse_record(data, record_id, base)


def _parse_record(data: dict, requested_id: str, base: str) -> Record:
    """Read the parts of the Zenodo record JSON that holly needs."""
    record_id = str(data.get("id") or data.get("recid") or requested_id)
    if record_id != requested_id:
        log.info("Zenodo record %s resolves to record %s", requested_id, record_id)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    doi = data.get("doi") or metadata.get("doi")
    title = metadata.get("title") or data.get("title")
    entries = data.get("files")
    if isinstance(entries, dict):  # InvenioRDM native shape: {"enabled": ..., "entries": {...}}
        entries = list((entries.get("entries") or {}).values())
    if not entries:
        raise HollyError(
            f"Zenodo record {record_id} at {base} lists no files (restricted or embargoed?)"
        )
    files = []
    for entry in entries:
        # Older API answers say "filename"/"filesize" instead of "key"/"size".
        name = entry.get("key") or entry.get("filename")
        if not isinstance(name, str):
            raise HollyError(f"Zenodo record {record_id}: a file entry has no name: {entry}")
        _check_name(name, record_id)
        size = entry.get("size", entry.get("filesize"))
        algo, _, digest = str(entry.get("checksum") or "").partition(":")
        md5 = digest.lower() if algo.lower() == "md5" and _MD5_RE.match(digest.lower()) else None
        links = entry.get("links") or {}
        fallback = f"{base}/records/{record_id}/files/{urllib.parse.quote(name)}/content"
        url = links.get("content") or links.get("self") or fallback
        files.append(RecordFile(name, int(size) if size is not None else None, md5, url))
    return Record(record_id, doi, title, tuple(files))


def _check_name(name: str, record_id: str) -> None:
    """A record's file name becomes a file under dest_dir (:func:`local_name`): refuse anything
    that could write outside it. Names of the GitHub integration hold one ``/``
    (``owner/repo-tag.zip``); each part must be a plain name."""
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts) or "\\" in name or "\0" in name:
        raise HollyError(f"Zenodo record {record_id} has a file name holly refuses: {name!r}")


def local_name(name: str) -> str:
    """The file name a record's file gets on disk: its key, or for keys of the GitHub
    integration (``OniDaito/HOLLy-v1.2.zip``) the part after the last ``/``."""
    return name.rsplit("/", 1)[-1]


# --- HTTP helpers ---------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another attempt (connection error, timeout, 408/429/5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _NotFound(Exception):
    """HTTP 404 or 410."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416: the partial file does not fit the file on the server."""


def _opener(url: str) -> urllib.request.OpenerDirector:
    """urllib opener; environment proxies apply except to loopback hosts."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    return urllib.request.build_opener(*handlers)


def _open(url: str, timeout: float, headers: Mapping[str, str] | None = None):
    """Open ``url``; map failures onto _Retryable, _NotFound or HollyError."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise HollyError(f"refusing to download from {url!r}: only http(s) URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": f"holly/{__version__}"})
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        return _opener(url).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (404, 410):
            raise _NotFound(f"HTTP {exc.code} for {url}") from exc
        if exc.code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)) from exc
        if exc.code == 416:
            raise _RangeNotSatisfiable() from exc
        raise HollyError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, DNS
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"{type(reason).__name__}: {reason}") from exc


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers else None
    except (TypeError, ValueError):
        return None


def _get_bytes(url: str, timeout: float) -> bytes:
    try:
        response = _open(url, timeout, {"Accept": "application/json"})
    except _RangeNotSatisfiable as exc:
        raise HollyError(f"HTTP 416 for {url}") from exc
    with response:
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc


def _retrying(attempt, *, what: str, retries: int, backoff: float, not_found: str):
    """Call ``attempt()``; after a _Retryable failure wait and try again, at most ``retries`` more
    times. ``attempt`` may return ``_PROGRESS`` to say it made progress: the count restarts."""
    failures = 0
    while True:
        try:
            result = attempt()
        except _NotFound as exc:
            raise HollyError(not_found) from exc
        except _Retryable as exc:
            failures += 1
            if failures > retries:
                raise HollyError(f"{what} failed after {failures} attempts: {exc}") from exc
            pause = min(_MAX_SLEEP, max(backoff * 2 ** (failures - 1), exc.retry_after or 0.0))
            log.warning(
                "%s: %s; attempt %d of %d in %.1f s", what, exc, failures + 1, retries + 1, pause
            )
            time.sleep(pause)
            continue
        if result is _PROGRESS:
            failures = 0
            continue
        return result


_PROGRESS = object()


# --- downloading ----------------------------------------------------------------------------------


def file_md5(path: str | os.PathLike, *, _chunk: int = _CHUNK) -> str:
    """Hex md5 of a file, read in 1 MiB blocks."""
    return file_digest(path, "md5", _chunk)


def fetch_record(
    record: str | int | Record,
    dest_dir: str | os.PathLike,
    files: Iterable[str] | None = None,
    md5: Mapping[str, str] | None = None,
    api_base: str | None = None,
    retries: int = 5,
    progress: bool = True,
    *,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> list[Path]:
    """Download files of a Zenodo record into ``dest_dir``, verified by md5.

    Parameters
    ----------
    record : str, int or Record
        Record id, Zenodo DOI, URL, or an already resolved :class:`Record`.
    dest_dir : path
        Folder for the files (created if missing). Partial files are ``<name>.part`` here.
    files : iterable of str, optional
        Names to download; default all files of the record.
    md5 : mapping of str to str, optional
        Pinned md5 per file name (e.g. ``read_manifest(path).md5``). A pinned file is verified
        against its pin, which must agree with the record's checksum; others against the record.
    api_base : str, optional
        API base URL; default ``$HOLLY_ZENODO_API`` or ``https://zenodo.org/api``.
    retries : int
        Extra attempts per file after connection errors, timeouts and 408/429/5xx answers. The
        count restarts whenever an attempt received data, so a long transfer survives many drops.
    progress : bool
        Show a tqdm bar when stderr is a terminal; log lines are written either way.
    timeout : float
        Socket timeout in seconds.
    backoff : float
        First pause between attempts in seconds; it doubles after each failure (max 120 s).

    Returns
    -------
    list of Path
        The verified files, in the order requested.

    Raises
    ------
    HollyError
        Record or file not found, a pin that disagrees with the record, a checksum mismatch (the
        file is kept as ``<name>.bad-md5``), a file in the way, or retries exhausted (the
        ``.part`` file is kept: running again resumes it).
    """
    if not isinstance(record, Record):
        record = get_record(record, api_base, retries=retries, timeout=timeout, backoff=backoff)
    pins = {name: str(value).lower() for name, value in (md5 or {}).items()}
    selected = [record.file(name) for name in files] if files is not None else list(record.files)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    # Check every name and pin before the first byte is fetched.
    expected = [_expected_md5(record, entry, pins.get(entry.name)) for entry in selected]
    locals_ = [local_name(entry.name) for entry in selected]
    clash = sorted({n for n in locals_ if locals_.count(n) > 1})
    if clash:
        raise HollyError(
            f"Zenodo record {record.record_id}: several files would be saved as {clash[0]!r}; "
            "fetch them into separate folders with --files"
        )
    return [
        _fetch_file(entry, dest, md5_, retries, progress, timeout, backoff)
        for entry, md5_ in zip(selected, expected, strict=True)
    ]


def _expected_md5(record: Record, entry: RecordFile, pinned: str | None) -> str:
    if pinned is not None and not _MD5_RE.match(pinned):
        raise HollyError(f"pinned md5 for {entry.name!r} is not 32 hex digits: {pinned!r}")
    if pinned and entry.md5 and pinned != entry.md5:
        raise HollyError(
            f"pinned md5 for {entry.name!r} is {pinned} but Zenodo record {record.record_id} says "
            f"{entry.md5}: the manifest belongs to another record or version; update the pin"
        )
    expected = pinned or entry.md5
    if not expected:
        raise HollyError(
            f"Zenodo record {record.record_id} gives no md5 for {entry.name!r}; "
            "pin one in a manifest"
        )
    return expected


def _fetch_file(
    entry: RecordFile,
    dest: Path,
    expected: str,
    retries: int,
    progress: bool,
    timeout: float,
    backoff: float,
) -> Path:
    final = dest / local_name(entry.name)
    part = dest / (local_name(entry.name) + PART_SUFFIX)
    if final.exists():
        actual = file_md5(final)
        if actual == expected:
            log.info("%s: present, md5 ok, skipped", final)
            part.unlink(missing_ok=True)
            return final
        raise HollyError(
            f"{final} exists but its md5 is {actual}, expected {expected}; "
            "delete or move it to download it again"
        )
    log.info("%s: downloading %s from %s", final, _human(entry.size), entry.url)
    bar = _progress_bar(entry, progress)
    try:
        _retrying(
            lambda: _attempt(entry, part, timeout, bar),
            what=f"download of {entry.name}",
            retries=retries,
            backoff=backoff,
            not_found=f"{entry.url} not found (HTTP 404) for file {entry.name!r}",
        )
    except HollyError as exc:
        if part.exists() and part.stat().st_size:
            raise HollyError(
                f"{exc}; {part.stat().st_size} bytes kept in {part}, run again to resume"
            ) from exc
        raise
    finally:
        if bar is not None:
            bar.close()
    actual = file_md5(part)
    if actual != expected:
        bad = dest / (local_name(entry.name) + BAD_SUFFIX)
        os.replace(part, bad)
        raise HollyError(
            f"md5 mismatch for {entry.name} from {entry.url}: expected {expected}, got {actual}; "
            f"the file was moved aside to {bad}"
        )
    os.replace(part, final)
    log.info("%s: done, md5 %s", final, actual)
    return final


def _attempt(entry: RecordFile, part: Path, timeout: float, bar):
    """One request for ``entry``, appended to ``part``.

    Returns None when the transfer is complete and ``_PROGRESS`` when it ended early but ``part``
    grew; raises _Retryable when it ended early without growing ``part``.
    """
    before = offset = part.stat().st_size if part.exists() else 0
    if entry.size is not None and offset > entry.size:
        log.warning("%s is larger than the record says; starting again", part)
        offset = 0
    if entry.size is not None and offset == entry.size and offset > 0:
        return None  # complete from an earlier run; only the md5 check is left
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _open(entry.url, timeout, headers)
    except _RangeNotSatisfiable as exc:
        log.warning("%s: server refused to resume at byte %d; starting again", entry.name, offset)
        part.unlink(missing_ok=True)
        raise _Retryable("HTTP 416 range not satisfiable") from exc
    with response:
        if offset and response.status != 206:
            log.warning(
                "%s: server ignored the Range request (HTTP %d); starting again",
                entry.name,
                response.status,
            )
            offset = 0
        elif offset and not _content_range_starts_at(response.headers, offset):
            raise _Retryable(f"unexpected Content-Range {response.headers.get('Content-Range')}")
        elif offset:
            log.info("%s: resuming at byte %d", entry.name, offset)
        length = response.headers.get("Content-Length")
        want = int(length) if length and length.isdigit() else None
        got = 0
        if bar is not None:
            bar.reset(total=entry.size)
            bar.update(offset)
        ticker = _Ticker(entry)
        reason = None
        with open(part, "r+b" if offset else "wb") as fh:
            fh.seek(offset)
            fh.truncate()
            try:
                while block := response.read(_CHUNK):
                    fh.write(block)
                    got += len(block)
                    if bar is not None:
                        bar.update(len(block))
                    ticker.tick(offset + got)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, short read
                reason = f"{type(exc).__name__}: {exc}"
            fh.flush()
            os.fsync(fh.fileno())
    total = offset + got
    if reason is None and want is not None and got < want:
        reason = f"connection closed after {got} of {want} bytes"
    if reason is None and entry.size is not None and total < entry.size:
        reason = f"transfer ended at byte {total} of {entry.size}"
    if reason is None:
        return None
    if total > before:  # a restart that got less far than before is no progress
        log.warning("%s: %s; resuming", entry.name, reason)
        return _PROGRESS
    raise _Retryable(reason)


def _content_range_starts_at(headers, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", headers.get("Content-Range") or "")
    return match is not None and int(match.group(1)) == offset


class _Ticker:
    """A log line per minute during a transfer (the only progress report in log files)."""

    def __init__(self, entry: RecordFile):
        self.entry, self.last = entry, time.monotonic()

    def tick(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= 60:
            self.last = now
            total = f" of {_human(self.entry.size)}" if self.entry.size else ""
            log.info("%s: %s%s", self.entry.name, _human(done), total)


def _progress_bar(entry: RecordFile, progress: bool):
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.name, leave=False)


def _human(size: int | None) -> str:
    if size is None:
        return "? bytes"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --- manifests ------------------------------------------------------------------------------------


def write_manifest(
    record: str | int | Record,
    path: str | os.PathLike,
    api_base: str | None = None,
) -> Manifest:
    """Write a YAML manifest pinning ``record``: ``{record, doi, files: [{name, size, md5}]}``.

    ``record`` is resolved with :func:`get_record` unless it is a :class:`Record` already.
    The file is written atomically. Returns the manifest as :func:`read_manifest` would read it.
    """
    if not isinstance(record, Record):
        record = get_record(record, api_base)
    missing = [f.name for f in record.files if not f.md5]
    if missing:
        raise HollyError(f"Zenodo record {record.record_id} gives no md5 for {', '.join(missing)}")
    manifest = Manifest(
        record.record_id, record.doi, tuple((f.name, f.size, f.md5) for f in record.files)
    )
    data = {
        "record": manifest.record,
        "doi": manifest.doi,
        "files": [{"name": n, "size": s, "md5": m} for n, s, m in manifest.files],
    }
    title = f" ({record.title})" if record.title else ""
    text = f"# Zenodo record {record.record_id}{title}; written by holly fetch --write-manifest\n"
    text += yaml.safe_dump(data, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return manifest


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest written by :func:`write_manifest` (or by hand).

    Raises
    ------
    HollyError
        Missing file, unknown or missing keys, an md5 that is not 32 hex digits, duplicate names.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise HollyError(f"manifest {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise HollyError(f"manifest {path} is not valid YAML: {exc}") from exc

    def bad(what: str) -> HollyError:
        return HollyError(f"manifest {path}: {what}")

    if not isinstance(data, dict):
        raise bad("expected a mapping with keys record, doi, files")
    unknown = set(data) - {"record", "doi", "files"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if "record" not in data or not isinstance(data.get("files"), list) or not data["files"]:
        raise bad("needs 'record' and a non-empty 'files' list")
    record = parse_record_id(data["record"])
    doi = data.get("doi")
    files, seen = [], set()
    for i, item in enumerate(data["files"]):
        if not isinstance(item, dict) or set(item) - {"name", "size", "md5"}:
            raise bad(f"files[{i}] must be a mapping with keys name, size, md5")
        name, size, md5 = item.get("name"), item.get("size"), str(item.get("md5", "")).lower()
        if not isinstance(name, str) or not name:
            raise bad(f"files[{i}] has no name")
        _check_name(name, record)
        if name in seen:
            raise bad(f"file {name!r} is listed twice")
        seen.add(name)
        if size is not None and (not isinstance(size, int) or size < 0):
            raise bad(f"size of {name!r} must be a non-negative integer")
        if not _MD5_RE.match(md5):
            raise bad(f"md5 of {name!r} must be 32 hex digits, got {item.get('md5')!r}")
        files.append((name, size, md5))
    return Manifest(record, str(doi) if doi is not None else None, tuple(files))
