"""holly ingest: FITS sigma folders -> image store; orientation; bad inputs; OME-Zarr export."""

import hashlib
import json

import numpy as np
import pytest
import torch
import zarr
from astropy.io import fits

import holly.cli
from holly.data.imagestore import ImageStore
from holly.data.ingest import export_ome_zarr, ingest_fits
from holly.errors import HollyError
from holly.method.render import render

SIZE = 16
N = 12
FOLDERS = ("10", "09", "1.41")


def make_tree(root, n=N, folders=FOLDERS):
    """Random positive images; returns {folder: [n, SIZE, SIZE] FITS data}."""
    rng = np.random.default_rng(1)
    data = {}
    for name in folders:
        (root / name).mkdir(parents=True)
        data[name] = rng.random((n, SIZE, SIZE), dtype=np.float32) + 0.1
        for i, image in enumerate(data[name]):
            fits.PrimaryHDU(image).writeto(root / name / f"image_{i:06d}.fits")
    return data


def no_leftovers(tmp_path, out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.fixture
def cli_only_mine(monkeypatch):
    """The CLI with only this module's commands, so other commands' imports do not matter."""
    assert holly.cli.COMMANDS["ingest"] == "ingest"
    monkeypatch.setattr(holly.cli, "COMMANDS", {"ingest": "ingest"})


def test_round_trip_values_ids_and_checksums(tmp_path):
    data = make_tree(tmp_path / "src")
    result = ingest_fits(tmp_path / "src", tmp_path / "s.zarr", perturbations=4)
    store = ImageStore.open(tmp_path / "s.zarr")
    assert result.n_images == N and store.sigmas == [10.0, 9.0, 1.41]
    for name, sigma in zip(FOLDERS, (10.0, 9.0, 1.41), strict=True):
        assert np.array_equal(store.load_level(sigma), data[name][:, ::-1])  # flipped rows
    assert np.array_equal(store.particle_ids, np.arange(N) // 4)
    assert np.array_equal(store.array("source_index"), np.arange(N))
    manifest = store.source_manifest()
    assert len(manifest) == N * len(FOLDERS)
    digest, rel = manifest[N + 3].split("  ")
    assert rel == "09/image_000003.fits"
    assert digest == hashlib.md5((tmp_path / "src" / rel).read_bytes()).hexdigest()
    attrs = store.attrs
    assert attrs["orientation"]["flipped_vertically"] is True
    assert attrs["source"]["folders"] == {"10": 10.0, "09": 9.0, "1.41": 1.41}
    assert attrs["params"]["perturbations"] == 4 and attrs["skipped"] == []


def test_flip_convention_matches_the_renderer(tmp_path):
    """A CEPrender-style FITS (rendered, then written flipud) ingests to the rendering itself."""
    point = torch.tensor([[0.3, 0.5, 0.0]])  # right of centre and up: row 6, column 9
    image = render(point, torch.eye(3)[None], torch.zeros(1, 2), 0.7, SIZE, SIZE)[0].numpy()
    top_row = int(np.argmax(image.max(axis=1)))
    assert top_row == SIZE // 2 - 2  # +y up: above the centre row
    (tmp_path / "src" / "2").mkdir(parents=True)
    fits.PrimaryHDU(image[::-1].copy()).writeto(tmp_path / "src" / "2" / "image_000000.fits")
    ingest_fits(tmp_path / "src", tmp_path / "flip.zarr")
    assert np.allclose(ImageStore.open(tmp_path / "flip.zarr").load_level(2)[0], image)
    ingest_fits(tmp_path / "src", tmp_path / "noflip.zarr", flip=False)
    stored = ImageStore.open(tmp_path / "noflip.zarr").load_level(2)[0]
    assert int(np.argmax(stored.max(axis=1))) == SIZE - 1 - top_row
    assert (
        ImageStore.open(tmp_path / "noflip.zarr").attrs["orientation"]["flipped_vertically"]
        is False
    )


def _truncated(path):
    path.write_bytes(path.read_bytes()[:3000])


def _garbage(path):
    path.write_bytes(b"this is not a FITS file\n" * 200)


def _write(array):
    def damage(path):
        path.unlink()
        fits.PrimaryHDU(array).writeto(path)

    return damage


def _nan(path):
    data = np.ones((SIZE, SIZE), np.float32)
    data[3, 4] = np.nan
    _write(data)(path)


BAD = {
    "truncated": (_truncated, "truncated"),
    "not-fits": (_garbage, "not a readable FITS file"),
    "wrong-shape": (_write(np.ones((SIZE, SIZE + 2), np.float32)), "shape"),
    "nan": (_nan, "NaN or infinite"),
    "all-zero": (_write(np.zeros((SIZE, SIZE), np.float32)), "all zero"),
    "no-data": (lambda p: (p.unlink(), fits.PrimaryHDU().writeto(p)), "no image data"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_file_names_the_file_and_leaves_nothing(tmp_path, kind):
    make_tree(tmp_path / "src", n=4)
    bad = tmp_path / "src" / "09" / "image_000002.fits"
    damage, reason = BAD[kind]
    damage(bad)
    out = tmp_path / "s.zarr"
    with pytest.raises(HollyError, match=reason) as info:
        ingest_fits(tmp_path / "src", out)
    assert str(bad) in str(info.value) and "--skip-bad" in str(info.value)
    no_leftovers(tmp_path, out)


def test_skip_bad_drops_image_everywhere_and_reports(tmp_path):
    data = make_tree(tmp_path / "src")
    _garbage(tmp_path / "src" / "1.41" / "image_000005.fits")  # last level: forces compaction
    _nan(tmp_path / "src" / "10" / "image_000008.fits")
    (tmp_path / "src" / "09" / "image_000001.fits").unlink()  # mixed counts
    result = ingest_fits(tmp_path / "src", tmp_path / "s.zarr", skip_bad=True, perturbations=2)
    keep = [i for i in range(N) if i not in (1, 5, 8)]
    store = ImageStore.open(tmp_path / "s.zarr")
    assert store.n_images == len(keep) == result.n_images
    assert np.array_equal(store.array("source_index"), keep)
    assert np.array_equal(store.particle_ids, np.array(keep) // 2)
    for name, sigma in zip(FOLDERS, store.sigmas, strict=True):
        assert np.array_equal(store.load_level(sigma), data[name][keep, ::-1])
    assert len(store.source_manifest()) == len(keep) * 3
    report = json.loads((tmp_path / "s.skipped.json").read_text())
    assert sorted(e["index"] for e in report["skipped"]) == [1, 5, 8]
    assert any("missing from sigma folder 09" in e["reason"] for e in report["skipped"])
    assert store.attrs["skipped"] == report["skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.skipped.json", "s.zarr", "src"]


def test_mixed_counts_error_names_the_file(tmp_path):
    make_tree(tmp_path / "src", n=4)
    (tmp_path / "src" / "1.41" / "image_000003.fits").unlink()
    with pytest.raises(HollyError, match=r"1\.41/image_000003\.fits is missing"):
        ingest_fits(tmp_path / "src", tmp_path / "s.zarr")
    no_leftovers(tmp_path, tmp_path / "s.zarr")


def test_layout_errors(tmp_path):
    with pytest.raises(HollyError, match="does not exist"):
        ingest_fits(tmp_path / "nope", tmp_path / "s.zarr")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(HollyError, match="no sigma sub-folders"):
        ingest_fits(tmp_path / "empty", tmp_path / "s.zarr")
    make_tree(tmp_path / "dup", n=2, folders=("10", "10.0"))
    with pytest.raises(HollyError, match="both hold sigma 10"):
        ingest_fits(tmp_path / "dup", tmp_path / "s.zarr")


def test_cubes_are_summed_over_the_first_axis(tmp_path):
    cube = np.random.default_rng(0).random((3, SIZE, SIZE)).astype(np.float32)
    (tmp_path / "src" / "5").mkdir(parents=True)
    fits.PrimaryHDU(cube).writeto(tmp_path / "src" / "5" / "image_000000.fits")
    ingest_fits(tmp_path / "src", tmp_path / "s.zarr", flip=False)
    assert np.allclose(ImageStore.open(tmp_path / "s.zarr").load_level(5)[0], cube.sum(0))


def test_ome_zarr_export(tmp_path):
    make_tree(tmp_path / "src", n=3)
    ingest_fits(tmp_path / "src", tmp_path / "s.zarr")
    export_ome_zarr(tmp_path / "s.zarr", tmp_path / "view.ome.zarr")
    group = zarr.open_group(tmp_path / "view.ome.zarr", mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["sample", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["custom", "space", "space"]
    assert ms["datasets"][0]["path"] == "0"
    arr = group["0"]
    assert arr.metadata.dimension_names == ("sample", "y", "x")
    store = ImageStore.open(tmp_path / "s.zarr")
    assert np.array_equal(arr[:], store.load_level(1.41))  # default: the sharpest level


def test_cli_ingest_and_error_line(tmp_path, capsys, cli_only_mine):
    make_tree(tmp_path / "src", n=3)
    out = tmp_path / "s.zarr"
    assert (
        holly.cli.main(
            [
                "ingest",
                str(tmp_path / "src"),
                "--out",
                str(out),
                "--no-flip",
                "--perturbations",
                "3",
                "--ome-zarr",
                str(tmp_path / "v.zarr"),
            ]
        )
        == 0
    )
    store = ImageStore.open(out)
    assert store.attrs["orientation"]["flipped_vertically"] is False
    assert (tmp_path / "v.zarr" / "zarr.json").is_file()
    assert holly.cli.main(["ingest", str(tmp_path / "src"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    _garbage(tmp_path / "src" / "10" / "image_000001.fits")
    assert holly.cli.main(["ingest", str(tmp_path / "src"), "--out", str(tmp_path / "t.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "image_000001.fits" in err
    assert "Traceback" not in err
