"""Figures, the summary table and the HTML report, on fake run folders (no training)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import body_errors, make_fake_run, viewer_states
from matplotlib.figure import Figure

from holly.cli import main as cli
from holly.errors import HollyError
from holly.results import figurekeys, figures
from holly.results.report import build_report, parse_runs, summary_table, table_html, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(n=5) -> pd.DataFrame:
    step = np.arange(1, n + 1) * 10
    return pd.DataFrame(
        {
            "step": step,
            "train_loss": 100.0 / step,
            "test_loss": 120.0 / step,
            "sigma_in": 8.0 / step,
            "sigma_pred_mean": 7.0 / step,
        }
    )


def test_figure_functions_return_figures():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(30, 3))
    made = [
        figures.loss_figure(_metrics()),
        figures.loss_figure(_metrics().iloc[:0]),
        figures.sigma_figure(_metrics()),
        figures.montage_figure(rng.random((5, 8, 8)), rng.random((5, 8, 8)), n=3),
        figures.views_figure(pts, pts + 0.01),
        figures.views_figure(pts),
        figures.pose_error_figure(rng.uniform(0, 180, 40)),
        figures.pose_error_figure(None),
    ]
    assert all(isinstance(f, Figure) for f in made)
    assert len(made[3].axes) == 6  # 3 pairs, two rows
    assert len(made[4].axes) == 3  # three orthogonal views


def test_montage_rejects_mismatched_images():
    with pytest.raises(HollyError, match="must both be"):
        figures.montage_figure(np.zeros((3, 8, 8)), np.zeros((3, 8, 9)))


def test_save_figure_atomic(tmp_path):
    path = figures.save_figure(figures.loss_figure(_metrics()), tmp_path / "a" / "loss.svg")
    assert path.read_text().lstrip().startswith("<?xml")
    assert [p.name for p in path.parent.iterdir()] == ["loss.svg"]  # no temp files left


def test_run_figures(fake_run, tmp_path):
    paths = figures.run_figures(fake_run, tmp_path / "figs", dpi=50)
    assert [p.stem for p in paths] == list(figurekeys.RUN_FIGURES)
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_run_figures_real_data_and_errors(tmp_path):
    real = make_fake_run(tmp_path / "real", simulated=False)
    assert len(figures.run_figures(real, tmp_path / "f", dpi=40)) == 5
    assert figures.pose_errors(real) is None
    (real / "points.ply").unlink()
    with pytest.raises(HollyError, match="not finished"):
        figures.run_figures(real, tmp_path / "f")


def test_cli_figures(fake_run, tmp_path, capsys):
    out = tmp_path / "figs"
    assert (
        cli(
            [
                "figures",
                str(fake_run),
                "--out",
                str(out),
                "--format",
                "svg",
                "--montage-images",
                "2",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{k}.svg" for k in figurekeys.RUN_FIGURES
    )
    assert cli(["figures", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error:")


@pytest.fixture
def two_runs(tmp_path):
    return {
        "alpha": make_fake_run(tmp_path / "alpha", seed=1),
        "beta": make_fake_run(tmp_path / "beta", seed=2, n_points=25),
    }


def test_summary_table(two_runs, tmp_path):
    csv = tmp_path / "summary.csv"
    write_summary(two_runs, csv, tmp_path / "cmp.png", tmp_path / "table.html", dpi=50)
    df = pd.read_csv(csv)
    assert list(df["experiment"]) == ["alpha", "beta"]
    assert list(df["num_points"]) == [40, 25]
    for col in (
        "chamfer",
        "blob_chamfer",
        "floor_chamfer",
        "random_init_chamfer",
        "fscore",
        "pose_error_median_deg",
        "steps",
        "train_seconds",
        "image_size",
        "shape",
    ):
        assert col in df, col
    assert df["chamfer"].tolist() == [0.03, 0.03]
    assert (tmp_path / "cmp.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "table.html").read_text().count("<tr>") == 3


def test_summary_columns_have_units(two_runs, tmp_path):
    """Distances in model units, px (H/4 per unit) and nm where the store gives a pixel size."""
    import json

    from holly.results.report import SUMMARY_UNITS

    beta = two_runs["beta"]
    prov = json.loads((beta / "provenance.json").read_text())
    prov.update(threads=4, scale={"nm_per_px": 10.0, "nm_per_model_unit": 40.0, "from": "s"})
    (beta / "provenance.json").write_text(json.dumps(prov))
    csv = tmp_path / "summary.csv"
    write_summary(two_runs, csv, table=tmp_path / "t.html")
    df = pd.read_csv(csv)
    alpha, b = df.iloc[0], df.iloc[1]
    # alpha: older provenance (no units, threads only in the device text); 16 px -> 4 px/unit
    assert alpha["threads"] == 1 and alpha["model_unit_px"] == 16 / 4
    assert alpha["chamfer_px"] == pytest.approx(0.03 * 4)
    assert np.isnan(alpha["pixel_nm"]) and np.isnan(alpha["chamfer_nm"])
    assert b["threads"] == 4 and b["chamfer_nm"] == pytest.approx(0.03 * 4 * 10)
    assert b["hausdorff95_nm"] == pytest.approx(b["hausdorff95"] * 40)
    for col in df.columns:  # every distance-like numeric column has a documented unit
        if any(w in col for w in ("chamfer", "hausdorff", "sigma", "seconds", "_deg", "_nm")):
            assert col in SUMMARY_UNITS or col.endswith("ratio_to_blob"), col
    page = (tmp_path / "t.html").read_text()
    assert '<span class="unit">model units</span>' in page and "holly-table-wrap" in page
    assert '<td class="num">0.030</td>' in page and '<td class="text">alpha</td>' in page


def test_summary_of_real_data_run(tmp_path):
    df = summary_table({"r": make_fake_run(tmp_path / "r", simulated=False)})
    assert df["chamfer"].isna().all()
    assert "–" in table_html(df)  # missing values shown as a dash


def test_parse_runs():
    assert parse_runs(["a=x/y", "z/b"]) == {"a": Path("x/y"), "b": Path("z/b")}
    with pytest.raises(HollyError, match="twice"):
        parse_runs(["a=x", "a=y"])


def _report(runs, tmp_path, captions=None):
    for run in runs.values():
        figures.run_figures(run, run / "figures", dpi=40)
    csv = tmp_path / "summary.csv"
    write_summary(runs, csv, tmp_path / "cmp.png", dpi=40)
    return build_report(
        runs,
        csv,
        tmp_path / "report.html",
        chart=tmp_path / "cmp.png",
        captions_dir=captions,
        title="test report",
        max_snapshots=5,
    )


def test_report_is_self_contained(two_runs, tmp_path):
    from conftest import ROOT

    html = _report(two_runs, tmp_path, ROOT / "workflow" / "report").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert html.count('src="data:image/png;base64,') == 2 * 5 + 1
    assert html.count('class="holly-viewer"') == 2
    assert "Chamfer distance" in html  # a caption from workflow/report/*.rst, rendered
    assert '<h2 id="exp-beta">beta</h2>' in html


def test_report_needs_figures(two_runs, tmp_path):
    csv = tmp_path / "s.csv"
    write_summary(two_runs, csv)
    with pytest.raises(HollyError, match="holly figures"):
        build_report(two_runs, csv, tmp_path / "r.html")


def test_cli_summarise_and_report(two_runs, tmp_path):
    runs = [f"--run={k}={v}" for k, v in two_runs.items()]
    for run in two_runs.values():
        assert cli(["figures", str(run), "--out", str(run / "figures"), "--dpi", "40"]) == 0
    assert (
        cli(
            [
                "summarise",
                *runs,
                "--out",
                str(tmp_path / "s.csv"),
                "--chart",
                str(tmp_path / "c.png"),
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "report",
                *runs,
                "--summary",
                str(tmp_path / "s.csv"),
                "--chart",
                str(tmp_path / "c.png"),
                "--out",
                str(tmp_path / "r.html"),
            ]
        )
        == 0
    )
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_browser_report(two_runs, tmp_path, browser):
    from conftest import ROOT

    page = _report(two_runs, tmp_path, ROOT / "workflow" / "report")
    dom, console = browser.load(page)
    assert not [c for c in console if "Uncaught" in c or "rror" in c], console
    assert body_errors(dom) == 0
    states = viewer_states(dom)
    assert [s["data-status"] for s in states] == ["ok", "ok"]
    assert all(int(s["data-points-drawn"]) > 25 for s in states)


def test_learning_curve_figure_of_two_runs(two_runs, tmp_path, capsys):
    alpha, beta = two_runs["alpha"], two_runs["beta"]
    out = tmp_path / "figs"
    # before `holly evaluate --snapshots` there is nothing to draw: a clear error naming the file
    args = ["figures", str(alpha), "--out", str(out), "--only", "learning_curve"]
    assert cli(args + ["--with", str(beta)]) == 2
    assert "snapshot_scores.csv" in capsys.readouterr().err
    for run in (alpha, beta):
        assert cli(["evaluate", str(run), "--snapshots", "--out", str(tmp_path / "e.json")]) == 0
    assert cli(args + ["--with", str(beta)]) == 0
    assert (out / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC
    curves = {r.name: figures.read_snapshot_scores(r) for r in (alpha, beta)}
    fig = figures.learning_curve_figure(curves, "t")
    top = fig.axes[0]
    assert [line.get_label() for line in top.get_lines()[:2]] == ["alpha", "beta"]
    assert np.allclose(top.get_lines()[0].get_ydata(), curves["alpha"]["chamfer_ratio_to_blob"])
    with pytest.raises(HollyError, match="no learning curves"):
        figures.learning_curve_figure({})
