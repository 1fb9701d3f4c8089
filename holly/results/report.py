"""Results across experiments: the summary table, and one self-contained HTML report.

:func:`summary_table` flattens each run folder (``config.yaml``, ``metrics.csv``,
``evaluation.json``, ``provenance.json``) into one row; :func:`write_summary` saves it as CSV
(pandas-readable, one row per experiment) with a comparison chart and an HTML table.

:func:`build_report` writes one HTML file that needs nothing else: figures are embedded as data
URIs, captions are rendered from the workflow's RST caption files, and each experiment gets the
interactive 3D viewer of :mod:`holly.results.viewer` (inline JavaScript, no network).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import math
import os
import re
from pathlib import Path

import pandas as pd

from holly import __version__
from holly.atomic import atomic_path
from holly.errors import HollyError
from holly.results.figurekeys import EXTRA_FIGURES, RUN_FIGURES
from holly.results.figures import comparison_figure, save_figure
from holly.results.halfsets import halves_viewer_data
from holly.results.structure import headline
from holly.results.summary import read_summary_csv, write_summary_csv
from holly.results.viewer import VIEWER_CSS, VIEWER_JS, viewer_data, viewer_fragment
from holly.run.runfolder import RunFolder
from holly.units import model_unit_px

log = logging.getLogger(__name__)

# (column, label, format) of the table in the report, in this order; the CSV has every column.
TABLE_COLUMNS = (
    ("experiment", "experiment", "{}"),
    ("shape", "shape", "{}"),
    ("variant", "variant", "{}"),
    ("num_points", "points", "{:d}"),
    ("image_size", "image", "{}"),
    ("steps", "steps", "{:d}"),
    ("threads", "threads", "{:d}"),
    ("train_seconds", "train time", "{:.0f}"),
    ("final_test_loss", "held-out loss", "{:.4g}"),
    ("chamfer", "Chamfer", "{:.3f}"),
    ("hausdorff95", "Hausdorff-95", "{:.3f}"),
    ("random_init_chamfer", "random-init Chamfer", "{:.3f}"),
    ("blob_chamfer", "blob Chamfer", "{:.3f}"),
    ("floor_chamfer", "floor Chamfer", "{:.3f}"),
    ("chamfer_ratio_to_blob", "Chamfer / blob", "{:.2f}"),
    ("fscore", "F-score", "{:.2f}"),
    ("fscore_tight", "F-score at tau/2", "{:.2f}"),
    ("handedness", "handedness", "{}"),
    ("pose_error_amortised_median_deg", "median pose error, CNN", "{:.1f}"),
    ("pose_error_median_deg", "median pose error", "{:.1f}"),
    ("wrong_but_fits_fraction", "wrong but fits", "{:.2f}"),
    ("fsc_resolution_0143", "FSC 0.143 resolution", "{:.3f}"),
    ("fsc_resolution_05", "FSC 0.5 resolution", "{:.3f}"),
    ("fsc_resolution_0143_nm", "FSC 0.143", "{:.0f}"),
    ("halves_chamfer", "half-set Chamfer", "{:.3f}"),
    # the held-out views (evaluation.json "views", holly/results/views.py)
    ("views_tilt_p90_deg", "view tilt p90", "{:.0f}"),
    ("views_verdict", "views", "{}"),
    # the check of a known structure (holly evaluate --structure), where one was asked for
    ("structure_check", "structure check", "{}"),
    ("structure_edge_spread", "edge spread", "{:.3f}"),
    ("structure_edge_spread_floor", "spread floor (sampling)", "{:.3f}"),
    ("structure_pose_error_median_deg", "pose error vs model files", "{:.1f}"),
    ("structure_compactness", "compactness", "{:.2f}"),
    ("structure_radius_nm", "ring radius", "{:.1f}"),
    ("structure_radius_ratio", "radius / model", "{:.3f}"),
    ("structure_dominant_order", "dominant order", "{:d}"),
    ("structure_site_recall", "site recall (10 nm)", "{:.2f}"),
    ("structure_site_recall_2d", "site recall in plane", "{:.2f}"),
    ("structure_extent_nm", "extent", "{:.0f}"),
    ("structure_flatness", "flatness", "{:.2f}"),
)
# Shown in the table only when some experiment has a value (half-set runs are optional).
OPTIONAL_COLUMNS = {
    "pose_error_amortised_median_deg",
    "wrong_but_fits_fraction",
    "fsc_resolution_0143",
    "fsc_resolution_05",
    "fsc_resolution_0143_nm",
    "halves_chamfer",
    "views_tilt_p90_deg",
    "views_verdict",
    "structure_check",
    "structure_edge_spread",
    "structure_edge_spread_floor",
    "structure_pose_error_median_deg",
    "structure_compactness",
    "structure_radius_nm",
    "structure_radius_ratio",
    "structure_dominant_order",
    "structure_site_recall",
    "structure_site_recall_2d",
    "structure_extent_nm",
    "structure_flatness",
}
# The unit of every numeric column of summary.csv that has one (docs/architecture.md lists them).
# "model units": the frame of the point clouds, 1 unit = model_unit_px pixels (H/4); *_px and
# *_nm are the same distances converted (nm only where the image store records its pixel size).
DISTANCE_COLUMNS = ("chamfer", "hausdorff", "hausdorff95", "tau")
SUMMARY_UNITS = {
    **{c: "model units" for c in DISTANCE_COLUMNS},
    **{f"{c}_px": "px" for c in DISTANCE_COLUMNS},
    **{f"{c}_nm": "nm" for c in DISTANCE_COLUMNS},
    "blob_chamfer": "model units",
    "random_init_chamfer": "model units",
    "floor_chamfer": "model units",
    "model_unit_px": "px per model unit",
    "pixel_nm": "nm per px",
    "final_sigma_in": "px",
    "final_sigma_pred": "px",
    "train_seconds": "s",
    "wall_seconds": "s",
    "pose_error_median_deg": "degrees",
    "pose_error_mean_deg": "degrees",
    "pose_error_amortised_median_deg": "degrees (the CNN's best hypothesis, before refinement)",
    "pose_accuracy_30": "fraction of held-out images within 30 degrees",
    "wrong_but_fits_fraction": "fraction of held-out images off by > 30 deg that fit as well",
    "fscore_tight": "F-score at tau/2",
    "threads": "CPU threads",
    **{f"published_{c}": "model units" for c in ("chamfer", "hausdorff", "hausdorff95")},
    "published_blob_chamfer": "model units",
    "published_random_init_chamfer": "model units",
    "fsc_resolution_0143": "model units",
    "fsc_resolution_05": "model units",
    "fsc_resolution_0143_nm": "nm",
    "views_tilt_p90_deg": "degrees (90th percentile of the held-out views' tilt from their axis)",
    "structure_edge_mean_nm": "nm",
    "structure_radius_nm": "nm",
    "structure_extent_nm": "nm",
    "structure_extent2_nm": "nm",
    "structure_pose_error_median_deg": "degrees (held-out poses against each particle's model)",
    "structure_site_recall": "fraction of model sites with a point within 10 nm",
    "structure_site_recall_2d": "the same, in the model's plane",
    "fsc_resolution_05_nm": "nm",
    "halves_chamfer": "model units",
    "half1_gt_chamfer": "model units",
    "half2_gt_chamfer": "model units",
    "half1_gt_fsc_resolution_0143": "model units",
    "half2_gt_fsc_resolution_0143": "model units",
}
# Short unit labels under the report table's column names.
UNIT_LABELS = {"degrees": "°", "CPU threads": ""}

# The comparison with a published cloud (RUN/vs_published.json), when there is one.
PUBLISHED_COLUMNS = (
    ("experiment", "experiment", "{}"),
    ("published_chamfer", "Chamfer to published", "{:.3f}"),
    ("published_hausdorff95", "Hausdorff-95", "{:.3f}"),
    ("published_fscore", "F-score", "{:.2f}"),
    ("published_handedness", "handedness", "{}"),
    ("published_random_init_chamfer", "random-init Chamfer", "{:.3f}"),
    ("published_blob_chamfer", "blob Chamfer", "{:.3f}"),
    ("published_n_points", "published points", "{:d}"),
)
METRIC_KEYS = ("chamfer", "hausdorff", "hausdorff95", "precision", "recall", "fscore")
BASELINE_PREFIX = {"blob": "blob_", "random_init": "random_init_", "ground_truth_floor": "floor_"}
FIGURE_TITLES = {
    "loss": "Loss curves",
    "sigma": "Input sigma vs predicted sigma",
    "montage": "Inputs and renderings",
    "views": "Reconstruction and ground truth",
    "pose_error": "Pose error",
    "evolution": "Point cloud over training",
    "vs_published": "Our reconstruction and the published one",
    "fusion": "The run's particle fusion and its cloud (refine.fusion)",
    "fsc": "Half-set Fourier shell correlation",
}


def run_summary(run_dir: str | os.PathLike, name: str | None = None) -> dict:
    """One flat row describing a finished, evaluated run folder.

    Reads ``config.yaml`` (resolved config), ``metrics.csv`` (last row), ``evaluation.json``
    (``holly evaluate``) and ``provenance.json``. Metrics of the baselines get the prefixes
    ``blob_``, ``random_init_`` and ``floor_``; missing values are None.
    """
    run = Path(run_dir)
    rf = RunFolder(run)
    evaluation = rf.read_evaluation()
    cfg = rf.read_config(required=False)
    prov = rf.read_provenance()
    metrics = rf.read_metrics()
    last = metrics.iloc[-1] if not metrics.empty else pd.Series(dtype=float)
    # the losses of the amortised phase: refinement rows have another normalisation
    amortised = metrics[metrics["phase"] != "refine"] if "phase" in metrics else metrics
    last_loss = amortised.iloc[-1] if not amortised.empty else last
    data, render = cfg.get("data", {}), cfg.get("render", {})
    row = {
        "experiment": name or run.name,
        # real data: the image store stands where a simulated run names its shape
        "shape": data.get("store") if data.get("source") == "zarr" else data.get("shape"),
        "variant": cfg.get("variant"),
        "seed": cfg.get("seed"),
        "num_points": evaluation.get("n_points"),
        "n_ground_truth": evaluation.get("n_ground_truth"),
        "image_size": f"{render.get('height')}x{render.get('width')}" if render else None,
        # derived from train.steps where that is set (provenance's training_length)
        "epochs": (prov.get("training_length") or {}).get("epochs")
        or cfg.get("train", {}).get("epochs"),
        "steps": int(last["step"]) if "step" in last else None,
        "train_seconds": float(last["elapsed_s"]) if "elapsed_s" in last else None,
        "final_train_loss": float(last_loss["train_loss"]) if "train_loss" in last else None,
        "final_test_loss": float(last_loss["test_loss"]) if "test_loss" in last else None,
        "final_sigma_in": float(last["sigma_in"]) if "sigma_in" in last else None,
        "final_sigma_pred": float(last["sigma_pred_mean"]) if "sigma_pred_mean" in last else None,
        "device": prov.get("device"),
        "threads": _threads(prov),
        "git_commit": (prov.get("git") or {}).get("commit"),
        "tau": evaluation.get("tau"),
    }
    recon = evaluation.get("reconstruction") or {}
    row.update({k: recon.get(k) for k in METRIC_KEYS})
    row["handedness"] = recon.get("handedness")
    for key, prefix in BASELINE_PREFIX.items():
        base = evaluation.get(key) or {}
        row.update({prefix + k: base.get(k) for k in ("chamfer", "fscore")})
    row["chamfer_ratio_to_blob"] = evaluation.get("chamfer_ratio_to_blob")
    pose = evaluation.get("pose_error_deg") or {}
    row["pose_error_median_deg"] = pose.get("median")
    row["pose_error_mean_deg"] = pose.get("mean")
    row["pose_error_amortised_median_deg"] = pose.get("amortised_median")
    row["pose_accuracy_30"] = pose.get("accuracy_30")
    row["wrong_but_fits_fraction"] = pose.get("wrong_but_fits_fraction")
    usage = pose.get("head_usage")
    row["head_usage"] = " ".join(f"{u:.2f}" for u in usage) if usage else None
    row["fscore_tight"] = recon.get("fscore_tight")
    row["wall_seconds"] = _wall_seconds(prov)
    row.update(_converted_distances(row, rf.read_scale(), render))
    published = rf.read_vs_published()
    if published is not None:
        row.update(_published_row(published))
    row.update(_halfset_row(rf.read_halfsets() or {}))
    if evaluation.get("structure"):  # holly evaluate --structure: its headline numbers
        row.update(headline(evaluation["structure"]))
    row.update(_views_row(evaluation.get("views") or {}))
    return row


def _views_row(views: dict) -> dict:
    """The summary's columns of the ``views`` block: the held-out views' tilt spread, the
    verdict on what they resolve, and the pose prior the run kept to."""
    if not views:
        return {}
    prior = views.get("pose_prior") or {}
    return {
        "views_tilt_p90_deg": (views.get("tilt_deg") or {}).get("p90"),
        "views_verdict": views.get("verdict"),
        "views_unresolved_z": views.get("unresolved_z"),
        "pose_prior": prior.get("kind", "uniform"),
    }


def _halfset_row(comp: dict) -> dict:
    """``fsc_*`` and ``halves_*`` columns from the half-set comparison (all None without one).

    Resolutions in model units (``_nm``: nanometres, where the image store knows its pixel
    size); ``_limited`` is true when the FSC never fell below the threshold before the
    Gaussian's cutoff (the resolution is then at least as good as given).
    """
    row = {}
    for key in ("0143", "05"):
        for suffix in ("", "_nm", "_limited"):
            row[f"fsc_resolution_{key}{suffix}"] = comp.get(f"resolution_{key}{suffix}")
    row["halves_chamfer"] = comp.get("chamfer")
    truth = comp.get("vs_ground_truth") or {}
    for half, name in (("a", "half1"), ("b", "half2")):
        entry = truth.get(half) or {}
        row[f"{name}_gt_chamfer"] = entry.get("chamfer")
        row[f"{name}_gt_fsc_resolution_0143"] = entry.get("resolution_0143")
    return row


def _threads(prov: dict) -> int | None:
    """torch's CPU thread count of the run (older runs: from the device text "..., N threads")."""
    if isinstance(prov.get("threads"), int):
        return prov["threads"]
    match = re.search(r"(\d+) threads", str(prov.get("device") or ""))
    return int(match.group(1)) if match else None


