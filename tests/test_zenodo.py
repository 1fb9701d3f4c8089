"""holly.data.zenodo and `holly fetch` against a loopback Zenodo stand-in
(tests/zenodo_server.py)."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile

import pytest
import yaml
from zenodo_server import ZenodoStandIn

import holly.cli
from holly.data import zenodo
from holly.errors import HollyError

FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def blobs() -> dict[str, bytes]:
    rng = random.Random(152)
    return {"cep152.bin": rng.randbytes(300_000), "notes.txt": b"HOLLy stand-in record\n"}


# -- record resolution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4751057",
        4751057,
        "10.5281/zenodo.4751057",
        "doi:10.5281/zenodo.4751057",
        "https://doi.org/10.5281/zenodo.4751057",
        "https://zenodo.org/records/4751057",
        "https://zenodo.org/record/4751057/files/x.tar",
    ],
)
def test_parse_record_id(text):
    assert zenodo.parse_record_id(text) == "4751057"


@pytest.mark.parametrize("text", ["", "10.1000/xyz.1", "zenodo", "https://example.org/abc"])
def test_parse_record_id_rejects(text):
    with pytest.raises(HollyError, match="cannot read a Zenodo record"):
        zenodo.parse_record_id(text)


def test_get_record_by_doi_matches_zenodo_get(blobs):
    """holly reads the record JSON as zenodo_get 3.1.0 does (name, URL, md5)."""
    file_details = pytest.importorskip(
        "zenodo_get.file_download.file_details", reason="zenodo-get is a test extra"
    ).file_details

    with ZenodoStandIn({"1001": blobs}) as server:
        record = zenodo.get_record("10.5281/zenodo.1001", server.api)
        raw = server.record_json("1001")
    assert record.record_id == "1001" and record.doi == "10.5281/zenodo.1001"
    assert [f.name for f in record.files] == list(blobs)
    for entry, ours in zip(raw["files"], record.files, strict=True):
        name, link, _, checksum = file_details(entry, "1001", "unused/")
        assert (ours.name, ours.url, ours.md5) == (name, link, checksum)
        assert ours.size == len(blobs[name]) and ours.md5 == _md5(blobs[name])


def test_parse_older_and_native_record_shapes():
    md5 = "0" * 32
    legacy = {"id": 7, "files": [{"filename": "a.txt", "filesize": 3, "checksum": md5}]}
    native = {
        "id": 7,
        "files": {
            "enabled": True,
            "entries": {
                "a.txt": {
                    "key": "a.txt",
                    "size": 3,
                    "checksum": f"md5:{md5}",
                    "links": {"content": "http://h/c"},
                }
            },
        },
    }
    old = zenodo._parse_record(legacy, "7", "http://h/api")
    new = zenodo._parse_record(native, "7", "http://h/api")
    assert old.files[0].url == "http://h/api/records/7/files/a.txt/content"
    assert old.files[0].md5 is None  # a bare hex string does not say which algorithm it is
    assert (new.files[0].name, new.files[0].size, new.files[0].md5) == ("a.txt", 3, md5)
    assert new.files[0].url == "http://h/c"


def test_record_with_unsafe_file_name_refused():
    with ZenodoStandIn({"1002": {"../escape.txt": b"x"}}) as server:
        with pytest.raises(HollyError, match="refuses"):
            zenodo.get_record("1002", server.api)


def test_missing_record_clear_error():
    with ZenodoStandIn({"1001": {"a": b"a"}}) as server:
        with pytest.raises(HollyError) as info:
            zenodo.get_record("999", server.api, **{"backoff": 0.01})
    assert str(info.value) == f"Zenodo record 999 not found at {server.api}"
    assert len(server.requests) == 1  # a 404 is not retried


def test_api_base_from_environment(monkeypatch, tmp_path, blobs):
    with ZenodoStandIn({"1001": blobs}) as server:
        monkeypatch.setenv(zenodo.API_ENV, server.api + "/")
        assert zenodo.api_base_url() == server.api
        (path,) = zenodo.fetch_record("1001", tmp_path, files=["notes.txt"], **FAST)
    assert path.read_bytes() == blobs["notes.txt"]


def test_metadata_retried_after_503(blobs):
    with ZenodoStandIn({"1001": blobs}, fail_first=2) as server:
        record = zenodo.get_record("1001", server.api, backoff=0.01)
    assert len(record.files) == 2
    assert [r.status for r in server.requests] == [503, 503, 200]


# -- downloading --------------------------------------------------------------------------------


def test_clean_download_then_idempotent(tmp_path, blobs):
    with ZenodoStandIn({"1001": blobs}) as server:
        paths = zenodo.fetch_record("1001", tmp_path, api_base=server.api, **FAST)
        assert [p.name for p in paths] == list(blobs)
        for p in paths:
            assert p.read_bytes() == blobs[p.name]
        assert sorted(x.name for x in tmp_path.iterdir()) == sorted(blobs)  # no .part left
        n = len(server.requests)
        again = zenodo.fetch_record("1001", tmp_path, api_base=server.api, **FAST)
        assert again == paths
        assert len(server.requests) == n + 1  # metadata only: files with the right md5 are skipped


def test_dropped_connection_resumed_with_range(tmp_path, blobs, caplog):
    with ZenodoStandIn({"1001": blobs}, drop_after={"cep152.bin": 70_000}) as server:
        (path,) = zenodo.fetch_record(
            "1001", tmp_path, files=["cep152.bin"], api_base=server.api, retries=1, **FAST
        )
    assert _md5(path.read_bytes()) == _md5(blobs["cep152.bin"])
    first, second = server.file_requests("cep152.bin")
    assert first.range is None
    assert second.range == "bytes=70000-" and second.status == 206
    assert "resuming" in caplog.text


def test_partial_file_from_earlier_run_resumed(tmp_path, blobs):
    data = blobs["cep152.bin"]
    (tmp_path / "cep152.bin.part").write_bytes(data[:123_456])
    with ZenodoStandIn({"1001": blobs}) as server:
        zenodo.fetch_record("1001", tmp_path, files=["cep152.bin"], api_base=server.api, **FAST)
    assert (tmp_path / "cep152.bin").read_bytes() == data
    (req,) = server.file_requests("cep152.bin")
    assert req.range == "bytes=123456-" and req.status == 206


def test_server_ignoring_range_restarts(tmp_path, blobs):
    data = blobs["cep152.bin"]
    (tmp_path / "cep152.bin.part").write_bytes(b"stale bytes that must not survive")
    with ZenodoStandIn({"1001": blobs}, ignore_range=True) as server:
        zenodo.fetch_record("1001", tmp_path, files=["cep152.bin"], api_base=server.api, **FAST)
    assert (tmp_path / "cep152.bin").read_bytes() == data
    (req,) = server.file_requests("cep152.bin")
    assert req.range is not None and req.status == 200


def test_drop_then_server_ignoring_range(tmp_path, blobs):
    data = blobs["cep152.bin"]
    standin = ZenodoStandIn({"1001": blobs}, drop_after={"cep152.bin": 1000}, ignore_range=True)
    with standin as server:
        zenodo.fetch_record("1001", tmp_path, files=["cep152.bin"], api_base=server.api, **FAST)
    assert (tmp_path / "cep152.bin").read_bytes() == data
    assert [r.status for r in server.file_requests("cep152.bin")] == [200, 200]


def test_unreachable_server_keeps_part_for_resume(tmp_path, blobs):
    data = blobs["cep152.bin"]
    with ZenodoStandIn({"1001": blobs}) as server:
        record = zenodo.get_record("1001", server.api)
    (tmp_path / "cep152.bin.part").write_bytes(data[:5000])
    with pytest.raises(HollyError, match="after 3 attempts.*run again to resume"):
        zenodo.fetch_record(record, tmp_path, files=["cep152.bin"], retries=2, **FAST)
    assert (tmp_path / "cep152.bin.part").read_bytes() == data[:5000]
    assert not (tmp_path / "cep152.bin").exists()


def test_wrong_checksum_kept_aside(tmp_path, blobs):
    with ZenodoStandIn({"1001": blobs}, wrong_md5={"notes.txt"}) as server:
        with pytest.raises(HollyError) as info:
            zenodo.fetch_record("1001", tmp_path, files=["notes.txt"], api_base=server.api, **FAST)
        expected = server.record_json("1001")["files"][1]["checksum"][4:]
    message = str(info.value)
    assert f"expected {expected}, got {_md5(blobs['notes.txt'])}" in message
    assert (tmp_path / "notes.txt.bad-md5").read_bytes() == blobs["notes.txt"]
    assert not (tmp_path / "notes.txt").exists() and not (tmp_path / "notes.txt.part").exists()


def test_pin_disagreeing_with_record_fails_before_download(tmp_path, blobs):
    with ZenodoStandIn({"1001": blobs}) as server:
        with pytest.raises(HollyError, match="pinned md5 for 'notes.txt'"):
            zenodo.fetch_record(
                "1001", tmp_path, md5={"notes.txt": "f" * 32}, api_base=server.api, **FAST
            )
        assert server.file_requests("notes.txt") == server.file_requests("cep152.bin") == []


def test_file_not_in_record(tmp_path, blobs):
    with ZenodoStandIn({"1001": blobs}) as server:
        with pytest.raises(HollyError) as info:
            zenodo.fetch_record(
                "1001", tmp_path, files=["notes.txt", "nope.fits"], api_base=server.api, **FAST
            )
        assert len(server.requests) == 1  # nothing downloaded
    assert "'nope.fits' is not in Zenodo record 1001" in str(info.value)
    assert "available: cep152.bin, notes.txt" in str(info.value)


def test_existing_file_with_wrong_md5_not_overwritten(tmp_path, blobs):
    (tmp_path / "notes.txt").write_bytes(b"edited by hand")
    with ZenodoStandIn({"1001": blobs}) as server:
        with pytest.raises(HollyError, match="exists but its md5"):
            zenodo.fetch_record("1001", tmp_path, files=["notes.txt"], api_base=server.api, **FAST)
    assert (tmp_path / "notes.txt").read_bytes() == b"edited by hand"


# -- manifests ------------------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path, blobs):
    path = tmp_path / "config" / "zenodo.yaml"
    with ZenodoStandIn({"1001": blobs}) as server:
        written = zenodo.write_manifest("1001", path, api_base=server.api)
        raw = yaml.safe_load(path.read_text())
        assert list(raw) == ["record", "doi", "files"]
        assert raw["files"][0] == {
            "name": "cep152.bin",
            "size": 300_000,
            "md5": _md5(blobs["cep152.bin"]),
        }
        manifest = zenodo.read_manifest(path)
        assert manifest == written
        assert manifest.record == "1001" and manifest.doi == "10.5281/zenodo.1001"
        assert manifest.md5 == {name: _md5(data) for name, data in blobs.items()}
        paths = zenodo.fetch_record(
            manifest.record, tmp_path / "d", md5=manifest.md5, api_base=server.api, **FAST
        )
    assert [p.read_bytes() for p in paths] == list(blobs.values())


@pytest.mark.parametrize(
    "text, message",
    [
        ("record: 1\nfiles: [{name: a, md5: '%s'}]\nextra: 1\n" % ("0" * 32), "unknown key"),
        ("record: 1\nfiles: [{name: a, md5: abc}]\n", "32 hex digits"),
        ("record: 1\nfiles: []\n", "non-empty 'files'"),
        ("record: 1\nfiles: [{name: ../a, md5: '%s'}]\n" % ("0" * 32), "refuses"),
        ("[1, 2\n", "not valid YAML"),
    ],
)
def test_read_manifest_rejects(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(HollyError, match=message):
        zenodo.read_manifest(path)


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    """holly.cli.main with only the fetch command registered (other commands may be unfinished)."""
    assert holly.cli.COMMANDS["fetch"] == "fetch"
    monkeypatch.setattr(holly.cli, "COMMANDS", {"fetch": "fetch"})
    return holly.cli.main


def test_cli_missing_record_exit_2(cli, tmp_path, capsys):
    with ZenodoStandIn({"1001": {"a": b"a"}}) as server:
        code = cli(["-q", "fetch", "424242", "--dest", str(tmp_path), "--api", server.api])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: Zenodo record 424242 not found at {server.api}"]


def test_cli_file_not_in_record_exit_2(cli, tmp_path, capsys, blobs):
    with ZenodoStandIn({"1001": blobs}) as server:
        argv = ["fetch", "1001", "--dest", str(tmp_path), "--files", "x.fits", "--api", server.api]
        code = cli(["-q", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: file 'x.fits'")


def test_cli_manifest_download_and_extract(cli, tmp_path, blobs):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("objs/bunny.obj", "v 0 0 0\nv 1 0 0\n")
        zf.writestr("objs/teapot.obj", "v 0 1 0\n")
    records = {"5608206": {"holly-1.2.zip": buf.getvalue(), **blobs}}
    manifest = tmp_path / "zenodo.yaml"
    dest = tmp_path / "resources"
    with ZenodoStandIn(records) as server:
        api = ["--api", server.api]
        assert (
            cli(["-q", "fetch", "10.5281/zenodo.5608206", "--write-manifest", str(manifest), *api])
            == 0
        )
        assert not dest.exists()
        # Pin only the zip: the manifest decides what is fetched.
        data = yaml.safe_load(manifest.read_text())
        data["files"] = [f for f in data["files"] if f["name"] == "holly-1.2.zip"]
        manifest.write_text(yaml.safe_dump(data))
        argv = ["-q", "fetch", "--manifest", str(manifest), "--dest", str(dest), "--extract", *api]
        assert cli(argv) == 0
        assert cli(argv) == 0  # idempotent: nothing fetched or extracted again
        assert len(server.file_requests("holly-1.2.zip")) == 1
    assert sorted(p.name for p in dest.iterdir()) == ["holly-1.2", "holly-1.2.zip"]
    assert (dest / "holly-1.2" / "objs" / "teapot.obj").read_text() == "v 0 1 0\n"


def test_cli_manifest_for_other_record(cli, tmp_path, capsys, blobs):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"record": "77", "files": [{"name": "a", "md5": "0" * 32}]}))
    with ZenodoStandIn({"1001": blobs}) as server:
        code = cli(
            [
                "-q",
                "fetch",
                "1001",
                "--manifest",
                str(manifest),
                "--dest",
                str(tmp_path),
                "--api",
                server.api,
            ]
        )
    assert code == 2
    assert "is for record 77, not 1001" in capsys.readouterr().err


def test_github_integration_key_saved_under_last_part(tmp_path):
    """Zenodo's GitHub integration names the archive owner/repo-tag.zip (one "/")."""
    records = {"5608206": {"OniDaito/HOLLy-v1.2.zip": b"zip bytes"}}
    with ZenodoStandIn(records) as server:
        paths = zenodo.fetch_record("5608206", tmp_path, api_base=server.api, progress=False)
    assert paths == [tmp_path / "HOLLy-v1.2.zip"]
    assert paths[0].read_bytes() == b"zip bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HOLLy-v1.2.zip"]


@pytest.mark.parametrize("name", ["a//b.zip", "a/../b.zip", "/b.zip", "a/"])
def test_slash_keys_with_unsafe_parts_refused(name):
    with pytest.raises(HollyError, match="refuses"):
        zenodo._check_name(name, "1")


@pytest.mark.parametrize("record", ["١٢٣", "10.5281/zenodo.١٢", "https://zenodo.org/records/٤٥"])
def test_unicode_digits_in_a_record_id_are_a_clear_error(record):
    """issue 9: non-ASCII digits passed str.isdigit and crashed in the URL (UnicodeEncodeError)."""
    from holly.data.zenodo import parse_record_id

    with pytest.raises(HollyError, match="cannot read a Zenodo record"):
        parse_record_id(record)
