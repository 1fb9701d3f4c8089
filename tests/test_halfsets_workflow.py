"""Half-set validation end to end, on a tiny real-data-like image store.

The store is made by `holly simulate` (images and particle ids, like `holly localise` or
`holly ingest` make them); the experiment trains from it (`data.source: zarr`), so half-sets
are on by default. The default-tier test runs the workflow's chain of commands in-process
(seconds); the `workflow` test runs it through Snakemake (each job a fresh process).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT, body_errors, viewer_states
from test_workflow import snakemake

from holly.cli import main

SIM = {
    "seed": 1,
    "data": {"shape": "tetrapod", "particles": 24, "augment": 2},
    "render": {"height": 16, "width": 16},
    "sigma": {"values": [2.0, 1.0]},
}
CONFIG = {
    "container_image": "docker://ghcr.io/holly-smlm/holly:0.1.0",
    "defaults": {
        "device": "cpu",
        "data": {"source": "zarr", "store": "store.zarr", "test_fraction": 0.2},
        "render": {"height": 16, "width": 16},
        "model": {"num_points": 12},
        "sigma": {"values": [2.0, 1.0], "schedule": "epoch"},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "log_every": 2,
            "test_images": 8,
            "snapshot_every": 2,
            "checkpoint_every": 100,
            "threads": 1,
        },
    },
    "experiments": [{"name": "store"}],
    "figures": {"dpi": 40, "montage_images": 2},
    "viewer": {"max_snapshots": 3},
    "report": {"title": "half-set test"},
}


def _store(tmp_path):
    store = tmp_path / "store.zarr"
    assert main(["simulate", "--config-json", json.dumps(SIM), "--out", str(store)]) == 0
    return store


def test_half_set_chain_on_a_store(tmp_path, request):
    """train, train --half 1/2, evaluate, compare, figures, summarise, report: as the rules do."""
    store = _store(tmp_path)
    cfg = json.dumps(
        {**CONFIG["defaults"], "data": {**CONFIG["defaults"]["data"], "store": str(store)}}
    )
    run = tmp_path / "results" / "store"
    assert main(["train", "--config-json", cfg, "--out", str(run)]) == 0
    for half in ("1", "2"):
        out = run / "halves" / f"half{half}"
        assert main(["train", "--config-json", cfg, "--out", str(out), "--half", half]) == 0
    assert main(["evaluate", str(run)]) == 0
    fig = run / "figures" / "fsc.png"
    assert (
        main(
            [
                "compare",
                str(run / "halves" / "half1"),
                str(run / "halves" / "half2"),
                "--out",
                str(run / "halfsets.json"),
                "--figure",
                str(fig),
                "--aligned",
                str(run / "halves" / "half2_aligned.ply"),
                "--dpi",
                "40",
            ]
        )
        == 0
    )
    assert main(["figures", str(run), "--out", str(run / "figures"), "--dpi", "40"]) == 0
    summary = tmp_path / "results" / "summary.csv"
    assert main(["summarise", "--run", f"store={run}", "--out", str(summary)]) == 0
    df = pd.read_csv(summary)
    for col in ("fsc_resolution_0143", "fsc_resolution_05", "fsc_resolution_0143_nm"):
        assert col in df
    assert df["fsc_resolution_0143"].iloc[0] > 0 and fig.stat().st_size > 5_000
    page = tmp_path / "report.html"
    assert (
        main(
            [
                "report",
                "--run",
                f"store={run}",
                "--summary",
                str(summary),
                "--out",
                str(page),
                "--captions",
                str(ROOT / "workflow" / "report"),
            ]
        )
        == 0
    )
    html = page.read_text()
    assert "Half-set validation" in html and "half 2 aligned onto half 1" in html
    assert "FSC 0.143 resolution" in html and "fsc.rst" not in html
    browser = request.getfixturevalue("browser")  # skips here when there is no Chromium
    dom, _ = browser.load(page)
    states = viewer_states(dom)
    assert len(states) == 2 and all(st.get("data-status") == "ok" for st in states), states
    assert body_errors(dom) == 0


@pytest.mark.workflow
def test_half_sets_through_snakemake(tmp_path):
    _store(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    proc = snakemake("--cores", "2", "--configfile", "c.yaml", "--show-failed-logs", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    results = tmp_path / "results"
    assert (results / "store" / "figures" / "fsc.png").stat().st_size > 5_000
    halves = [results / "store" / "halves" / h for h in ("half1", "half2")]
    seeds = [json.loads((h / "provenance.json").read_text())["seed"] for h in halves]
    assert seeds[0] != seeds[1] and 1 not in seeds
    summary = pd.read_csv(results / "summary.csv")
    for col in ("fsc_resolution_0143", "fsc_resolution_05", "fsc_resolution_0143_nm"):
        assert col in summary
    assert summary["fsc_resolution_0143"].iloc[0] > 0
    page = (results / "report.html").read_text()
    assert "Half-set validation" in page and "half 2 aligned onto half 1" in page
    assert "FSC 0.143 resolution" in page  # the summary table's column
