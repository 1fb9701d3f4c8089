"""Physical scale end to end: localisations in nm -> store nm_per_px -> run provenance ->
`holly export` writes the cloud in nm."""

import json

import numpy as np
import pandas as pd
import pytest

from holly.cli import main
from holly.data.imagestore import ImageStore
from holly.data.localisations import localise
from holly.data.pointio import read_points
from holly.run.runfolder import RunFolder, nm_per_model_unit, nm_per_px

CFG = {
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 12},
    "sigma": {"values": [2.0, 1.0], "schedule": "epoch"},
    "train": {"epochs": 1, "batch_size": 8, "log_every": 2, "test_images": 8, "threads": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):  # 12 particles, ellipses of ~100 nm, in nm
        t = rng.uniform(0, 2 * np.pi, 60)
        xy = np.stack([100 * np.cos(t), 50 * np.sin(t)], 1) + rng.uniform(0, 1e4, 2)
        rows += [(x, y, k) for x, y in xy]
    pd.DataFrame(rows, columns=["x [nm]", "y [nm]", "particle"]).to_csv(tmp / "t.csv", index=False)
    result = localise(
        tmp / "t.csv",
        tmp / "s.zarr",
        [2.0, 1.0],
        size=32,
        perturbations=2,
        particle_column="particle",
    )
    cfg = {**CFG, "data": {"source": "zarr", "store": str(tmp / "s.zarr"), "test_fraction": 0.2}}
    assert main(["train", "--config-json", json.dumps(cfg), "--out", str(tmp / "run")]) == 0
    return tmp, result


def test_scale_travels_from_store_to_run(run):
    tmp, result = run
    store = ImageStore.open(tmp / "s.zarr")
    assert store.nm_per_px == pytest.approx(result.nm_per_px)
    assert result.nm_per_px == pytest.approx(1 / result.pixels_per_unit)  # source unit = 1 nm
    assert nm_per_px(tmp / "run") == pytest.approx(store.nm_per_px)
    assert nm_per_model_unit(tmp / "run") == pytest.approx(store.nm_per_px * 32 / 4)
    assert RunFolder(tmp / "run").read_scale()["from"] == str(tmp / "s.zarr")
    assert nm_per_px(tmp / "nowhere") is None


def test_export_in_nm_and_model_units(run, tmp_path, capsys):
    tmp, _ = run
    cloud = read_points(tmp / "run" / "points.ply")
    assert main(["export", str(tmp / "run"), "--out", str(tmp_path / "nm.ply")]) == 0
    nm = read_points(tmp_path / "nm.ply")
    assert np.allclose(nm, cloud * nm_per_model_unit(tmp / "run"), rtol=1e-5)
    args = ["export", str(tmp / "run"), "--out", str(tmp_path / "m.csv"), "--units", "model"]
    assert main(args) == 0
    assert np.allclose(read_points(tmp_path / "m.csv"), cloud, atol=1e-6)


def test_export_without_a_scale_is_a_clear_error(tmp_path, capsys):
    run_dir = tmp_path / "sim"
    run_dir.mkdir()
    (run_dir / "provenance.json").write_text(json.dumps({"scale": None}))
    from holly.data.pointio import write_points

    write_points(run_dir / "points.ply", np.zeros((3, 3)))
    assert main(["export", str(run_dir), "--out", str(tmp_path / "x.ply")]) == 2
    assert "no physical scale" in capsys.readouterr().err
    assert not (tmp_path / "x.ply").exists()
