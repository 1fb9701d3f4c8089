"""Gold-standard half-set validation: two reconstructions from disjoint halves, compared.

Without ground truth (real data) the only honest measure of a reconstruction is how well two
independent ones agree. The training particles are split **by particle** into two halves
(:func:`holly.data.halves.split_halves`; every augmentation copy of a particle goes with it, the
held-out test set stays the same for both), each half is trained with its own seed derived from the
experiment's (:func:`holly.data.halves.training_seed`), and :func:`compare_runs` aligns the two
results (mirror-aware, :func:`holly.method.align.align`) and reports their Chamfer distance and
their Fourier shell correlation (:mod:`holly.results.fsc`) with the resolutions at FSC 0.143 and
0.5.

With ground truth (simulated data) it also reports each half against the truth: Chamfer after
alignment and the FSC of each half with the ground-truth density. That is the calibration of
the half-set resolution (README, docs/validation.md).

Run folders: a half-set run is an ordinary run folder whose ``config.yaml`` has
``validation.half`` 1 or 2; the workflow puts them in ``RESULTS/<experiment>/halves/half1``
and ``half2`` and writes the comparison to ``RESULTS/<experiment>/halfsets.json``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from holly import __version__
from holly.config import with_defaults
from holly.data.pointio import read_points, write_points
from holly.errors import HollyError
from holly.results.evaluate import align, shape_metrics
from holly.results.fsc import cloud_fsc
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- run folders


def _cloud(rf: RunFolder, path: Path, what: str) -> np.ndarray:
    x = rf.read_cloud(path, what)
    if len(x) < 3:
        raise HollyError(f"{path} has {len(x)} points; the comparison needs at least 3")
    if np.ptp(x, axis=0).max() == 0:
        raise HollyError(f"{path} ({what}) has all its points at one place: no extent to compare")
    return x


def final_sigma_units(rf: RunFolder, cfg: dict) -> float:
    """The run's final input blur in model units: the last ``sigma_in`` of ``metrics.csv``
    (pixels) times ``4 / H`` (1 model unit is ``H / 4`` pixels)."""
    height = (cfg.get("render") or {}).get("height")
    if not height:
        raise HollyError(f"{rf.config} has no render.height; rerun `holly train`")
    rows = rf.read_metrics()
    if rows.empty:
        raise HollyError(f"{rf.metrics} has no rows: the run has not logged a step")
    return float(rows["sigma_in"].iloc[-1]) * 4.0 / float(height)


def nm_per_unit(rf: RunFolder, cfg: dict) -> float | None:
    """Nanometres per model unit of a run on an image store that records its pixel size.

    The scale training recorded in the run's provenance (:meth:`RunFolder.read_scale`), else
    the store's own (:attr:`holly.data.imagestore.ImageStore.nm_per_model_unit`, for runs from
    before provenance recorded it); None for simulated data or a store without a pixel size.
    """
    scale = rf.read_scale()
    if scale is not None:
        return scale["nm_per_model_unit"]
    data = cfg.get("data") or {}
    if data.get("source") != "zarr" or not data.get("store"):
        return None
    from holly.data.imagestore import ImageStore

    try:
        store = ImageStore.open(data["store"])
    except HollyError as exc:  # the comparison needs only the pixel size of the store
        log.warning("%s; resolutions in model units only", exc)
        return None
    return store.nm_per_model_unit


def compare_clouds(
    a: np.ndarray,
    b: np.ndarray,
    sigma: float,
    *,
    seed: int = 0,
    nm_per_unit: float | None = None,
    planar: bool = False,
) -> tuple[dict, np.ndarray]:
    """Align ``b`` onto ``a`` (mirror allowed), then Chamfer, Hausdorff-95 and FSC (``planar``:
    the ring correlation of the xy projections, for clouds flat by construction;
    :func:`holly.results.fsc.cloud_fsc`).

    Returns the JSON-ready scores and ``b`` aligned ``[M, 3]``.
    """
    al = align(b, a, seed=seed)
    metrics = shape_metrics(al.aligned, a, tau=float("inf"))
    fsc = cloud_fsc(a, al.aligned, sigma, planar=planar)
    scores = {
        "chamfer": al.chamfer,
        "hausdorff95": metrics["hausdorff95"],
        "handedness": al.handedness,
        "chamfer_other_handedness": al.chamfer_other_handedness,
        "fsc": fsc.to_dict(nm_per_unit),
    }
    return scores, al.aligned


# Config keys two runs must share to be halves of one experiment (``section.key``).
SAME_EXPERIMENT = (
    "data.source",
    "data.shape",
    "data.store",
    "render.height",
    "render.width",
    "model.num_points",
    "model.pose_prior",
    "sigma.values",
)


def check_same_experiment(ra: RunFolder, rb: RunFolder, cfg_a: dict, cfg_b: dict) -> None:
    """Refuse two runs that are not of one experiment (:data:`SAME_EXPERIMENT` differ, a key a
    run's config lacks counting as its default: :func:`holly.config.with_defaults`); warn when
    both are the same run folder (the comparison then measures nothing)."""
    if ra.root.resolve() == rb.root.resolve():
        log.warning(
            "%s is compared with itself: the scores say nothing about reproducibility; compare "
            "the experiment's two half-set runs (halves/half1, halves/half2)",
            ra.root,
        )
        return
    diffs = []
    full_a, full_b = with_defaults(cfg_a), with_defaults(cfg_b)
    for dotted in SAME_EXPERIMENT:
        section, key = dotted.split(".")
        va, vb = ((full.get(section) or {}).get(key) for full in (full_a, full_b))
        if section == "data" and key == "shape" and cfg_a.get("data", {}).get("source") == "zarr":
            continue  # a store's runs: the shape key is unused
        if va != vb:
            diffs.append(f"{dotted} {va!r} vs {vb!r}")
    if diffs:
        raise HollyError(
            f"{ra.root} and {rb.root} are not runs of one experiment ({'; '.join(diffs)}): "
            "compare the two half-set runs of one config (`holly train --half 1` and "
            "`--half 2`)"
        )


def compare_runs(
    run_a: str | os.PathLike,
    run_b: str | os.PathLike,
    *,
    ground_truth: str | os.PathLike | None = None,
    seed: int = 0,
    aligned_out: str | os.PathLike | None = None,
    aligned: list | None = None,
) -> dict:
    """Compare two finished runs (normally the two halves of one experiment).

    Runs of different experiments (another shape or image store, image size, point count or
    sigma curriculum: :data:`SAME_EXPERIMENT`) are refused; a run compared with itself is
    warned about.

    Parameters
    ----------
    run_a, run_b : path-like
        Run folders; ``b`` is aligned onto ``a``. The density blur is ``a``'s final sigma.
    ground_truth : path-like, optional
        Ground-truth points; defaults to ``run_a/ground_truth.ply`` if it exists.
    seed : int
        Seed of the alignment starts.
    aligned_out : path-like, optional
        Where to write ``b``'s points aligned onto ``a`` (for the viewer), once every score is
        computed.
    aligned : list, optional
        Receives ``b``'s aligned points (for a caller that writes them itself, last).

    Returns
    -------
    dict
        The ``halfsets.json`` content: ``chamfer``, ``hausdorff95``, ``handedness``, ``fsc``
        (see :meth:`holly.results.fsc.CloudFSC.to_dict`), ``resolution_0143``/``_05`` copied to the
        top level, and with ground truth ``vs_ground_truth``: per half its Chamfer and FSC
        against the ground truth.
    """
    ra, rb = RunFolder(run_a), RunFolder(run_b)
    for rf in (ra, rb):
        if not rf.root.is_dir():
            raise HollyError(f"run folder {rf.root} does not exist")
    cfg_a, cfg_b = ra.read_config(), rb.read_config()
    check_same_experiment(ra, rb, cfg_a, cfg_b)
    a = _cloud(ra, ra.points, "the first reconstruction")
    b = _cloud(rb, rb.points, "the second reconstruction")
    sigma = final_sigma_units(ra, cfg_a)
    sigma_b = final_sigma_units(rb, cfg_b)
    if not np.isclose(sigma, sigma_b, rtol=1e-3):
        log.warning(
            "the runs end at different sigmas (%.4g, %.4g units): using %.4g", sigma, sigma_b, sigma
        )
    nm = nm_per_unit(ra, cfg_a)
    # runs held to in-plane poses are flat by construction: their 3D FSC would count the
    # shared flatness as agreement at every frequency, so the xy projections are compared
    planar = with_defaults(cfg_a)["model"]["pose_prior"] == "inplane"  # both: SAME_EXPERIMENT
    if planar:
        log.info("in-plane pose prior: the halves' resolution is the FRC of their xy projections")
    scores, b_aligned = compare_clouds(a, b, sigma, seed=seed, nm_per_unit=nm, planar=planar)
    fsc = scores["fsc"]
    result = {
        "holly_version": __version__,
        "run_a": str(ra.root),
        "run_b": str(rb.root),
        "halves": [
            (cfg_a.get("validation") or {}).get("half"),
            (cfg_b.get("validation") or {}).get("half"),
        ],
        "training_seeds": [rf.read_provenance().get("seed") for rf in (ra, rb)],
        "n_points": [len(a), len(b)],
        "sigma": sigma,
        **{k: fsc[k] for k in fsc if k.startswith("resolution_")},
        **scores,
    }
    gt_path = Path(ground_truth) if ground_truth is not None else ra.ground_truth
    result["ground_truth"] = None
    if ground_truth is not None or gt_path.is_file():
        gt = _cloud(ra, gt_path, "ground truth")
        result["ground_truth"] = str(gt_path)
        result["vs_ground_truth"] = {
            name: _against_truth(x, gt, sigma, seed, nm) for name, x in (("a", a), ("b", b))
        }
    if aligned is not None:
        aligned.append(b_aligned)
    if aligned_out is not None:
        write_points(Path(aligned_out), b_aligned, comment="holly compare: aligned to run A")
    log.info(
        "halves: chamfer %.4g, FSC resolution %.3g (0.143) / %.3g (0.5) model units",
        result["chamfer"],
        result["resolution_0143"],
        result["resolution_05"],
    )
    return result


def halves_viewer_data(run_dir: str | os.PathLike, name: str) -> dict | None:
    """The 3D viewer's data for an experiment's halves: half 1 and half 2 aligned onto it.

    None when the experiment has no aligned half-set pair (``holly compare --aligned``).
    """
    rf = RunFolder(run_dir)
    first, aligned = rf.half(1).points, rf.half2_aligned
    if not (first.is_file() and aligned.is_file()):
        return None
    from holly.results.viewer import pair_data

    return pair_data(read_points(first), read_points(aligned), name, ("half 2", "half 1"))


def _against_truth(x: np.ndarray, gt: np.ndarray, sigma: float, seed: int, nm) -> dict:
    scores, _ = compare_clouds(gt, x, sigma, seed=seed, nm_per_unit=nm)
    fsc = scores["fsc"]
    return scores | {k: fsc[k] for k in fsc if k.startswith("resolution_")}
