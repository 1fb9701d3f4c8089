"""Safe extraction of zip and tar archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz).

Every member is checked before anything is written: absolute paths, ``..`` components, symbolic
and hard links, device files and FIFOs are refused, naming the archive and the member. Extraction
goes into a temporary folder beside the destination, which is renamed into place only when
complete, with a marker file (:data:`MARKER`) listing what was extracted: a destination folder
that exists is always a finished extraction.

Sizes are checked first too (decompression bombs): the members' total may be at most
:data:`MAX_BYTES` (``$HOLLY_MAX_EXTRACT_BYTES`` overrides it: bytes, or a size such as ``2GB`` or
``1.5GiB``), at most :data:`MAX_RATIO` times the
archive's own size once it exceeds :data:`RATIO_FLOOR`, and must fit the free disk space.
"""

from __future__ import annotations

import json
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from holly.errors import HollyError

log = logging.getLogger(__name__)

MARKER = ".holly-extracted.json"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
SUFFIXES = (".zip", *_TAR_SUFFIXES)
MAX_BYTES = 512 * 2**30  # 512 GiB unpacked: ten times the paper's largest record
MAX_RATIO = 200  # unpacked / packed; FITS and text compress 2-20x, bombs 1000x and more
RATIO_FLOOR = 64 * 2**20  # small archives may compress better than MAX_RATIO