def _converted_distances(row: dict, scale: dict | None, render: dict) -> dict:
    """``model_unit_px``, ``pixel_nm`` and the distance columns in px and nm (None if unknown).

    ``scale`` is :meth:`RunFolder.read_scale` (None: no physical scale known)."""
    px = model_unit_px(int(render["height"])) if render.get("height") else None
    nm = scale["nm_per_px"] if scale else None
    out = {"model_unit_px": px, "pixel_nm": nm}
    for col in DISTANCE_COLUMNS:
        value = row.get(col)
        known = value is not None and px is not None
        out[f"{col}_px"] = value * px if known else None
        out[f"{col}_nm"] = value * px * nm if known and nm is not None else None
    return out


def _wall_seconds(prov: dict) -> float | None:
    """Seconds from the start of training to its end, from ``provenance.json`` (None if unknown).

    Includes data preparation and the final test pass, unlike ``train_seconds``; after a resume
    it counts from the resumed start only.
    """
    try:
        start = dt.datetime.fromisoformat(prov["created"])
        end = dt.datetime.fromisoformat(prov["finished"])
    except (KeyError, TypeError, ValueError):
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        return None
    return (end - start).total_seconds()


def _published_row(comparison: dict) -> dict:
    """``published_*`` columns: the scores of the run against a published cloud."""
    recon = comparison.get("reconstruction") or {}
    row = {f"published_{k}": recon.get(k) for k in METRIC_KEYS}
    row["published_handedness"] = recon.get("handedness")
    row["published_n_points"] = comparison.get("n_ground_truth")
    row["published_cloud"] = comparison.get("ground_truth")
    for key, prefix in BASELINE_PREFIX.items():
        base = comparison.get(key) or {}
        row[f"published_{prefix}chamfer"] = base.get("chamfer")
    return row


