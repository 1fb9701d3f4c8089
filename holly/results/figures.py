"""Figures of one run and across runs, in one shared matplotlib style.

Each ``*_figure`` function takes plain data (a metrics table, arrays of points or images) and
returns a :class:`matplotlib.figure.Figure`, so it can be tested and reused without files.
:func:`run_figures` reads a run folder (docs/architecture.md) and saves the per-run set:

=================  ===============================================================
``loss``           train and test loss against step (log scale)
``sigma``          curriculum sigma of the inputs and the CNN's mean predicted sigma
``montage``        input images next to the renderings at the end of training
``views``          reconstruction in three orthogonal views over the aligned ground truth
``pose_error``     histogram of per-image rotation errors on the test set
=================  ===============================================================

Two more, on request (:func:`extra_figures`): ``evolution``, the cloud at several steps of
training (as in the paper's figures), and ``vs_published``, the reconstruction next to a
published cloud it was aligned to (``holly evaluate --ground-truth PUBLISHED --aligned ...``).

Distances are in model units (1 unit = H/4 pixels), sigma in pixels, angles in degrees.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (headless runs, clusters)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from holly.atomic import atomic_path  # noqa: E402
from holly.data.fusionrecord import fusion_quality, fusion_start, read_fusion  # noqa: E402
from holly.data.pointio import read_points  # noqa: E402
from holly.errors import HollyError  # noqa: E402
from holly.results.evaluate import pose_error, symmetry_order  # noqa: E402
from holly.results.figurekeys import EXTRA_FIGURES, RUN_FIGURES  # noqa: E402
from holly.results.style import CYCLE, RECON_COLOUR, TRUTH_COLOUR  # noqa: E402, F401  (re-exported)
from holly.results.viewer import viewer_data  # noqa: E402
from holly.results.views import held_out_tilts  # noqa: E402
from holly.run.runfolder import (  # noqa: E402
    RunFolder,
    nm_per_model_unit,
    read_json,
    read_metrics_file,
)

log = logging.getLogger(__name__)

STYLE = {
    "figure.dpi": 110,
    "figure.facecolor": "white",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "image.cmap": "magma",
    "axes.prop_cycle": matplotlib.cycler(color=list(CYCLE)),
}
VIEWS = (("x", "y", 0, 1), ("x", "z", 0, 2), ("y", "z", 1, 2))


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The shared style of every holly figure (a matplotlib rc context)."""
    with plt.rc_context(STYLE):
        yield


