"""The small CLI pieces the data workflow calls: holly pick / archive.find_one, fetch --done,
ingest --find, evaluate --aligned, figures --only, and the summary's wall time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from zenodo_server import ZenodoStandIn

from holly.cli import main as cli
from holly.data import archive
from holly.data.pointio import write_points
from holly.errors import HollyError
from holly.results.report import _wall_seconds


@pytest.fixture
def unpacked(tmp_path):
    """A record folder like resources/zenodo/holly-software after --extract."""
    top = tmp_path / "rec" / "HOLLy-v1.2" / "OniDaito-HOLLy-0a1b2c3"
    (top / "objs").mkdir(parents=True)
    (top / "objs" / "bunny_large.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (top / "objs" / "bunny_detailed.obj").write_text("v 0 0 1\n")
    (top / "objs" / "notes.txt").write_text("not points\n")
    partial = tmp_path / "rec" / ".HOLLy-v1.2.partial-x" / "objs"
    partial.mkdir(parents=True)
    (partial / "bunny_large.obj").write_text("v 9 9 9\n")  # an interrupted extraction
    return tmp_path / "rec"


def test_find_one_by_glob_across_unknown_folders(unpacked):
    found = archive.find_one(unpacked, "**/objs/bunny_large.obj")
    assert found.parent.parent.name == "OniDaito-HOLLy-0a1b2c3"  # not the partial one
    assert archive.find_one(unpacked, "**/objs", "dir").name == "objs"


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("**/teapot_large.obj", r"no file .* matches .*; found .*bunny_large.obj"),
        ("**/objs/bunny_*.obj", r"2 files under .* match .*more specific"),
        ("../x", r"relative glob without '..'"),
    ],
)
def test_find_one_errors(unpacked, pattern, message):
    with pytest.raises(HollyError, match=message):
        archive.find_one(unpacked, pattern)


def test_pick_copies_one_point_file(unpacked, tmp_path, capsys):
    out = tmp_path / "shapes" / "bunny.obj"
    assert cli(["-q", "pick", str(unpacked), "**/objs/bunny_large.obj", "--out", str(out)]) == 0
    assert out.read_text() == "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
    bad = tmp_path / "x.obj"
    code = cli(["-q", "pick", str(unpacked), "**/notes.txt", "--out", str(bad), "--points"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and not bad.exists()


def test_fetch_done_written_only_after_success(tmp_path):
    records = {"5608206": {"OniDaito/HOLLy-v1.2.zip": b"not really a zip", "a.txt": b"a"}}
    done = tmp_path / "rec.fetched.json"
    with ZenodoStandIn(records) as server:
        base = ["-q", "fetch", "5608206", "--dest", str(tmp_path / "rec"), "--api", server.api]
        assert cli([*base, "--files", "nope.zip", "--done", str(done)]) == 2
        assert not done.exists()
        assert cli([*base, "--files", "a.txt", "--done", str(done)]) == 0
    data = json.loads(done.read_text())
    assert data["record"] == "5608206" and data["extracted"] == {}
    assert data["files"] == [
        {
            "key": "a.txt",
            "path": str(tmp_path / "rec" / "a.txt"),
            "size": 1,
            "md5": "0cc175b9c0f1b6a831c399e269772661",
        }
    ]


def test_ingest_find_locates_the_sigma_folders(tmp_path):
    for sigma in ("10", "2.0"):
        folder = tmp_path / "rec" / "cep152_paper" / "paper" / sigma
        folder.mkdir(parents=True)
        for i in range(4):
            image = np.zeros((16, 16), np.float32)
            image[i + 2, 5] = 1.0
            fits.PrimaryHDU(image).writeto(folder / f"image_{i:06d}.fits")
    out = tmp_path / "s.zarr"
    argv = ["-q", "ingest", str(tmp_path / "rec"), "--find", "**/paper", "--out", str(out)]
    assert cli([*argv, "--perturbations", "2"]) == 0
    from holly.data.imagestore import ImageStore

    store = ImageStore.open(out)
    assert store.sigmas == [10.0, 2.0] and store.particle_ids.tolist() == [0, 0, 1, 1]


def test_evaluate_aligned_elsewhere_and_figures_only(tmp_path):
    rng = np.random.default_rng(1)
    run = tmp_path / "run"
    cloud = rng.normal(size=(40, 3))
    write_points(run / "points.ply", cloud)
    write_points(run / "initial_points.ply", rng.uniform(-1, 1, size=(40, 3)))
    for step in (2, 4):
        write_points(run / "snapshots" / f"points_{step:08d}.ply", cloud * step / 4)
    published = tmp_path / "published.ply"
    write_points(published, cloud[:30] @ np.diag([1.0, -1.0, 1.0]))  # a mirror image
    argv = ["-q", "evaluate", str(run), "--ground-truth", str(published)]
    out, aligned = tmp_path / "vs.json", tmp_path / "vs_aligned.ply"
    assert cli([*argv, "--out", str(out), "--aligned", str(aligned)]) == 0
    result = json.loads(out.read_text())
    assert result["reconstruction"]["handedness"] == "mirrored"
    assert aligned.is_file() and not (run / "aligned_points.ply").exists()
    figs = tmp_path / "figs"
    base = ["-q", "figures", str(run), "--out", str(figs), "--dpi", "40"]
    assert cli([*base, "--only", "evolution", "--snapshots", "3"]) == 0
    more = ["--published", str(published), "--aligned", str(aligned), "--scores", str(out)]
    assert cli([*base, "--only", "vs_published", *more]) == 0
    assert sorted(p.name for p in figs.iterdir()) == ["evolution.png", "vs_published.png"]
    assert cli([*base, "--only", "vs_published"]) == 2  # needs --published and --aligned


def test_wall_seconds_from_provenance():
    # holly train writes `created` in ISO UTC and `finished` with a numeric offset
    prov = {"created": "2024-05-01T10:00:00+00:00", "finished": "2024-05-01T12:30:05+0200"}
    assert _wall_seconds(prov) == 1805.0  # 10:30:05 UTC
    assert _wall_seconds({"created": "2024-05-01T10:00:00+00:00"}) is None