def summary_table(runs: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """One row per experiment (``name -> run folder``), in the given order."""
    if not runs:
        raise HollyError("no runs to summarise")
    return pd.DataFrame([run_summary(path, name) for name, path in runs.items()])


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        if spec == "{:d}":
            return f"{int(value):d}"
        return spec.format(value)
    except (TypeError, ValueError):
        return html.escape(str(value))


def table_html(summary: pd.DataFrame, columns=TABLE_COLUMNS) -> str:
    """The summary as an HTML ``<table>`` with the columns of :data:`TABLE_COLUMNS`."""
    cols = [
        (c, label, spec)
        for c, label, spec in columns
        if c in summary and (c not in OPTIONAL_COLUMNS or summary[c].notna().any())
    ]
    head = "".join(
        f'<th scope="col"{_align(spec)}>{html.escape(label)}{_unit_label(c)}</th>'
        for c, label, spec in cols
    )
    rows = []
    for rec in summary.to_dict("records"):
        cells = "".join(
            f"<td{_align(spec)}>{html.escape(_fmt(rec.get(c), spec))}</td>" for c, _, spec in cols
        )
        rows.append(f"<tr>{cells}</tr>")
    # the wrapper scrolls sideways on its own, so a wide table never widens the page
    return (
        f'<div class="holly-table-wrap" tabindex="0" role="region" aria-label="summary table">'
        f'<table class="holly-summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _align(spec: str) -> str:
    """Numbers right-aligned (so their digits line up), text left-aligned."""
    return ' class="num"' if spec != "{}" else ' class="text"'


def _unit_label(column: str) -> str:
    unit = SUMMARY_UNITS.get(column)
    if not unit:
        return ""
    short = UNIT_LABELS.get(unit, unit)
    return f'<span class="unit">{html.escape(short)}</span>' if short else ""


TABLE_CSS = """
.holly-table-wrap{max-width:100%;overflow-x:auto;margin:0.5em 0;border:1px solid #eee}
table.holly-summary{border-collapse:collapse;font-size:13px;white-space:nowrap}
table.holly-summary th,table.holly-summary td{border-bottom:1px solid #ddd;padding:3px 8px}
table.holly-summary .num{text-align:right;font-variant-numeric:tabular-nums}
table.holly-summary .text{text-align:left}
table.holly-summary thead th{border-bottom:2px solid #888;vertical-align:bottom;
  white-space:normal;min-width:5em}
table.holly-summary th .unit{display:block;font-weight:normal;color:#666;font-size:11px}
table.holly-summary tbody tr:nth-child(even){background:#fafafa}
table.holly-summary th:first-child,table.holly-summary td:first-child{position:sticky;left:0;
  background:#fff}
"""


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)  # results are meant to be shared
    return path


def write_summary(
    runs: dict[str, str | os.PathLike],
    csv_path: str | os.PathLike,
    chart: str | os.PathLike | None = None,
    table: str | os.PathLike | None = None,
    dpi: int = 110,
) -> pd.DataFrame:
    """Write ``summary.csv`` and, if asked, the comparison chart and a standalone HTML table."""
    summary = summary_table(runs)
    write_summary_csv(csv_path, summary)
    if chart:
        save_figure(comparison_figure(summary), chart, dpi)
    if table:
        _write_text(
            table,
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>holly summary</title><style>body{{font:14px system-ui,"
            f"sans-serif}}{TABLE_CSS}</style></head><body>"
            f"{table_html(summary)}</body></html>\n",
        )
    log.info("summarised %d experiments into %s", len(summary), csv_path)
    return summary


def caption_html(captions_dir: str | os.PathLike | None, key: str) -> str:
    """``captions_dir/<key>.rst`` rendered to HTML (docutils), or "" if there is no such file."""
    if captions_dir is None:
        return ""
    path = Path(captions_dir) / f"{key}.rst"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    try:
        from docutils.core import publish_parts

        settings = {"report_level": 5, "halt_level": 5}
        try:  # docutils >= 0.22 takes the writer's name as `writer`
            return publish_parts(text, writer="html", settings_overrides=settings)["fragment"]
        except (TypeError, AttributeError):
            return publish_parts(text, writer_name="html", settings_overrides=settings)["fragment"]
    except ImportError:  # docutils comes with Snakemake; plain paragraphs otherwise
        paras = [p.strip() for p in text.split("\n\n") if p.strip()]
        return "".join(f"<p>{html.escape(p)}</p>" for p in paras)


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(
        path.suffix.lower()
    )
    if mime is None:
        raise HollyError(f"{path}: cannot embed a {path.suffix} file in the report")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figure_block(path: Path, title: str, caption: str) -> str:
    return (
        f'<figure><img alt="{html.escape(title)}" src="{_data_uri(path)}">'
        f"<figcaption><b>{html.escape(title)}.</b> {caption}</figcaption></figure>"
    )


REPORT_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:0.2em;margin-top:2em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#444;max-width:900px}figcaption p{display:inline;margin:0}
nav a{margin-right:1em}.meta{color:#666;font-size:12px}code{background:#f4f4f4;padding:0 3px}
"""


def build_report(
    runs: dict[str, str | os.PathLike],
    summary_csv: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chart: str | os.PathLike | None = None,
    figures_dir: str = "figures",
    fig_format: str = "png",
    captions_dir: str | os.PathLike | None = None,
    title: str = "holly results",
    max_snapshots: int = 40,
) -> Path:
    """Write one self-contained HTML report of all experiments.

    Parameters
    ----------
    runs : dict
        ``experiment name -> run folder``; figures are read from ``<run>/<figures_dir>/`` (the
        files of :func:`holly.results.figures.run_figures`).
    summary_csv : path-like
        The table of :func:`write_summary`.
    chart : path-like, optional
        The comparison chart.
    captions_dir : path-like, optional
        Folder of RST captions named ``<figure>.rst``, ``comparison.rst``, ``summary.rst``,
        ``viewer.rst`` and ``workflow.rst`` (the introduction); missing ones are left out.
    """
    summary = read_summary_csv(summary_csv)
    if summary is None:
        raise HollyError(f"{summary_csv} not found; run `holly summarise` first")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">holly {__version__}, report written '
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        caption_html(captions_dir, "workflow"),
    ]
    nav = ['<a href="#comparison">comparison</a>'] + [
        f'<a href="#exp-{html.escape(n)}">{html.escape(n)}</a>' for n in runs
    ]
    parts.append(f"<nav>{''.join(nav)}</nav>")
    parts.append('<h2 id="comparison">Experiments compared</h2>')
    parts.append(table_html(summary) + caption_html(captions_dir, "summary"))
    if chart:
        parts.append(
            _figure_block(Path(chart), "Metrics compared", caption_html(captions_dir, "comparison"))
        )
    if "published_chamfer" in summary and summary["published_chamfer"].notna().any():
        published = summary[summary["published_chamfer"].notna()]
        parts.append("<h3>Compared with the published reconstruction</h3>")
        parts.append(
            table_html(published, PUBLISHED_COLUMNS) + caption_html(captions_dir, "published")
        )
    for i, (name, run_dir) in enumerate(runs.items()):
        run = Path(run_dir)
        parts.append(f'<h2 id="exp-{html.escape(name)}">{html.escape(name)}</h2>')
        row = summary[summary["experiment"] == name]
        if not row.empty:
            r = row.iloc[0]
            parts.append(
                f'<p class="meta">data {html.escape(str(r.get("shape")))}, variant '
                f"{html.escape(str(r.get('variant')))}, {_fmt(r.get('steps'), '{:d}')} "
                f"steps on {html.escape(str(r.get('device')))}, held-out loss "
                f"{_fmt(r.get('final_test_loss'), '{:.4g}')}</p>"
            )
        parts.append("<h3>3D viewer</h3>" + caption_html(captions_dir, "viewer"))
        parts.append(viewer_fragment(viewer_data(run, max_snapshots, name), f"{i}-{name}"))
        for key in RUN_FIGURES:
            path = run / figures_dir / f"{key}.{fig_format}"
            if not path.is_file():
                raise HollyError(f"{path} not found; run `holly figures {run}` first")
            parts.append(_figure_block(path, FIGURE_TITLES[key], caption_html(captions_dir, key)))
        if RunFolder(run).halfsets.is_file():
            parts.append(_halfset_block(run, name, i, figures_dir, fig_format, captions_dir))
        for key in EXTRA_FIGURES:  # drawn only when the workflow asked for them
            path = run / figures_dir / f"{key}.{fig_format}"
            if path.is_file():
                parts.append(
                    _figure_block(path, FIGURE_TITLES[key], caption_html(captions_dir, key))
                )
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{REPORT_CSS}{TABLE_CSS}{VIEWER_CSS}</style></head><body>\n"
        + "\n".join(p for p in parts if p)
        + f"\n<script>{VIEWER_JS}</script>\n</body></html>\n"
    )
    out = _write_text(out, page)
    log.info(
        "wrote the report of %d experiments to %s (%.1f MB)",
        len(runs),
        out,
        out.stat().st_size / 1e6,
    )
    return out


def _halfset_block(
    run: Path, name: str, i: int, figures_dir: str, fig_format: str, captions_dir
) -> str:
    """The half-set section of one experiment: resolution, FSC curve, the halves in 3D."""
    comp = RunFolder(run).read_halfsets()
    nm = comp.get("resolution_0143_nm")

    def res(key):
        limited = "≤ " if comp.get(f"resolution_{key}_limited") else ""
        return f"{limited}{comp[f'resolution_{key}']:.3g}"

    text = (
        f'<h3>Half-set validation</h3><p class="meta">two halves of the particles, trained '
        f"apart: FSC resolution {res('0143')} (0.143) and {res('05')} (0.5) model units"
        + (f" ({nm:.0f} nm at 0.143)" if nm else "")
        + f"; Chamfer between the halves {comp['chamfer']:.3f}, sigma {comp['sigma']:.3g} "
        f"units ({html.escape(str(comp.get('handedness')))} alignment)</p>"
    )
    parts = [text]
    path = run / figures_dir / f"fsc.{fig_format}"
    if path.is_file():
        parts.append(_figure_block(path, FIGURE_TITLES["fsc"], caption_html(captions_dir, "fsc")))
    data = halves_viewer_data(run, f"{name}: half 2 aligned onto half 1")
    if data is not None:
        parts.append(viewer_fragment(data, f"{i}-{name}-halves"))
    return "\n".join(parts)


def parse_runs(items: list[str]) -> dict[str, Path]:
    """``["name=RUN_DIR", ...]`` (or bare folders, named by their folder) as an ordered dict."""
    runs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        if not name or not path:
            raise HollyError(f"--run {item!r}: expected NAME=RUN_DIR")
        if name in runs:
            raise HollyError(f"--run: experiment {name!r} given twice")
        runs[name] = Path(path)
    return runs
