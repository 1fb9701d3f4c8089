"""Records whose layout nobody has seen: the sigma-folder tree and the published cloud found by
content, in archives served by the loopback Zenodo stand-in in different layouts."""

import io
import logging
import tarfile
import zipfile

import numpy as np
import pytest
from astropy.io import fits
from zenodo_server import ZenodoStandIn

from holly.cli import main
from holly.data import zenodo
from holly.data.archive import archive_stem, extract
from holly.data.imagestore import ImageStore
from holly.data.recordlayout import find_cloud, find_sigma_tree
from holly.errors import HollyError

FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False}


def fits_bytes(value):
    buf = io.BytesIO()
    fits.PrimaryHDU(np.full((8, 8), value, np.float32)).writeto(buf)
    return buf.getvalue()


def ply_bytes(n, seed):
    xyz = np.random.default_rng(seed).normal(size=(n, 3))
    head = f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\n"
    head += "property float z\nend_header\n"
    return (head + "\n".join(" ".join(f"{v:.5f}" for v in p) for p in xyz) + "\n").encode()


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tgz_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sigma_tree(prefix, sigmas=("10", "5", "2.5"), n=3):
    return {
        f"{prefix}{s}/image_{i:06d}.fits": fits_bytes(float(s) + i)
        for s in sigmas
        for i in range(n)
    }


IMAGES = {
    # as the README suggests: run/paper/<sigma>/image_*.fits below a top folder
    "readme": {"cep152_images.zip": zip_of(sigma_tree("CEP152/run/paper/"))},
    # another name, a tarball, decoys: a numbers-named folder of text, a lone sigma folder
    "decoys": {
        "data.tar.gz": tgz_of(
            {
                **sigma_tree("storm/sigmas/", ("10.0", "8.0")),
                "storm/logs/2021/notes.txt": b"x",
                "storm/logs/2022/notes.txt": b"y",
                "storm/single/3/image_000000.fits": fits_bytes(1.0),
            }
        ),
        "README.md": b"CEP152 images",
    },
}


def fetch(server, record, tmp_path):
    dest = tmp_path / record
    for path in zenodo.fetch_record(record, dest, api_base=server.api, **FAST):
        if path.suffix in (".zip", ".gz"):
            extract(path, dest / archive_stem(path))
    return dest


@pytest.mark.parametrize("layout", sorted(IMAGES))
def test_sigma_tree_found_by_content_and_ingested(tmp_path, layout, caplog):
    with ZenodoStandIn({"4751057": IMAGES[layout]}) as server:
        dest = fetch(server, "4751057", tmp_path)
    folder, reason = find_sigma_tree(dest)
    assert folder.name == {"readme": "paper", "decoys": "sigmas"}[layout]
    assert "sigma sub-folders" in reason
    out = tmp_path / "s.zarr"
    with caplog.at_level(logging.INFO):
        assert (
            main(["ingest", str(dest), "--find", "auto", "--out", str(out), "--perturbations", "1"])
            == 0
        )
    assert "sigma sub-folders" in caplog.text
    store = ImageStore.open(out)
    assert store.n_images == 3
    assert len(store.sigmas) == (3 if layout == "readme" else 2)


def test_no_or_two_sigma_trees_list_what_the_record_holds(tmp_path):
    (tmp_path / "a" / "10").mkdir(parents=True)
    (tmp_path / "a" / "10" / "x.txt").write_text("no fits")
    with pytest.raises(HollyError, match=r"no folder .* the record holds top level \[a/\]"):
        find_sigma_tree(tmp_path)
    for top in ("one", "two"):
        for s in ("10", "5"):
            (tmp_path / top / s).mkdir(parents=True)
            (tmp_path / top / s / "image_000000.fits").write_bytes(fits_bytes(1.0))
    with pytest.raises(HollyError, match="2 sigma-folder trees.*one.*two"):
        find_sigma_tree(tmp_path)


RESULTS = {
    "last": {
        "results.zip": zip_of(
            {
                "run_cep/plys/shape_e0_s800.ply": ply_bytes(250, 1),
                "run_cep/plys/shape_e9_s8000.ply": ply_bytes(250, 2),
                "run_cep/last.ply": ply_bytes(250, 3),
                "run_cep/objs/teapot.obj": b"v 0 0 0\nv 1 1 1\n",  # too few points
            }
        )
    },
    "snapshots": {
        "cep_results.tar.gz": tgz_of(
            {
                "out/points_00000800.ply": ply_bytes(250, 4),
                "out/points_00050000.ply": ply_bytes(250, 5),
                "out/points_00012000.ply": ply_bytes(250, 6),
                "out/reference.ply": ply_bytes(600, 7),
            }
        )
    },
}


@pytest.mark.parametrize("layout", sorted(RESULTS))
def test_published_cloud_found_by_content(tmp_path, layout, caplog):
    with ZenodoStandIn({"4836173": RESULTS[layout]}) as server:
        dest = fetch(server, "4836173", tmp_path)
    path, reason = find_cloud(dest)
    expected = {"last": "last.ply", "snapshots": "points_00050000.ply"}[layout]
    assert path.name == expected and expected in reason
    with caplog.at_level(logging.INFO):
        assert main(["pick", str(dest), "auto", "--out", str(tmp_path / "c.ply"), "--points"]) == 0
    assert expected in caplog.text
    assert (tmp_path / "c.ply").read_bytes() == path.read_bytes()


def test_ambiguous_clouds_are_an_error_listing_them(tmp_path):
    (tmp_path / "a.ply").write_bytes(ply_bytes(100, 1))
    (tmp_path / "b.ply").write_bytes(ply_bytes(300, 2))
    with pytest.raises(HollyError, match=r"2 point clouds .* none stands out.*a\.ply \(100\)"):
        find_cloud(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(HollyError, match="no point cloud.*files: 1 .txt"):
        find_cloud(empty)
