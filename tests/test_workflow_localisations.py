"""The workflow path from localisation files: localisations -> store -> train -> evaluate ->
report, on config/examples/localisations.yaml (its bundled table) shrunk further."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, job_counts
from test_workflow import snakemake

EXAMPLE = ROOT / "config" / "examples" / "localisations.yaml"
TABLE = ROOT / "config" / "examples" / "data" / "cep152_locs.csv"


def test_example_is_small_and_plans_a_localise_job(tmp_path):
    assert TABLE.stat().st_size < 200_000
    proc = snakemake("-n", "--configfile", str(EXAMPLE), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["localise"] == 1 and counts["train"] == 1 and counts["report"] == 1


def test_a_fusion_start_plans_its_figure_for_the_report(tmp_path):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["experiments"][0]["refine"] = {"fusion": True}
    (tmp_path / "fusion.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(tmp_path / "fusion.yaml"), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["fusion_figure"] == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["localisations"]["cep152-locs"].update(colour="red"),
            "'colour' was unexpected",
        ),
        (lambda c: c["localisations"]["cep152-locs"].pop("sigmas"), "'sigmas' is a required"),
        (
            lambda c: c["experiments"][0]["data"].update(store="resources/other.zarr"),
            "stores: resources/cep152-locs.zarr",
        ),
    ],
)
def test_bad_localisations_config_fails_before_any_job(tmp_path, edit, message):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    edit(cfg)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"), cwd=ROOT)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_localisations_to_report(tmp_path):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    entry = cfg["localisations"]["cep152-locs"]
    entry["path"] = str(TABLE)
    entry["perturbations"] = 4
    cfg["experiments"][0]["train"].update(epochs=3, threads=1)
    (tmp_path / "locs.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(
        "--cores", "2", "--configfile", "locs.yaml", "--show-failed-logs", cwd=tmp_path
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]

    from holly.data.imagestore import ImageStore
    from holly.run.runfolder import nm_per_model_unit, nm_per_px

    store = ImageStore.open(tmp_path / "resources" / "cep152-locs.zarr")
    assert store.n_images == 36 * 4 and (store.height, store.width) == (32, 32)
    assert store.attrs["source"]["format"] == "thunderstorm"
    sums = store.load_level(store.sigmas[-1]).sum(axis=(1, 2))
    assert np.allclose(sums, np.repeat(store.attrs["n_localisations"], 4), rtol=0.05)
    # 36 particles of ~120 nm reach in a 32 px frame: a few nm per pixel
    assert 3.0 < store.nm_per_px < 15.0
    run = tmp_path / "results" / "localisations" / "cep152-locs"
    assert nm_per_px(run) == pytest.approx(store.nm_per_px)
    assert nm_per_model_unit(run) == pytest.approx(store.nm_per_px * 8)
    # render.data_blur: store became the table's median precision in pixels, recorded as such
    precision = np.median(pd.read_csv(TABLE)["uncertainty [nm]"]) / store.nm_per_px
    assert store.precision_px == pytest.approx(precision, rel=0.05)  # of the kept particles
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert trained["render"]["data_blur"] == pytest.approx(store.precision_px)
    assert json.loads((run / "evaluation.json").read_text())
    assert (tmp_path / "results" / "localisations" / "report.html").stat().st_size > 1000