_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str, what: str = "$HOLLY_MAX_EXTRACT_BYTES") -> int:
    """Bytes of a size given as a number of bytes or with a unit: ``2000000000``, ``2GB``
    (decimal: kB, MB, GB, TB), ``1.5GiB`` (binary: KiB, MiB, GiB, TiB); case does not matter."""
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise HollyError(
            f"{what}={text!r} is not a size: give bytes (2000000000) or a number with a unit "
            "(2GB, 1.5GiB; units B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    return int(float(m.group(1)) * _UNITS[unit])


def size_text(n: float) -> str:
    """A byte count for messages, in a unit that shows it: ``512 bytes``, ``3.4 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def max_bytes() -> int:
    """The unpacked size limit: ``$HOLLY_MAX_EXTRACT_BYTES`` (:func:`parse_size`), else
    :data:`MAX_BYTES`."""
    text = os.environ.get("HOLLY_MAX_EXTRACT_BYTES", "").strip()
    return parse_size(text) if text else MAX_BYTES


def check_sizes(archive: Path, total: int, dest: Path) -> None:
    """Refuse an archive whose unpacked ``total`` bytes are too large or too compressed."""
    limit = max_bytes()
    packed = max(archive.stat().st_size, 1)
    if total > limit:
        raise HollyError(
            f"archive {archive} would unpack to {size_text(total)} ({total} bytes), more than "
            f"the limit of {size_text(limit)} ({limit} bytes, $HOLLY_MAX_EXTRACT_BYTES); "
            "nothing was extracted. Raise the limit, e.g. HOLLY_MAX_EXTRACT_BYTES="
            f"{size_text(total * 2).replace(' ', '').replace('bytes', 'B')}"
        )
    if total > RATIO_FLOOR and total / packed > MAX_RATIO:
        raise HollyError(
            f"archive {archive} would unpack {total / packed:.0f}x its size (limit {MAX_RATIO}x): "
            "a decompression bomb or a corrupt archive; nothing was extracted"
        )
    free = shutil.disk_usage(dest if dest.exists() else dest.parent).free
    if total > free:
        raise HollyError(
            f"archive {archive} needs {size_text(total)} but {dest} has only "
            f"{size_text(free)} free; nothing was extracted"
        )


def archive_kind(path: str | os.PathLike) -> str | None:
    """``"zip"``, ``"tar"`` or None, from the file name's suffix."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


def archive_stem(path: str | os.PathLike) -> str:
    """The file name without its archive suffix: ``data.tar.gz`` -> ``data``."""
    name = Path(path).name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def extract(archive_path: str | os.PathLike, dest_dir: str | os.PathLike) -> list[str]:
    """Extract an archive into ``dest_dir`` safely and atomically.

    Parameters
    ----------
    archive_path : path
        A zip or tar archive (compressed tar: gzip, bzip2 or xz), recognised by its suffix.
    dest_dir : path
        Folder to create. If it exists and holds the marker of an extraction of an archive with
        the same name and size, nothing is done (idempotent); any other existing path is an error.

    Returns
    -------
    list of str
        The extracted files, POSIX paths relative to ``dest_dir`` (also listed in the marker).

    Raises
    ------
    HollyError
        Unknown archive type, unreadable or corrupt archive, an unsafe member (named in the
        message; nothing is extracted), or ``dest_dir`` in the way.
    """
    archive = Path(archive_path)
    dest = Path(dest_dir)
    kind = archive_kind(archive)
    if kind is None:
        raise HollyError(f"{archive}: not a recognised archive (suffixes: {', '.join(SUFFIXES)})")
    if not archive.is_file():
        raise HollyError(f"archive {archive} does not exist")
    size = archive.stat().st_size
    done = _finished(dest, archive.name, size)
    if done is not None:
        log.info("%s: already extracted into %s", archive, dest)
        return done
    if dest.exists() or dest.is_symlink():
        raise HollyError(
            f"cannot extract {archive} into {dest}: it exists and is not a finished extraction of "
            "this archive; remove it first"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        files = _extract_zip(archive, tmp) if kind == "zip" else _extract_tar(archive, tmp)
        marker = {"archive": archive.name, "size": size, "files": files}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        _share_folders(tmp)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: extracted %d files into %s", archive, len(files), dest)
    return files


def _share_folders(root: Path) -> None:
    """Give ``root`` (``mkdtemp``'s private 0700) and the folders under it the permissions a
    plain ``mkdir`` gives (``0777 & ~umask``): unpacked data are meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        os.chmod(folder, (0o777 & ~mask) | stat.S_IRWXU)


def _finished(dest: Path, name: str, size: int) -> list[str] | None:
    """The file list of a finished extraction of this archive in ``dest``, else None."""
    try:
        marker = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(marker, dict) and marker.get("archive") == name and marker.get("size") == size:
        return list(marker.get("files", []))
    return None


def _check_name(archive: Path, name: str) -> str:
    """Refuse a member path that is absolute or climbs out; return it normalised."""
    unix = name.replace("\\", "/")  # zips made on Windows may use backslashes
    parts = PurePosixPath(unix).parts
    if (
        not name
        or unix.startswith("/")
        or (len(unix) > 1 and unix[1] == ":")  # C:/...
        or ".." in parts
        or "\0" in name
    ):
        raise HollyError(f"archive {archive} has an unsafe member {name!r}; nothing was extracted")
    if parts == (MARKER,):
        raise HollyError(f"archive {archive} has a member named {MARKER}, which holly reserves")
    return str(PurePosixPath(*parts)) if parts else ""  # "" for the folder "./" itself


def _refuse(archive: Path, name: str, what: str) -> HollyError:
    return HollyError(f"archive {archive} has {what} {name!r}; nothing was extracted")


def _extract_zip(archive: Path, tmp: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            files = []
            for info in infos:
                rel = _check_name(archive, info.filename)
                # Unix file type bits; 0 when the zip was made elsewhere or without them.
                kind = stat.S_IFMT(info.external_attr >> 16)
                if kind == stat.S_IFLNK:
                    raise _refuse(archive, info.filename, "a symbolic link")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise _refuse(archive, info.filename, "a special file")
                if not info.is_dir():
                    if not rel:
                        raise _refuse(archive, info.filename, "a file without a name")
                    files.append(rel)
            check_sizes(archive, sum(i.file_size for i in infos), tmp)
            zf.extractall(tmp, members=infos)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as exc:
        raise HollyError(f"cannot read zip archive {archive}: {exc}") from exc
    return sorted(files)


def _extract_tar(archive: Path, tmp: Path) -> list[str]:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # a full pass over the archive, before writing anything
            files = []
            for member in members:
                rel = _check_name(archive, member.name)
                if member.issym():
                    raise _refuse(archive, member.name, "a symbolic link")
                if member.islnk():
                    raise _refuse(archive, member.name, "a hard link")
                if member.isdev():
                    raise _refuse(archive, member.name, "a device file or FIFO")
                if not (member.isreg() or member.isdir()):
                    raise _refuse(archive, member.name, "a special member")
                if member.isreg():
                    if not rel:
                        raise _refuse(archive, member.name, "a file without a name")
                    files.append(rel)
            check_sizes(archive, sum(m.size for m in members if m.isreg()), tmp)
            # The "data" filter repeats the checks above and drops set-uid and similar bits.
            tf.extractall(tmp, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # disk full, permissions: not the archive's fault
        raise HollyError(f"cannot read tar archive {archive}: {exc}") from exc
    return sorted(files)


def find_one(base: str | os.PathLike, pattern: str, kind: str = "file") -> Path:
    """The one file (``kind="file"``) or folder (``"dir"``) under ``base`` matching ``pattern``.

    For names inside an unpacked archive that are known only in part, such as the top-level
    folder of a GitHub release zip (``OniDaito-HOLLy-<sha>/objs/bunny_large.obj``).

    Parameters
    ----------
    base : path
        Folder to search (e.g. a record's download folder).
    pattern : str
        A :meth:`pathlib.Path.glob` pattern relative to ``base``: ``*`` matches within one path
        component, ``**`` any number of folders (including none), e.g. ``**/objs/bunny_large.obj``.
        Hidden temporary folders of unfinished extractions (``.NAME.partial-*``) never match.
    kind : {"file", "dir"}

    Raises
    ------
    HollyError
        ``base`` missing, no match (naming a few entries found instead), or several matches
        (listing them: make the pattern more specific).
    """
    base = Path(base)
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', not {kind!r}")
    if not base.is_dir():
        raise HollyError(f"{base} is not a folder; download the record first (`holly fetch`)")
    if not pattern or Path(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts:
        raise HollyError(f"pattern {pattern!r} must be a relative glob without '..'")
    test = Path.is_file if kind == "file" else Path.is_dir
    matches = sorted(
        p for p in base.glob(pattern) if test(p) and ".partial-" not in str(p.relative_to(base))
    )
    what = "file" if kind == "file" else "folder"
    if not matches:
        seen = sorted(str(p.relative_to(base)) for p in base.rglob("*") if test(p))
        hint = ", ".join(seen[:8]) + (", ..." if len(seen) > 8 else "") if seen else "nothing"
        raise HollyError(f"no {what} under {base} matches {pattern!r}; found {hint}")
    if len(matches) > 1:
        names = ", ".join(str(p.relative_to(base)) for p in matches[:8])
        raise HollyError(
            f"{len(matches)} {what}s under {base} match {pattern!r} ({names}); "
            "give a more specific pattern"
        )
    return matches[0]