def _new(ncols: int = 1, nrows: int = 1, size=(5.0, 3.2), **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def check_figure_path(path: str | os.PathLike, option: str = "--figure") -> Path:
    """``path`` if its suffix names a figure format (:data:`FIGURE_SUFFIXES`), else a
    HollyError naming ``option``: checked before anything is computed or written."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise HollyError(
            f"{option} {path}: unknown figure format {path.suffix or '(no suffix)'!r}; "
            f"name a {', '.join(FIGURE_SUFFIXES)} file"
        )
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically; the format follows the suffix (``.png``, ``.svg``, ``.pdf``)."""
    path = check_figure_path(path, "figure")
    with atomic_path(path) as tmp, style():
        fig.savefig(
            tmp,
            format=path.suffix.lstrip(".").lower(),
            dpi=dpi,
            metadata={"Software": "holly"} if path.suffix.lower() == ".png" else None,
        )
    return path


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def loss_figure(metrics: pd.DataFrame, title: str = "") -> Figure:
    """Train and test loss against step.

    Parameters
    ----------
    metrics : DataFrame
        ``metrics.csv`` of a run: columns ``step``, ``train_loss``, ``test_loss`` (and ``epoch``).
    """
    with style():
        fig, axes = _new()
        ax = axes[0, 0]
        if metrics.empty:
            _empty(ax, "no metric rows yet")
            return fig
        refine_rows = metrics["phase"] == "refine" if "phase" in metrics else None
        if refine_rows is not None and refine_rows.any():
            # the refinement's loss is per-image normalised: another scale, so only mark it
            ax.axvline(
                metrics.loc[~refine_rows, "step"].max(),
                color="0.5",
                linestyle=":",
                label="pose refinement starts",
            )
            metrics = metrics[~refine_rows]
        ax.plot(metrics["step"], metrics["train_loss"], label="train", color=RECON_COLOUR)
        ax.plot(
            metrics["step"],
            metrics["test_loss"],
            label="test (held-out particles)",
            color=TRUTH_COLOUR,
            linestyle="--",
        )
        if (metrics[["train_loss", "test_loss"]] > 0).all().all():
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (normalised L1)")
        ax.set_title(title or "loss")
        handles, labels = ax.get_legend_handles_labels()
        if "sigma_in" in metrics:
            # the curriculum's sigma on a second axis: the loss rises as sigma falls (sharper
            # images), which is expected and not divergence
            _sigma_axis(ax, metrics, handles, labels, ":")
        ax.legend(handles, labels)
    return fig


def _sigma_axis(ax, rows: pd.DataFrame, handles: list, labels: list, linestyle: str) -> None:
    """The curriculum's input sigma against step on ``ax``'s right axis, added to the legend."""
    sig = ax.twinx()
    (line,) = sig.plot(
        rows["step"], rows["sigma_in"], color="0.6", linewidth=1, linestyle=linestyle
    )
    sig.set_ylabel("input sigma (px)", color="0.45")
    sig.tick_params(axis="y", colors="0.45")
    handles.append(line)
    labels.append("input sigma (right axis)")


def sigma_figure(metrics: pd.DataFrame, title: str = "") -> Figure:
    """Curriculum sigma of the input images and the CNN's mean predicted sigma, in pixels."""
    with style():
        fig, axes = _new()
        ax = axes[0, 0]
        if metrics.empty:
            _empty(ax, "no metric rows yet")
            return fig
        ax.plot(
            metrics["step"], metrics["sigma_in"], label="input (curriculum)", color=TRUTH_COLOUR
        )
        if "sigma_pred_mean" in metrics and metrics["sigma_pred_mean"].notna().any():
            ax.plot(
                metrics["step"],
                metrics["sigma_pred_mean"],
                label="predicted (mean)",
                color=RECON_COLOUR,
                linestyle="--",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("sigma (pixels)")
        ax.set_title(title or "input sigma vs predicted sigma")
        ax.legend()
    return fig


def montage_figure(
    inputs: np.ndarray, renderings: np.ndarray, n: int = 8, title: str = ""
) -> Figure:
    """Input images (top row) over the renderings of the same images (bottom row).

    Parameters
    ----------
    inputs, renderings : ndarray [K, H, W]
        Normalised images; the first ``min(n, K)`` pairs are shown, each pair on one colour scale.
    """
    inputs, renderings = np.asarray(inputs), np.asarray(renderings)
    if inputs.shape != renderings.shape or inputs.ndim != 3:
        raise HollyError(
            f"inputs {inputs.shape} and renderings {renderings.shape} must both be [K, H, W]"
        )
    k = max(1, min(n, len(inputs)))
    with style():
        fig, axes = _new(k, 2, size=(1.3 * k + 0.6, 3.0))
        for i in range(k):
            for row, (images, label) in enumerate(((inputs, "input"), (renderings, "rendering"))):
                ax = axes[row, i]
                if i < len(images):
                    hi = max(float(inputs[i].max()), float(renderings[i].max()), 1e-12)
                    ax.imshow(images[i], vmin=0.0, vmax=hi, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if i == 0:
                    ax.set_ylabel(label)
        fig.suptitle(title or "inputs and renderings at the end of training")
    return fig


def views_figure(
    points: np.ndarray, ground_truth: np.ndarray | None = None, title: str = ""
) -> Figure:
    """A cloud in three orthogonal projections (x-y, x-z, y-z), over the ground truth if given.

    Parameters
    ----------
    points : ndarray [N, 3]
        The reconstruction, already aligned to ``ground_truth`` (``aligned_points.ply``).
    ground_truth : ndarray [M, 3], optional
    """
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    clouds = [points] + (
        [np.asarray(ground_truth, dtype=float)] if ground_truth is not None else []
    )
    allpts = np.concatenate(clouds)
    lo, hi = allpts.min(0), allpts.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6) * 1.08
    with style():
        fig, axes = _new(3, 1, size=(9.0, 3.2))
        for ax, (a, b, i, j) in zip(axes[0], VIEWS, strict=True):
            if ground_truth is not None:
                ax.scatter(
                    ground_truth[:, i],
                    ground_truth[:, j],
                    s=6,
                    color=TRUTH_COLOUR,
                    alpha=0.45,
                    linewidths=0,
                    label="ground truth",
                )
            ax.scatter(
                points[:, i],
                points[:, j],
                s=9,
                color=RECON_COLOUR,
                alpha=0.9,
                linewidths=0,
                label="reconstruction",
            )
            ax.set_xlim(centre[i] - half, centre[i] + half)
            ax.set_ylim(centre[j] - half, centre[j] + half)
            ax.set_aspect("equal")
            ax.set_xlabel(a)
            ax.set_ylabel(b)
            ax.set_title(f"{a}-{b} view")
        axes[0, 0].legend(loc="upper left", fontsize=7, markerscale=2)
        fig.suptitle(title or "reconstruction, three orthogonal views")
    return fig


def pose_error_figure(errors_deg: np.ndarray | None, title: str = "") -> Figure:
    """Histogram of per-image rotation errors (degrees, after removing the global gauge)."""
    with style():
        fig, axes = _new()
        ax = axes[0, 0]
        if errors_deg is None or len(errors_deg) == 0:
            _empty(ax, "no ground-truth poses (not a simulated run)")
            return fig
        errors_deg = np.asarray(errors_deg, dtype=float)
        ax.hist(errors_deg, bins=np.linspace(0, 180, 37), color=RECON_COLOUR, alpha=0.85)
        med = float(np.median(errors_deg))
        ax.axvline(med, color="0.2", linestyle="--", label=f"median {med:.1f}°")
        ax.set_xlim(0, 180)
        ax.set_xlabel("rotation error (degrees)")
        ax.set_ylabel("test images")
        ax.set_title(title or "pose error on held-out images")
        ax.legend()
    return fig


def view_tilts_figure(tilts: dict[str, np.ndarray], title: str = "") -> Figure:
    """Histogram of the held-out views' out-of-plane tilts (degrees, :mod:`holly.results.views`),
    with the density of uniform 3D views (``sin t``) for reference; ``tilts``: name -> ``[T]``."""
    with style():
        fig, axes = _new()
        ax = axes[0, 0]
        if not tilts:
            _empty(ax, "no held-out poses (test_poses.npz)")
            return fig
        bins = np.linspace(0, 90, 19)
        for (name, t), colour in zip(tilts.items(), (RECON_COLOUR, TRUTH_COLOUR), strict=False):
            ax.hist(t, bins=bins, density=True, alpha=0.6, color=colour, label=name)
        grid = np.linspace(0, 90, 91)
        ax.plot(
            grid,
            np.sin(np.radians(grid)) * np.pi / 180,
            color="0.3",
            linestyle="--",
            label="uniform 3D views",
        )
        ax.set_xlim(0, 90)
        ax.set_xlabel("tilt from the views' axis (degrees)")
        ax.set_ylabel("density")
        ax.set_title(title or "viewing directions of held-out images")
        ax.legend()
    return fig


def fsc_figure(comparison: dict, title: str = "") -> Figure:
    """FSC of the two half-set reconstructions against spatial frequency, with 0.143 and 0.5.

    Parameters
    ----------
    comparison : dict
        The ``halfsets.json`` content of :func:`holly.results.halfsets.compare_runs`; with ground
        truth, each half's FSC against the ground-truth density is drawn too (dashed).
    """
    with style():
        fig, axes = _new(size=(5.6, 3.4))
        ax = axes[0, 0]
        fsc = comparison["fsc"]
        nm = fsc.get("nm_per_unit")
        unit = "nm" if nm else "model units"
        scale = nm or 1.0

        def draw(entry, label, **kw):
            f = np.asarray(entry["curve"]["frequency"], float)
            ax.plot(f, entry["curve"]["fsc"], label=label, **kw)

        draw(fsc, "half 1 vs half 2", color=RECON_COLOUR, lw=1.8)
        truth = comparison.get("vs_ground_truth") or {}
        for k, (_half, entry) in enumerate(sorted(truth.items())):
            draw(
                entry["fsc"],
                f"half {k + 1} vs ground truth",
                color=TRUTH_COLOUR,
                lw=1.0,
                ls=("--", ":")[k % 2],
            )
        for t, style_ in ((0.143, "-"), (0.5, "--")):
            res = comparison[f"resolution_{str(t).replace('.', '')}"]
            limited = comparison[f"resolution_{str(t).replace('.', '')}_limited"]
            ax.axhline(t, color="0.5", lw=0.8, ls=style_)
            ax.axvline(1.0 / res, color="0.3", lw=0.8, ls=style_)
            ax.annotate(
                f"FSC {t:g}: {'≤ ' if limited else ''}{res * scale:.3g} {unit}",
                (1.0 / res, t),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
            )
        ax.axvline(fsc["max_frequency"], color="0.7", lw=0.8, ls=":")
        ax.set_xlim(0, fsc["max_frequency"] * 1.02)
        ax.set_ylim(-0.2, 1.05)
        ax.set_xlabel(
            "spatial frequency (1 / model unit)" + (f"; 1 unit = {nm:.3g} nm" if nm else "")
        )
        ax.set_ylabel("Fourier shell correlation")
        ax.set_title(title or f"half-set FSC (sigma {comparison['sigma']:.3g} units)")
        ax.legend(loc="upper right", fontsize=8)
    return fig


COMPARISON_METRICS = (
    ("chamfer", "Chamfer distance (model units, lower is better)"),
    ("fscore", "F-score at tau (higher is better)"),
    ("pose_error_median_deg", "median pose error (degrees)"),
)
BASELINES = (
    ("", "reconstruction"),
    ("blob_", "blob baseline"),
    ("random_init_", "random initial cloud"),
    ("floor_", "ground-truth floor"),
)


def comparison_figure(summary: pd.DataFrame) -> Figure:
    """Grouped bars of the main metrics per experiment, with the evaluation baselines.

    Parameters
    ----------
    summary : DataFrame
        One row per experiment as written by :func:`holly.results.report.summary_table`.
    """
    names = list(summary["experiment"]) if not summary.empty else []
    with style():
        fig, axes = _new(len(COMPARISON_METRICS), 1, size=(3.4 * len(COMPARISON_METRICS), 3.4))
        x = np.arange(len(names))
        for ax, (metric, label) in zip(axes[0], COMPARISON_METRICS, strict=True):
            series = [(p + metric, lab) for p, lab in BASELINES if p + metric in summary]
            series = [(c, lab) for c, lab in series if summary[c].notna().any()]
            if not names or not series:
                _empty(ax, f"no {metric} values")
                continue
            width = 0.8 / len(series)
            for k, (col, lab) in enumerate(series):
                ax.bar(
                    x + (k - (len(series) - 1) / 2) * width,
                    summary[col].astype(float).fillna(0.0),
                    width,
                    label=lab,
                )
            ax.set_xticks(x, names, rotation=20, ha="right")
            ax.set_title(label, fontsize=9)
            ax.grid(axis="x", visible=False)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if handles:  # below the charts, so no bar is hidden
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
        fig.suptitle("experiments compared")
    return fig


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """``metrics.csv`` (the file, or a run folder's) as a DataFrame of numbers.

    See :meth:`holly.run.runfolder.RunFolder.read_metrics`: a clear error if it is unusable.
    """
    path = Path(path)
    return RunFolder(path).read_metrics() if path.is_dir() else read_metrics_file(path)


def pose_errors(run_dir: str | os.PathLike) -> np.ndarray | None:
    """Per-image pose errors (degrees) of a run's ``test_poses.npz``; None if it has none."""
    poses = RunFolder(run_dir).read_test_poses()
    if poses is None or "rot_true" not in poses:  # real data
        return None
    # the same symmetry rule as `holly evaluate`'s table (cep152: modulo its 9-fold symmetry)
    try:
        order = symmetry_order(Path(run_dir))
    except HollyError as exc:  # figures need no config; the table (evaluate) will say so
        log.warning("%s; pose errors without symmetry", exc)
        order = 1
    try:
        return pose_error(poses["rot_true"], poses["rot_pred"], order).errors_deg
    except ValueError as exc:
        raise HollyError(f"{RunFolder(run_dir).test_poses}: {exc}") from None


def run_figures(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    fmt: str = "png",
    dpi: int = 110,
    montage_images: int = 8,
    title: str | None = None,
) -> list[Path]:
    """Write the per-run figures (:data:`RUN_FIGURES`) of a run folder into ``out_dir``.

    Uses ``aligned_points.ply`` (from ``holly evaluate``) when present, so the reconstruction
    is shown in the ground truth's frame; otherwise the raw ``points.ply`` alone.

    Returns
    -------
    list of Path
        The files written, ``out_dir/<name>.<fmt>`` in the order of :data:`RUN_FIGURES`.
    """
    run, out = Path(run_dir), Path(out_dir)
    rf = RunFolder(run)
    if not rf.is_finished():
        raise HollyError(f"{rf.points} not found: the run has not finished (`holly train`)")
    name = title or run.name
    metrics = rf.read_metrics()
    samples = rf.read_samples()
    inputs, renderings = samples["inputs"], samples["renderings"]
    aligned, truth = rf.aligned_points, rf.ground_truth
    if aligned.is_file() and truth.is_file():
        points, gt, frame = rf.read_cloud(aligned), rf.read_cloud(truth), "aligned to ground truth"
    else:
        points, gt, frame = rf.read_cloud(rf.points), None, "not aligned"
    figures = {
        "loss": loss_figure(metrics, f"{name}: loss"),
        "sigma": sigma_figure(metrics, f"{name}: input sigma vs predicted sigma"),
        "montage": montage_figure(
            inputs, renderings, montage_images, f"{name}: inputs (top) and renderings (bottom)"
        ),
        "views": views_figure(points, gt, f"{name}: reconstruction ({frame})"),
        "pose_error": pose_error_figure(pose_errors(run), f"{name}: pose error, test images"),
    }
    paths = []
    for key in RUN_FIGURES:
        paths.append(save_figure(figures[key], out / f"{key}.{fmt}", dpi))
    log.info("wrote %d figures of %s to %s", len(paths), run, out)
    return paths


def evolution_figure(
    snapshots: list[tuple[int, np.ndarray]],
    ground_truth: np.ndarray | None = None,
    title: str = "",
    axes_ij: tuple[int, int] = (0, 1),
) -> Figure:
    """The point cloud at several steps of training, one projection per panel.

    Parameters
    ----------
    snapshots : list of (step, ndarray [N, 3])
        Clouds in training order (step 0 = the random initial cloud), all in one frame.
    ground_truth : ndarray [M, 3], optional
        Drawn faintly behind every panel (in the same frame).
    axes_ij : (int, int)
        The coordinates shown (default x-y).
    """
    if not snapshots:
        raise HollyError("no snapshots to draw")
    i, j = axes_ij
    clouds = [np.asarray(xyz, float).reshape(-1, 3) for _, xyz in snapshots]
    ref = clouds[-1] if ground_truth is None else np.asarray(ground_truth, float)
    allpts = np.concatenate([clouds[-1], ref])
    lo, hi = allpts.min(0), allpts.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6) * 1.15
    k = len(clouds)
    ncols = min(k, 6)
    nrows = -(-k // ncols)
    with style():
        fig, axes = _new(ncols, nrows, size=(1.9 * ncols + 0.4, 2.0 * nrows + 0.5))
        for n, ax in enumerate(axes.flat):
            if n >= k:
                ax.set_axis_off()
                continue
            if ground_truth is not None:
                ax.scatter(ref[:, i], ref[:, j], s=3, color=TRUTH_COLOUR, alpha=0.3, linewidths=0)
            xyz = clouds[n]
            ax.scatter(xyz[:, i], xyz[:, j], s=4, color=RECON_COLOUR, linewidths=0)
            ax.set_xlim(centre[i] - half, centre[i] + half)
            ax.set_ylim(centre[j] - half, centre[j] + half)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            step = snapshots[n][0]
            ax.set_title("initial" if n == 0 and step == 0 else f"step {step}", fontsize=8)
        fig.suptitle(title or "point cloud over training")
    return fig


def learning_curve_figure(curves: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Chamfer/blob and F-score at tau/2 of the training snapshots against step.

    Parameters
    ----------
    curves : dict of name -> DataFrame
        ``snapshot_scores.csv`` of one or more runs (``holly evaluate RUN --snapshots``):
        columns ``step``, ``sigma_in``, ``chamfer_ratio_to_blob``, ``fscore_tight``. The first
        run's sigma curriculum is drawn on the right axis of the upper panel.
    """
    if not curves:
        raise HollyError("no learning curves to draw")
    with style():
        fig, axes = _new(1, 2, size=(5.2, 5.0), sharex=True)
        top, bottom = axes[0, 0], axes[1, 0]
        for colour, (name, rows) in zip(CYCLE, curves.items(), strict=False):
            top.plot(rows["step"], rows["chamfer_ratio_to_blob"], color=colour, label=name)
            bottom.plot(rows["step"], rows["fscore_tight"], color=colour, label=name)
        top.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
        top.set_ylabel("Chamfer / blob (lower is better)")
        top.set_ylim(bottom=0)
        bottom.set_ylabel("F-score at tau/2")
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("step")
        handles, labels = top.get_legend_handles_labels()
        first = next(iter(curves.values()))
        if "sigma_in" in first and first["sigma_in"].notna().any():
            _sigma_axis(top, first, handles, labels, "--")
        top.legend(handles, labels, fontsize=8)
        top.set_title(title or "reconstruction over training (snapshots)")
    return fig


def read_snapshot_scores(run_dir: str | os.PathLike) -> pd.DataFrame:
    """``RUN/snapshot_scores.csv``, with a clear error when it has not been written."""
    path = RunFolder(run_dir).snapshot_scores
    if not path.is_file():
        raise HollyError(f"{path} does not exist: run `holly evaluate {run_dir} --snapshots` first")
    try:
        rows = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HollyError(
            f"{path} is unreadable ({exc}): re-run `holly evaluate --snapshots`"
        ) from None
    missing = {"step", "chamfer_ratio_to_blob", "fscore_tight"} - set(rows.columns)
    if missing:
        raise HollyError(
            f"{path} lacks the columns {sorted(missing)}: re-run `holly evaluate --snapshots`"
        )
    return rows


def published_figure(
    ours: np.ndarray, published: np.ndarray, scores: dict | None = None, title: str = ""
) -> Figure:
    """Our reconstruction (aligned onto the published cloud) and the published cloud, side by side.

    Parameters
    ----------
    ours : ndarray [N, 3]
        The reconstruction after mirror-aware alignment onto ``published``.
    published : ndarray [M, 3]
    scores : dict, optional
        The ``reconstruction`` entry of the comparison's evaluation JSON (chamfer, hausdorff95,
        fscore, handedness), shown in the title.
    """
    ours, published = np.asarray(ours, float), np.asarray(published, float)
    allpts = np.concatenate([ours, published])
    lo, hi = allpts.min(0), allpts.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6) * 1.08
    rows = (("ours (aligned)", ours, RECON_COLOUR), ("published", published, TRUTH_COLOUR))
    with style():
        fig, axes = _new(3, 2, size=(8.4, 5.8))
        for r, (label, xyz, colour) in enumerate(rows):
            for c, (a, b, i, j) in enumerate(VIEWS):
                ax = axes[r, c]
                ax.scatter(xyz[:, i], xyz[:, j], s=7, color=colour, alpha=0.85, linewidths=0)
                ax.set_xlim(centre[i] - half, centre[i] + half)
                ax.set_ylim(centre[j] - half, centre[j] + half)
                ax.set_aspect("equal")
                ax.set_xlabel(a)
                ax.set_ylabel(f"{label}\n{b}" if c == 0 else b)
                ax.set_title(f"{a}-{b} view" if r == 0 else "")
        line = ""
        if scores:
            line = (
                f"\nChamfer {scores.get('chamfer', float('nan')):.3f}, "
                f"Hausdorff-95 {scores.get('hausdorff95', float('nan')):.3f}, "
                f"F-score {scores.get('fscore', float('nan')):.2f}, {scores.get('handedness')}"
            )
        fig.suptitle((title or "reconstruction vs published cloud") + line)
    return fig


def extra_figures(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    names: list[str],
    fmt: str = "png",
    dpi: int = 110,
    title: str | None = None,
    published: str | os.PathLike | None = None,
    aligned: str | os.PathLike | None = None,
    comparison: str | os.PathLike | None = None,
    max_snapshots: int = 6,
    others: tuple[str | os.PathLike, ...] = (),
) -> list[Path]:
    """Write figures of :data:`EXTRA_FIGURES` for a run folder into ``out_dir``.

    ``evolution`` draws up to ``max_snapshots`` clouds from the initial one to the final one (in
    the ground truth's frame after ``holly evaluate``). ``vs_published`` needs ``published`` (the
    published cloud), ``aligned`` (our cloud aligned onto it) and optionally ``comparison``
    (the JSON of that evaluation, for the scores in the title). ``learning_curve`` draws the
    run's ``snapshot_scores.csv`` (``holly evaluate --snapshots``) and those of ``others``.
    """
    run, out = Path(run_dir), Path(out_dir)
    name = title or run.name
    unknown = sorted(set(names) - set(EXTRA_FIGURES))
    if unknown:
        raise HollyError(f"unknown figure {unknown[0]!r}; choose from {list(EXTRA_FIGURES)}")
    paths = []
    for key in names:
        if key == "view_tilts":
            fig = view_tilts_figure(held_out_tilts(run), f"{name}: view tilts, test images")
        elif key == "fusion":
            fig = run_fusion_figure(run, name)
        elif key == "learning_curve":
            curves = {run.name: read_snapshot_scores(run)}  # curves are labelled by folder
            for other in others:
                curves[Path(other).name] = read_snapshot_scores(other)
            fig = learning_curve_figure(curves, f"{name}: reconstruction over training")
        elif key == "evolution":
            data = viewer_data(run, max(2, max_snapshots), name)
            snaps = [(s["step"], np.reshape(s["points"], (-1, 3))) for s in data["snapshots"]]
            truth = np.reshape(data["truth"], (-1, 3)) if data["truth"] is not None else None
            fig = evolution_figure(snaps, truth, f"{name}: point cloud over training (x-y view)")
        else:
            if published is None or aligned is None:
                raise HollyError("the vs_published figure needs --published and --aligned")
            scores = None
            if comparison is not None and Path(comparison).is_file():
                scores = read_json(Path(comparison)).get("reconstruction")
            fig = published_figure(
                read_points(aligned),
                read_points(published),
                scores,
                f"{name}: our reconstruction and the published one",
            )
        paths.append(save_figure(fig, out / f"{key}.{fmt}", dpi))
    log.info("wrote %d figures of %s to %s", len(paths), run, out)
    return paths


def run_fusion_figure(run: Path, name: str) -> Figure:
    """``refine.fusion``: the run's own fusion of its training particles (the density of the
    fused localisations in the run's model frame, +y up) with its final cloud's x-y over it:
    where the refinement started and where it ended, in one frame."""
    rf = RunFolder(run)
    if not rf.fusion.is_file():
        raise HollyError(f"{run} has no {rf.fusion.name}: it was not trained with refine.fusion")
    record = read_fusion(rf.fusion)
    fused = fusion_start(rf.read_config()["data"]["store"], record).points
    cloud = read_points(rf.points)[:, :2]
    per_unit, unit = nm_per_model_unit(run), "nm"
    if per_unit is None:
        per_unit, unit = 1.0, "model units"
    fused, cloud = fused * per_unit, cloud * per_unit
    reach = np.quantile(np.abs(fused), 0.995) * 1.1
    with style():
        fig, axes = _new(size=(4.8, 4.4))
        ax = axes[0, 0]
        ax.hist2d(*fused.T, bins=120, range=[[-reach, reach]] * 2, cmap="Greys")
        ax.scatter(*cloud.T, s=6, color=RECON_COLOUR, label="reconstruction (x-y)")
        ax.set_aspect("equal")
        ax.set_xlabel(f"x ({unit})")
        ax.set_ylabel(f"y ({unit})")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(
            f"{name}: its fusion of {record['particles']} particles (grey; "
            f"{fusion_quality(record)}) and its cloud",
            fontsize=9,
        )
    return fig


def fusion_figure(image: np.ndarray, extent: list, record: dict, title: str = "") -> Figure:
    """The fused super-particle of ``holly fuse``: its localisation density (camera view, y
    down), with the particles fused and how far the pairwise registrations agree; a site
    template's sites as circles."""
    with style():
        fig, axes = _new(size=(4.6, 4.2))
        ax = axes[0, 0]
        ax.imshow(image, extent=extent, origin="upper", interpolation="nearest")
        if record.get("sites"):  # a site template's sites, in the same frame (y down)
            sites = np.asarray(record["sites"])
            ax.scatter(*sites.T, s=60, facecolors="none", edgecolors="white", linewidths=0.8)
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
        unit = record.get("unit", "")
        ax.set_xlabel(f"x ({unit})")
        ax.set_ylabel(f"y ({unit}, down)")
        ax.set_title(
            title or f"{record['particles']} particles fused; {fusion_quality(record)}",
            fontsize=9,
        )
        ax.set_aspect("equal")
    return fig
