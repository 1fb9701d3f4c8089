"""holly.data.archive: safe, all-or-nothing extraction of zip and tar archives."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from holly.data import archive
from holly.errors import HollyError

GOOD = {"objs/bunny.obj": b"v 0 0 0\nv 1 0 0\n", "objs/teapot.obj": b"v 0 1 0\n", "README": b"hi\n"}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}.get(path.suffix, "w")
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _good_tar_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    return [(root, None)] + [(tarfile.TarInfo(f"./{n}"), d) for n, d in GOOD.items()]


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _assert_nothing_extracted(parent: Path, dest: Path) -> None:
    assert not dest.exists()
    assert not [p for p in parent.iterdir() if ".partial-" in p.name]  # temp folder removed


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"])
def test_good_tar_extracts(tmp_path, suffix):
    path = _tar(tmp_path / f"holly{suffix}", _good_tar_members())
    assert archive.archive_stem(path) == "holly"
    dest = tmp_path / "out" / "holly"
    files = archive.extract(path, dest)
    assert files == sorted(GOOD)
    for name, data in GOOD.items():
        assert (dest / name).read_bytes() == data
    marker = json.loads((dest / archive.MARKER).read_text())
    assert marker == {"archive": path.name, "size": path.stat().st_size, "files": sorted(GOOD)}
    _assert_nothing_extracted(dest.parent, dest.parent / "other")


def test_good_zip_extracts_and_is_idempotent(tmp_path):
    path = _zip(tmp_path / "holly-1.2.zip", [("objs/", b"")] + list(GOOD.items()))
    dest = tmp_path / "holly-1.2"
    assert archive.extract(path, dest) == sorted(GOOD)
    assert (dest / "objs" / "bunny.obj").read_bytes() == GOOD["objs/bunny.obj"]
    (dest / "README").write_bytes(b"left alone\n")
    assert archive.extract(path, dest) == sorted(GOOD)  # finished already: nothing rewritten
    assert (dest / "README").read_bytes() == b"left alone\n"


def test_existing_destination_without_marker_refused(tmp_path):
    path = _zip(tmp_path / "a.zip", list(GOOD.items()))
    (tmp_path / "a").mkdir()
    with pytest.raises(HollyError, match="exists and is not a finished extraction"):
        archive.extract(path, tmp_path / "a")


def _tar_hostile(kind: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    info = tarfile.TarInfo(
        {"dotdot": "objs/../../evil.txt", "absolute": "/tmp/holly-evil.txt"}.get(kind, "evil")
    )
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "README"
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "chardev":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    data = b"gotcha" if kind in ("dotdot", "absolute") else None
    # A good member first: refusing must happen before anything is written.
    return [(tarfile.TarInfo("README"), b"fine\n"), (info, data)]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo", "chardev"])
def test_hostile_tar_refused(tmp_path, kind):
    path = _tar(tmp_path / "hostile.tar.gz", _tar_hostile(kind))
    bad = _tar_hostile(kind)[1][0].name
    with tarfile.open(path) as tf:  # the hostile name really is in the archive
        assert tf.getnames()[1] == bad
    dest = tmp_path / "sub" / "out"
    with pytest.raises(HollyError) as info:
        archive.extract(path, dest)
    assert str(path) in str(info.value) and repr(bad) in str(info.value)
    _assert_nothing_extracted(dest.parent, dest)
    assert not (tmp_path / "evil.txt").exists()


def _zip_symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("objs/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "objs/../../evil.txt", "/tmp/holly-evil.txt", "..\\evil.txt", "C:/evil.txt"],
)
def test_hostile_zip_path_refused(tmp_path, member):
    path = _zip(tmp_path / "hostile.zip", [("README", b"fine\n"), (member, b"gotcha")])
    dest = tmp_path / "sub" / "out"
    with pytest.raises(HollyError, match="unsafe member"):
        archive.extract(path, dest)
    _assert_nothing_extracted(dest.parent, dest)
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_refused(tmp_path):
    path = _zip(tmp_path / "hostile.zip", [("README", b"fine\n"), (_zip_symlink(), b"/etc/passwd")])
    dest = tmp_path / "out"
    with pytest.raises(HollyError, match="symbolic link 'objs/link'"):
        archive.extract(path, dest)
    _assert_nothing_extracted(tmp_path, dest)


def test_marker_name_reserved(tmp_path):
    path = _zip(tmp_path / "a.zip", [(archive.MARKER, b"{}")])
    with pytest.raises(HollyError, match="reserves"):
        archive.extract(path, tmp_path / "a")


def test_not_an_archive_or_corrupt(tmp_path):
    (tmp_path / "data.fits").write_bytes(b"SIMPLE")
    with pytest.raises(HollyError, match="not a recognised archive"):
        archive.extract(tmp_path / "data.fits", tmp_path / "data")
    for name in ("broken.zip", "broken.tar.gz", "broken.tar.xz"):
        (tmp_path / name).write_bytes(b"this is not an archive" * 10)
        with pytest.raises(HollyError, match="cannot read"):
            archive.extract(tmp_path / name, tmp_path / archive.archive_stem(name))
        _assert_nothing_extracted(tmp_path, tmp_path / archive.archive_stem(name))


def test_size_and_ratio_limits(tmp_path, monkeypatch):
    """A decompression bomb or an oversized archive is refused before anything is written."""
    import zipfile as zf_mod

    from holly.data import archive as arch
    from holly.data.archive import extract

    bomb = tmp_path / "bomb.zip"
    with zf_mod.ZipFile(bomb, "w", zf_mod.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (80 * 2**20))  # 80 MiB of zeros: ~1000x
    with pytest.raises(HollyError, match="decompression bomb"):
        extract(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("HOLLY_MAX_EXTRACT_BYTES", "1000")
    small = tmp_path / "small.zip"
    with zf_mod.ZipFile(small, "w") as zf:
        zf.writestr("a.txt", "x" * 2000)
    with pytest.raises(HollyError, match="more than the limit"):
        extract(small, tmp_path / "out2")
    monkeypatch.delenv("HOLLY_MAX_EXTRACT_BYTES")
    assert arch.MAX_RATIO >= 50 and extract(small, tmp_path / "out3") == ["a.txt"]
