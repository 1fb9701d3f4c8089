"""Mirror-aware scoring of a reconstructed point cloud and of the predicted poses.

From 2D orthographic projections with unknown poses, a structure is only determined up to a
global rotation, a global translation and a reflection (the mirror image with mirrored poses
gives the same images). The renderer fixes the scale, so there is no scale freedom. Before
scoring, these gauge freedoms are removed:

* **Point clouds** (no correspondences): :func:`align` centres both clouds and runs rigid ICP
  from many start rotations, for the cloud as given and for its mirror image
  ``diag(1, 1, -1)``, and keeps the alignment with the lowest Chamfer distance.
* **Poses** (correspondences by image): :func:`pose_error` estimates the global orthogonal gauge
  ``G`` in closed form for both handednesses and keeps the better one.

Metric definitions (all distances in model units, on aligned clouds):

* ``chamfer``: ``0.5 * (mean_a min_b |a - b| + mean_b min_a |a - b|)``; plain, **not squared**,
  distances, so it reads as "typical distance between the surfaces".
* ``hausdorff``: the larger of the two directed maxima of nearest-neighbour distances.
* ``hausdorff95``: the 95th percentile of the union of both directed nearest-neighbour distance
  sets (``N + M`` values); robust to a few stray points, unlike ``hausdorff``.
* ``precision`` / ``recall``: fraction of predicted / ground-truth points with a nearest
  neighbour in the other cloud strictly closer than ``tau``; ``fscore`` is their harmonic mean.
* Default ``tau`` (:func:`default_tau`): 0.1 times the ground truth's bounding radius (the largest
  distance of a ground-truth point from its centroid), i.e. 5 % of the particle's diameter. It
  depends only on the ground truth's size, not on how densely it is sampled, so scores of runs
  with different point counts share one threshold.

Baselines put the numbers in context: the run's random initial cloud, an ellipsoidal "blob" with
the ground truth's second moments (:func:`blob_baseline`; a reconstruction should beat it
clearly), and the ground-truth floor (:func:`ground_truth_floor`: the ground truth subsampled to
the reconstruction's point count, the best a cloud of that size can score).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from scipy.spatial import cKDTree

from holly import __version__
from holly.config import LossConfig
from holly.data.imagestore import ImageStore
from holly.data.pointio import read_points, write_points
from holly.data.shapes import DIHEDRAL, SYMMETRY_ORDER
from holly.errors import HollyError, one_line
from holly.method.align import MIRROR, Alignment, align, as_cloud
from holly.method.geometry import cyclic_turns, geodesic_angle
from holly.method.poses import recentred_shift
from holly.method.refine import RenderSpec, pose_losses
from holly.results.locsimtruth import LocSimTruth
from holly.results.particlepose import particle_pose_block
from holly.results.structure import check as check_structure
from holly.results.structure import headline, particle_extents
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

TAU_FRACTION = 0.1  # default tau = TAU_FRACTION * ground-truth bounding radius
MIN_POINTS = 3


@dataclass(frozen=True)
class PoseError:
    """Result of :func:`pose_error`, angles in degrees.

    Attributes
    ----------
    handedness : {"proper", "mirrored"}
    gauge : ndarray [3, 3]
        The global orthogonal ``G`` with ``rot_pred ≈ M^h rot_true G``.
    errors_deg : ndarray [T]
        Geodesic angle between each predicted pose and its gauge-corrected true pose.
    out_of_plane_deg : ndarray [T]
        Angle between the viewing directions (third rows) of the same two matrices.
    true_in_frame : ndarray [T, 3, 3]
        The true poses in the prediction's frame, ``M^h rot_true S_k G`` (what the learned
        cloud would be rendered at to show each true view).
    """

    handedness: str
    gauge: np.ndarray
    errors_deg: np.ndarray
    out_of_plane_deg: np.ndarray
    true_in_frame: np.ndarray

    @property
    def median(self) -> float:
        return float(np.median(self.errors_deg))

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors_deg))

    @property
    def out_of_plane_median(self) -> float:
        return float(np.median(self.out_of_plane_deg))


# ---------------------------------------------------------------- shape metrics


def nn_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed nearest-neighbour distances: ``d_ab [N]`` (each a to b) and ``d_ba [M]``."""
    a, b = as_cloud(a, "a"), as_cloud(b, "b")
    return cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance, not squared: half the sum of both mean NN distances."""
    d_ab, d_ba = nn_distances(a, b)
    return float(0.5 * (d_ab.mean() + d_ba.mean()))


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Hausdorff distance: the larger of the two directed maximum NN distances."""
    d_ab, d_ba = nn_distances(a, b)
    return float(max(d_ab.max(), d_ba.max()))


def hausdorff95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile of the union of both directed NN distance sets (``N + M`` values)."""
    return float(np.percentile(np.concatenate(nn_distances(a, b)), 95))


def fscore(pred: np.ndarray, gt: np.ndarray, tau: float) -> float:
    """F-score at ``tau``: harmonic mean of precision and recall (0 when both are 0).

    Precision is the fraction of ``pred`` points with a ``gt`` point closer than ``tau``
    (strictly); recall the fraction of ``gt`` points with a ``pred`` point closer than ``tau``.
    """
    return shape_metrics(pred, gt, tau)["fscore"]


def shape_metrics(pred: np.ndarray, gt: np.ndarray, tau: float) -> dict[str, float]:
    """All shape metrics of (already aligned) ``pred [N,3]`` against ``gt [M,3]``.

    Returns
    -------
    dict
        ``chamfer``, ``hausdorff``, ``hausdorff95``, ``precision``, ``recall``, ``fscore``
        (see the module docstring for the definitions).
    """
    d_pg, d_gp = nn_distances(pred, gt)
    precision, recall = float((d_pg < tau).mean()), float((d_gp < tau).mean())
    return {
        "chamfer": float(0.5 * (d_pg.mean() + d_gp.mean())),
        "hausdorff": float(max(d_pg.max(), d_gp.max())),
        "hausdorff95": float(np.percentile(np.concatenate([d_pg, d_gp]), 95)),
        "precision": precision,
        "recall": recall,
        "fscore": _harmonic(precision, recall),
        # at half the threshold (0.05 R by default): the default hides averaged-away details
        # such as arm lengths that differ by less than tau
        "fscore_tight": _harmonic(float((d_pg < tau / 2).mean()), float((d_gp < tau / 2).mean())),
    }


def _harmonic(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def bounding_radius(x: np.ndarray) -> float:
    """Largest distance of a point of ``x [N,3]`` from the centroid."""
    x = as_cloud(x, "points")
    return float(np.linalg.norm(x - x.mean(0), axis=1).max())


def default_tau(gt: np.ndarray) -> float:
    """Default F-score threshold: ``TAU_FRACTION`` (0.1) × the ground truth's bounding radius."""
    return TAU_FRACTION * bounding_radius(gt)


def cloud_stats(x: np.ndarray) -> dict:
    """Statistics of one cloud that need no reference: size, extent, spacing.

    Returns
    -------
    dict
        ``n_points``, ``centroid [3]``, ``extent [3]`` (bounding-box side lengths),
        ``bounding_radius``, ``rms_radius``, ``nn_spacing_mean``, ``nn_spacing_median``
        (distance of each point to its nearest other point; null for a single point).
    """
    x = as_cloud(x, "points")
    centred = x - x.mean(0)
    spacing = cKDTree(x).query(x, k=2)[0][:, 1] if len(x) > 1 else None
    return {
        "n_points": len(x),
        "centroid": x.mean(0).tolist(),
        "extent": (x.max(0) - x.min(0)).tolist(),
        "bounding_radius": float(np.linalg.norm(centred, axis=1).max()),
        "rms_radius": float(np.sqrt((centred**2).sum(1).mean())),
        "nn_spacing_mean": None if spacing is None else float(spacing.mean()),
        "nn_spacing_median": None if spacing is None else float(np.median(spacing)),
    }


# ---------------------------------------------------------------- baselines


def blob_baseline(gt: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in the solid ellipsoid with the ground truth's second moments.

    The ellipsoid's axes are the eigenvectors of the ground truth's covariance. A uniform solid
    ellipsoid with semi-axis ``a`` has variance ``a^2 / 5`` along that axis, so
    ``a = sqrt(5 var)`` matches the variances. It is centred at the ground truth's centroid.

    Parameters
    ----------
    gt : ndarray [M, 3]
    n : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray [n, 3]
    """
    gt = as_cloud(gt, "gt")
    var, axes = np.linalg.eigh(np.cov(gt.T))
    semi = np.sqrt(5 * np.clip(var, 0, None))
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    ball = direction * rng.random((n, 1)) ** (1 / 3)  # uniform in the unit ball
    return (ball * semi) @ axes.T + gt.mean(0)


def ground_truth_floor(gt: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The ground truth subsampled (without replacement) to ``min(n, M)`` of its points.

    Scored against the full ground truth, this is the best a cloud of ``n`` points placed on
    ground-truth vertices can do (0 when ``n >= M``).
    """
    gt = as_cloud(gt, "gt")
    return gt[np.sort(rng.choice(len(gt), min(n, len(gt)), replace=False))]


def score(pred: np.ndarray, gt: np.ndarray, tau: float, seed: int = 0) -> tuple[dict, Alignment]:
    """Align ``pred`` onto ``gt`` (mirror allowed) and compute :func:`shape_metrics`.

    Returns
    -------
    metrics : dict
        :func:`shape_metrics` plus ``handedness`` and ``chamfer_other_handedness``.
    alignment : Alignment
    """
    al = align(pred, gt, seed=seed)
    metrics = shape_metrics(al.aligned, gt, tau)
    metrics["handedness"] = al.handedness
    metrics["chamfer_other_handedness"] = al.chamfer_other_handedness
    return metrics, al


# ---------------------------------------------------------------- poses


def _project_orthogonal(a: np.ndarray, det_sign: float) -> np.ndarray:
    """Nearest orthogonal matrix to ``a [3,3]`` with determinant ``det_sign`` (SVD)."""
    u, _, vt = np.linalg.svd(a)
    fix = np.diag([1.0, 1.0, det_sign * np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def symmetry_rotations(order: int, dihedral: bool = False) -> np.ndarray:
    """The cyclic group C_order about the ground truth's z axis, ``[order, 3, 3]``; with
    ``dihedral``, D_order: each of those also after a half turn about x, ``[2 order, 3, 3]``."""
    turns = cyclic_turns(order).numpy()
    if not dihedral:
        return turns
    return np.concatenate([turns, turns @ np.diag([1.0, -1.0, -1.0])])


def _sym_angle(gauge: np.ndarray, rel: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, ...]:
    """Angle (deg) from ``S_k gauge`` to each ``rel_b``, minimised over the symmetry ``S_k``;
    returns the angles ``[T]`` and the minimising ``k`` per image."""
    cand = sym @ gauge  # [K,3,3]
    angles = np.stack(
        [np.degrees(geodesic_angle(np.broadcast_to(c, rel.shape), rel)) for c in cand]
    )  # [K,T]
    return angles.min(0), angles.argmin(0)


def _robust_gauge(
    rel: np.ndarray, det_sign: float, sym: np.ndarray | None = None, inlier_deg: float = 30.0
) -> np.ndarray:
    """The global gauge most per-image estimates ``rel [T,3,3]`` agree with.

    A plain chordal mean fails when predictions are multimodal: for a pseudo-symmetric shape the
    CNN puts some images at a symmetric twin of their true pose, and the mean of two modes lies
    between them, making every error look large. So each of up to 64 per-image estimates is tried
    as the gauge, the one with the smallest median angle to all others wins, and the gauge is
    the chordal mean of the estimates within ``inlier_deg`` of it.
    """
    sym = np.eye(3)[None] if sym is None else sym
    picks = np.unique(np.linspace(0, len(rel) - 1, min(len(rel), 64)).astype(int))
    candidates = [_project_orthogonal(rel[i], det_sign) for i in picks]
    medians = [np.median(_sym_angle(c, rel, sym)[0]) for c in candidates]
    best = candidates[int(np.argmin(medians))]
    angles, k = _sym_angle(best, rel, sym)
    inliers = angles < inlier_deg
    if not inliers.any():
        return best
    # undo each inlier's symmetry element before averaging: S_k^T rel_b estimates the gauge
    unwound = np.swapaxes(sym[k[inliers]], 1, 2) @ rel[inliers]
    return _project_orthogonal(unwound.mean(0), det_sign)


def _pose_error_for(
    rot_true: np.ndarray, rot_pred: np.ndarray, h: int, sym: np.ndarray | None
) -> PoseError:
    flip = np.linalg.matrix_power(MIRROR, h)
    rel = np.swapaxes(rot_true, 1, 2) @ flip @ rot_pred
    gauge = _robust_gauge(rel, (-1) ** h, sym)
    # with a symmetric ground truth, a pose and its symmetric twins give the same image
    k = _sym_angle(gauge, rel, sym)[1] if sym is not None else np.zeros(len(rel), int)
    sym = np.eye(3)[None] if sym is None else sym
    corrected = flip @ rot_true @ sym[k] @ gauge  # [T,3,3], det +1
    cos_view = np.clip((corrected[:, 2] * rot_pred[:, 2]).sum(1), -1.0, 1.0)
    return PoseError(
        handedness="mirrored" if h else "proper",
        gauge=gauge,
        errors_deg=np.degrees(geodesic_angle(corrected, rot_pred)),
        out_of_plane_deg=np.degrees(np.arccos(cos_view)),
        true_in_frame=corrected,
    )


def pose_error(
    rot_true: np.ndarray, rot_pred: np.ndarray, symmetry_order: int = 1, dihedral: bool = False
) -> PoseError:
    """Per-image rotation error after removing the global gauge, both handednesses tried.

    The reconstruction equals ``Q X`` for an unknown orthogonal ``Q`` (a reflection possibly),
    and the depth flip ``M = diag(1, 1, -1)`` cannot be seen in an orthographic projection, so
    ``rot_pred ≈ M^h rot_true G`` with ``det G = (-1)^h``. For ``h`` in {0, 1}, ``G`` is the
    consensus of the per-image estimates ``rot_true_b^T M^h rot_pred_b`` (robust to a fraction
    of images predicted at a symmetric twin of their pose, see :func:`_robust_gauge`); the ``h``
    with the smaller median error is kept. For a ground truth with ``symmetry_order``-fold
    symmetry about its z axis (cep152: 9), the error is the minimum over the symmetric twins
    ``rot_true S_k`` of each true pose, which give identical images; ``dihedral``: also those
    turned over (a flat ring of corners, the pore: D_order).

    Parameters
    ----------
    rot_true, rot_pred : ndarray [T, 3, 3]
        True and predicted rotations (``x' = R x``; the image plane is the first two rows).
    symmetry_order : int
        Order of the ground truth's cyclic symmetry about its z axis (1: none).

    Returns
    -------
    PoseError
    """
    rot_true = np.asarray(rot_true, dtype=np.float64)
    rot_pred = np.asarray(rot_pred, dtype=np.float64)
    if rot_true.shape != rot_pred.shape or rot_true.shape[1:] != (3, 3) or len(rot_true) == 0:
        raise ValueError(f"need two [T,3,3] arrays, got {rot_true.shape} and {rot_pred.shape}")
    sym = symmetry_rotations(symmetry_order, dihedral) if symmetry_order > 1 or dihedral else None
    candidates = [_pose_error_for(rot_true, rot_pred, h, sym) for h in (0, 1)]
    return min(candidates, key=lambda c: c.median)


# ---------------------------------------------------------------- run folders


def _read_cloud(path: Path, what: str, hint: str) -> np.ndarray:
    if not path.is_file():
        raise HollyError(f"{path} not found ({what}); {hint}")
    x = read_points(path)
    if len(x) < MIN_POINTS:
        raise HollyError(f"{path} has {len(x)} points; evaluation needs at least {MIN_POINTS}")
    if np.ptp(x, axis=0).max() == 0:
        raise HollyError(
            f"{path} ({what}) has all its points at one place: no extent to score against "
            f"(the F-score's tau would be 0); {hint}"
        )
    return x


WRONG_POSE_DEG = 30.0  # a pose further than this from the truth counts as wrong (DPC's rule)
FITS_AS_WELL = 1.02  # "renders as well": image loss within 2 % of the true pose's


def _pose_summary(
    run: RunFolder,
    symmetry_order: int = 1,
    points: np.ndarray | None = None,
    rot_true: np.ndarray | None = None,
    dihedral: bool = False,
):
    """Pose errors of the final poses and, where recorded, of the amortised (CNN) poses before
    refinement; accuracy at 30 degrees; head usage; and, with ``points``, how many wrong poses
    fit their image as well as the true pose does (:func:`pose_fit`). ``rot_true`` gives the
    true poses of a run whose ``test_poses.npz`` has none (a simulated localisation table)."""
    path = run.test_poses
    poses = run.read_test_poses()
    if poses is not None and rot_true is not None:
        poses = dict(poses, rot_true=rot_true)
    if poses is None or "rot_true" not in poses:  # real data: no true poses to compare with
        return None
    try:
        err = pose_error(poses["rot_true"], poses["rot_pred"], symmetry_order, dihedral)
        before = (
            pose_error(poses["rot_true"], poses["rot_amortised"], symmetry_order, dihedral)
            if "rot_amortised" in poses
            else None
        )
    except ValueError as exc:
        raise HollyError(f"{path}: {exc}") from exc
    summary = {
        "median": err.median,
        "mean": err.mean,
        "p90": float(np.percentile(err.errors_deg, 90)),
        "accuracy_30": float((err.errors_deg < WRONG_POSE_DEG).mean()),
        "out_of_plane_median": err.out_of_plane_median,
        "handedness": err.handedness,
        "n_images": len(err.errors_deg),
        "gauge": err.gauge.tolist(),
        "symmetry_order": symmetry_order,
        "dihedral": dihedral,
        "refined": "shift_refined" in poses,
        "amortised_median": before.median if before is not None else None,
        "amortised_mean": before.mean if before is not None else None,
        "head_usage": _head_usage(poses),
    }
    if points is not None and {"images", "shift_refined"} <= set(poses):
        config = run.read_config(required=False) or {}
        blur = config.get("render", {}).get("data_blur", 0.0)
        loss = {**asdict(LossConfig()), **config.get("loss", {})}  # an old config: defaults
        kind, threshold = loss["kind"], float(loss["mask_threshold"])
        summary |= pose_fit(points, poses, err, float(blur or 0.0), kind, threshold)
    return summary


def _head_usage(poses: dict) -> list[float] | None:
    """Fraction of held-out images whose best hypothesis is each head."""
    if "best_hypothesis" not in poses or "hypotheses" not in poses:
        return None
    k = poses["hypotheses"].shape[1]
    counts = np.bincount(poses["best_hypothesis"].astype(int), minlength=k)
    return (counts / max(counts.sum(), 1)).tolist()


def pose_fit(
    points: np.ndarray,
    poses: dict,
    err: PoseError,
    data_blur: float = 0.0,
    loss_kind: str = "l1",
    mask_threshold: float = 0.0,
) -> dict:
    """Do wrong poses fit their images worse than the true ones (failures), or as well
    (unidentifiable views)?

    The learned cloud is rendered at each image's final pose and at its true pose expressed in
    the cloud's frame (``M^h R_true S_k G``, the same gauge and symmetry rule as the pose error,
    shifted so the cloud's projected centroid stays where the final pose put it); both are
    compared with the held-out image, per-image normalised, by the run's own loss
    (``loss.kind``: a run trained with L2 or the Poisson deviance is judged by it, not by L1)
    at the run's blur (its ``render.data_blur`` added, as training rendered).

    Returns
    -------
    dict
        ``wrong_fraction``: images off by more than 30 degrees; ``wrong_but_fits_fraction``:
        those among all images whose final pose renders within 2 % of the true pose's loss;
        ``fit_loss_pred_median`` / ``fit_loss_true_median``: the two median losses.
    """
    images = torch.as_tensor(poses["images"].astype(np.float32))
    h, w = images.shape[-2:]
    spec = RenderSpec(h, w, loss_kind, mask_threshold, data_blur)
    cloud = torch.as_tensor(points, dtype=torch.float32)
    rot_pred = torch.as_tensor(poses["rot_pred"], dtype=torch.float32)
    shift = torch.as_tensor(poses["shift_refined"], dtype=torch.float32)
    sigma = torch.as_tensor(poses["sigma_refined"], dtype=torch.float32)
    rot_true = torch.as_tensor(err.true_in_frame, dtype=torch.float32)
    shift_true = recentred_shift(shift, rot_pred, rot_true, cloud.mean(0))
    with torch.no_grad():
        loss_pred = pose_losses(cloud, rot_pred, shift, sigma, images, spec).numpy()
        loss_true = pose_losses(cloud, rot_true, shift_true, sigma, images, spec).numpy()
    wrong = err.errors_deg > WRONG_POSE_DEG
    fits = loss_pred <= FITS_AS_WELL * loss_true
    return {
        "wrong_fraction": float(wrong.mean()),
        "wrong_but_fits_fraction": float((wrong & fits).mean()),
        "fit_loss_pred_median": float(np.median(loss_pred)),
        "fit_loss_true_median": float(np.median(loss_true)),
        "fit_loss_kind": loss_kind,
    }


def _gauge_agreement(poses: dict | None, al: Alignment) -> float | None:
    """Angle (deg) between the pose gauge ``G`` and the cloud alignment's rotation.

    With ``x' = R x`` both estimate the same orthogonal matrix, so a small angle means the poses
    and the cloud agree; symmetric shapes can make it large even for good runs.
    """
    if poses is None or poses["handedness"] != al.handedness:
        return None
    gauge = np.asarray(poses["gauge"])
    return float(np.degrees(geodesic_angle(gauge[None], al.rotation[None]))[0])


def evaluate_run(
    run_dir: str | os.PathLike,
    ground_truth: str | os.PathLike | None = None,
    tau: float | None = None,
    seed: int = 0,
    aligned_out: str | os.PathLike | None = None,
) -> dict:
    """Score a finished run folder; writes ``aligned_points.ply`` there when there is ground truth.

    :func:`score_run` without the write; this writes the aligned cloud it returns.
    """
    result, aligned_path, aligned = score_run(run_dir, ground_truth, tau, seed, aligned_out)
    if aligned is not None:
        write_points(aligned_path, aligned, comment="holly evaluate: aligned to GT")
    return result


def score_run(
    run_dir: str | os.PathLike,
    ground_truth: str | os.PathLike | None = None,
    tau: float | None = None,
    seed: int = 0,
    aligned_out: str | os.PathLike | None = None,
    structure: dict | None = None,
    locsim: LocSimTruth | None = None,
) -> tuple[dict, Path, np.ndarray | None]:
    """Score a finished run folder; returns the result, and where and what to write aligned.

    Parameters
    ----------
    run_dir : path-like
        A run folder (see docs/architecture.md); ``points.ply`` must exist.
    ground_truth : path-like, optional
        Ground-truth point file; defaults to ``RUN/ground_truth.ply`` if that exists. Without
        ground truth (real data) only the cloud's own statistics and, if present, pose errors are
        reported, and ``"ground_truth"`` is null.
    tau : float, optional
        F-score threshold in model units; default :func:`default_tau`.
    seed : int
        Seed of the alignment starts, the blob baseline and the ground-truth subsample.
    aligned_out : path-like, optional
        Where to write the aligned reconstruction instead of ``RUN/aligned_points.ply`` (for
        scoring against another cloud, such as published results, without touching the run's
        own alignment).
    structure : dict, optional
        A check of the known structure (:func:`structure_block`): ``check`` (tetrahedron, ring
        or flat) and its parameters; the result goes under ``structure``.
    locsim : LocSimTruth, optional
        The ground truth of a run trained on a simulated localisation table
        (:func:`holly.results.locsimtruth.locsim_truth`): its sites are the ground truth, its
        held-out poses the true poses, and its record goes under ``locsim_truth``. Not
        together with ``ground_truth``.

    Returns
    -------
    result : dict
        The ``evaluation.json`` content.
    aligned_path : Path
        Where the aligned reconstruction belongs (``aligned_out`` or ``RUN/aligned_points.ply``).
    aligned : ndarray [N, 3] or None
        The reconstruction aligned onto the ground truth; None without ground truth.

    Raises
    ------
    HollyError
        Missing run folder or ``points.ply``, unreadable or too small point files, bad
        ``test_poses.npz``, non-positive ``tau``.
    """
    run = Path(run_dir)
    rf = RunFolder(run)
    if not run.is_dir():
        raise HollyError(f"run folder {run} does not exist; pass the --out folder of `holly train`")
    if tau is not None and not (tau > 0 and np.isfinite(tau)):
        raise HollyError(f"--tau must be a positive finite distance in model units, got {tau}")
    points = _read_cloud(
        rf.points,
        "the final reconstruction",
        "points.ply is written last, so the run has not finished: wait for or resume `holly train`",
    )
    if locsim is not None and ground_truth is not None:
        raise HollyError("--locsim-truth gives the ground truth: leave out --ground-truth")
    gt_path = Path(ground_truth) if ground_truth is not None else rf.ground_truth
    if locsim is not None:
        gt_path = Path(locsim.block["sites"])
    has_gt = locsim is not None or ground_truth is not None or gt_path.is_file()
    init_path = rf.initial_points
    if locsim is not None:
        poses = _pose_summary(
            rf, locsim.symmetry_order, points, locsim.rot_true, locsim.block["shape"] in DIHEDRAL
        )
    else:
        poses = _pose_summary(rf, symmetry_order(rf), points, dihedral=_shape(rf) in DIHEDRAL)
    result = {
        "holly_version": __version__,
        "run_dir": str(run),
        "ground_truth": str(gt_path) if has_gt else None,
        "seed": seed,
        "n_points": len(points),
        "cloud": cloud_stats(points),
        "pose_error_deg": poses,
        "held_out_fit": _held_out_fit(rf),
    }
    if structure:
        result["structure"] = structure_block(rf, points, structure, seed)
    if locsim is not None:
        result["locsim_truth"] = locsim.block
    aligned_path = Path(aligned_out) if aligned_out is not None else rf.aligned_points
    if not has_gt:
        log.warning("no ground truth for %s: reporting cloud statistics only", run)
        return result | _no_gt_fields(tau), aligned_path, None
    if locsim is not None:
        gt = locsim.points
    else:
        gt = _read_cloud(gt_path, "ground truth", "pass --ground-truth PATH or omit it")
    init = read_points(init_path) if init_path.is_file() else None
    scores, al = _score_all(points, gt, init, tau, seed)
    result |= scores
    result["pose_gauge_vs_alignment_deg"] = _gauge_agreement(poses, al)
    return result, aligned_path, al.aligned


def score_snapshots(
    run_dir: str | os.PathLike,
    ground_truth: str | os.PathLike | None = None,
    tau: float | None = None,
    seed: int = 0,
) -> list[dict]:
    """Score every training snapshot of a run against the ground truth: its learning curve.

    Each ``snapshots/points_XXXXXXXX.ply`` is aligned and scored as :func:`score_run` scores
    ``points.ply`` (same ``tau``, same seeded blob baseline), so the row of the final snapshot
    repeats evaluation.json's numbers. Only the cloud is scored (snapshots hold no poses). A run
    need not be finished: this shows whether, and when, a long run learned the structure.

    Returns
    -------
    list of dict
        Per snapshot, by step: ``step``, ``sigma_in`` (the curriculum's sigma at that step, from
        metrics.csv; NaN where no row has that step), ``chamfer``, ``chamfer_ratio_to_blob``,
        ``fscore`` and ``fscore_tight``.

    Raises
    ------
    HollyError
        No snapshots, no ground truth, unreadable point files, non-positive ``tau``.
    """
    rf = RunFolder(run_dir)
    snapshots = rf.snapshot_files()
    if not snapshots:
        raise HollyError(
            f"{rf.snapshots} holds no points_*.ply snapshots: pass a run folder of `holly train`"
        )
    gt_path = Path(ground_truth) if ground_truth is not None else rf.ground_truth
    if not gt_path.is_file():
        raise HollyError(
            f"no ground truth at {gt_path}: snapshots can only be scored against one "
            "(pass --ground-truth PATH)"
        )
    if tau is not None and not (tau > 0 and np.isfinite(tau)):
        raise HollyError(f"--tau must be a positive finite distance in model units, got {tau}")
    gt = _read_cloud(gt_path, "ground truth", "pass --ground-truth PATH or omit it")
    tau = float(tau) if tau is not None else default_tau(gt)
    sigma_at = _sigma_by_step(rf)
    blob_chamfer: dict[int, float] = {}  # by point count; seeded as in _score_all
    rows = []
    for step, path in snapshots:
        points = _read_cloud(path, f"snapshot {path.name}", "delete it or re-run `holly train`")
        n = len(points)
        if n not in blob_chamfer:
            blob = blob_baseline(gt, n, np.random.default_rng(seed))
            blob_chamfer[n] = score(blob, gt, tau, seed)[0]["chamfer"]
        recon, _ = score(points, gt, tau, seed)
        rows.append(
            {
                "step": step,
                "sigma_in": sigma_at.get(step, float("nan")),
                "chamfer": recon["chamfer"],
                "chamfer_ratio_to_blob": recon["chamfer"] / blob_chamfer[n],
                "fscore": recon["fscore"],
                "fscore_tight": recon["fscore_tight"],
            }
        )
        log.debug("snapshot %d: chamfer %.4g", step, recon["chamfer"])
    return rows


def _sigma_by_step(run: RunFolder) -> dict[int, float]:
    """The curriculum's sigma per logged step of the amortised phase (empty without metrics)."""
    if not run.metrics.is_file():
        return {}
    rows = run.read_metrics()
    if "phase" in rows:
        rows = rows[rows["phase"] != "refine"]
    return {int(s): float(v) for s, v in zip(rows["step"], rows["sigma_in"], strict=True)}


def symmetry_order(run: RunFolder | str | os.PathLike) -> int:
    """Cyclic symmetry order of the run's ground truth, for built-in shapes that have one."""

    shape = _shape(run)
    return SYMMETRY_ORDER.get(shape, 1) if isinstance(shape, str) else 1


def _shape(run: RunFolder | str | os.PathLike):
    """The run's built-in ground-truth shape (``data.shape``), if it names one."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    return (run.read_config(required=False).get("data") or {}).get("shape")


def _held_out_fit(run: RunFolder) -> dict | None:
    """The image loss on held-out images at the end of training (last row of metrics.csv).

    For real data this is the only measure of fit: how well the learned cloud, posed by the
    CNN, reproduces images it was not trained on.
    """
    if not run.metrics.is_file():
        return None
    rows = run.read_metrics()
    if "phase" in rows:  # refinement rows have no held-out loss (another normalisation)
        rows = rows[rows["phase"] != "refine"]
    if rows.empty:
        return None
    last = rows.iloc[-1]
    keys = ("step", "test_loss", "train_loss", "sigma_in", "sigma_pred_mean")
    return {k: float(last[k]) for k in keys if k in last}


def _no_gt_fields(tau: float | None) -> dict:
    """The ground-truth fields of evaluation.json, all null (``tau`` kept if given)."""
    empty = ("n_ground_truth", "reconstruction", "random_init", "blob", "ground_truth_floor")
    fields = dict.fromkeys(empty + ("chamfer_ratio_to_blob", "pose_gauge_vs_alignment_deg"))
    return fields | {"tau": tau, "tau_rule": "given" if tau is not None else None}


def _against_blob(
    points: np.ndarray, gt: np.ndarray, tau: float, seed: int, rng: np.random.Generator
) -> tuple[dict, dict, Alignment]:
    """Scores of ``points`` and of the blob baseline (drawn from ``rng``) against ``gt``."""
    recon, al = score(points, gt, tau, seed)
    blob, _ = score(blob_baseline(gt, len(points), rng), gt, tau, seed)
    return recon, blob, al


def chamfer_ratio_to_blob(points: np.ndarray, gt: np.ndarray, seed: int = 0) -> float:
    """Chamfer / blob of ``points`` against ``gt``, as ``holly evaluate`` reports it
    (``chamfer_ratio_to_blob``, the default tau and the same seeded blob)."""
    tau = default_tau(gt)
    recon, blob, _ = _against_blob(points, gt, tau, seed, np.random.default_rng(seed))
    return recon["chamfer"] / blob["chamfer"]


def _score_all(
    points: np.ndarray, gt: np.ndarray, init: np.ndarray | None, tau: float | None, seed: int
) -> tuple[dict, Alignment]:
    """Scores of the reconstruction and the three baselines against ``gt``."""
    rng = np.random.default_rng(seed)
    tau_rule = "given" if tau is not None else f"{TAU_FRACTION} x ground-truth bounding radius"
    tau = float(tau) if tau is not None else default_tau(gt)
    recon, blob, al = _against_blob(points, gt, tau, seed, rng)
    floor, _ = score(ground_truth_floor(gt, len(points), rng), gt, tau, seed)
    random_init = score(init, gt, tau, seed)[0] if init is not None else None
    if init is None:
        log.warning("initial_points.ply missing: no random-init baseline")
    log.info(
        "chamfer %.4g (blob %.4g, floor %.4g)", recon["chamfer"], blob["chamfer"], floor["chamfer"]
    )
    ratio = recon["chamfer"] / blob["chamfer"] if blob["chamfer"] > 0 else None
    fields = {
        "n_ground_truth": len(gt),
        "tau": tau,
        "tau_rule": tau_rule,
        "ground_truth_cloud": cloud_stats(gt),
        "reconstruction": recon,
        "random_init": random_init,
        "blob": blob,
        "ground_truth_floor": floor,
        "chamfer_ratio_to_blob": ratio,
    }
    return fields, al


def read_structure_model(path: str | os.PathLike) -> np.ndarray:
    """A known structure's points ``[M, 3]``: a point file (PLY, OBJ, CSV), or a MATLAB v5 file
    holding one numeric M x 3 (or 3 x M) array, such as the NPC model's ``NPCModel.mat``."""
    path = Path(path)
    if not path.is_file():
        raise HollyError(f"structure model {path} does not exist")
    if path.suffix.lower() != ".mat":
        return read_points(path)

    try:
        arrays = {
            k: v
            for k, v in scipy.io.loadmat(path).items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiu"
        }
    except (ValueError, NotImplementedError, OSError, scipy.io.matlab.MatReadError) as exc:
        raise HollyError(
            f"structure model {path}: not a MATLAB v5 file ({one_line(exc)}); a point file "
            "(PLY, OBJ, CSV) works too"
        ) from None
    shaped = [v.T if v.shape[0] == 3 and v.shape[1] != 3 else v for v in arrays.values()]
    shaped = [v for v in shaped if v.ndim == 2 and v.shape[1] == 3]
    if len(shaped) != 1:
        raise HollyError(
            f"structure model {path}: expected one numeric M x 3 array, found "
            f"{ {k: v.shape for k, v in arrays.items()} }"
        )
    return np.asarray(shaped[0], dtype=np.float64)


def store_precision(store_path: str | os.PathLike) -> tuple[float | None, float | None]:
    """The localisation precision of an image store made by `holly localise`, in model units,
    and the source units per model unit: ``(median sigma_xy, source_per_unit)``.

    ``(None, None)`` when the store is absent or has no ``localisation_sigma_xy`` (the file had
    no precision column), or no recorded ``pixels_per_unit``.
    """

    if not store_path or not Path(store_path).exists():
        return None, None
    store = ImageStore.open(store_path)
    per_unit = (store.attrs.get("params") or {}).get("pixels_per_unit")
    if not per_unit:
        return None, None
    source_per_unit = (store.height / 4) / float(per_unit)  # source units per model unit
    if "localisation_sigma_xy" not in store.group:
        return None, source_per_unit
    sigma = np.asarray(store.group["localisation_sigma_xy"][:], dtype=np.float64)
    sigma = sigma[np.isfinite(sigma) & (sigma > 0)]
    if not sigma.size:
        return None, source_per_unit
    return float(np.median(sigma)) / source_per_unit, source_per_unit


def store_particle_extents(store_path: str | os.PathLike) -> np.ndarray | None:
    """Median 2D principal extents of the particles' localisations in an image store made by
    `holly localise` (``[2]``, the localisations' units), or None without that table."""

    if not store_path or not Path(store_path).exists():
        return None
    store = ImageStore.open(store_path)
    if "localisation_xy" not in store.group or "localisation_particle" not in store.group:
        return None
    xy = np.asarray(store.group["localisation_xy"][:], dtype=np.float64)
    return particle_extents(xy, np.asarray(store.group["localisation_particle"][:]))


def structure_block(run: RunFolder, points: np.ndarray, spec: dict, seed: int = 0) -> dict:
    """The ``structure`` block of ``evaluation.json`` (:mod:`holly.results.structure`).

    ``spec``: ``check`` (tetrahedron | ring | flat); optional ``precision`` (model units; by
    default the median ``sigma_xy`` of the run's image store, where `holly localise` kept it),
    ``model`` (ring: a file of the known structure's points, :func:`read_structure_model`) and
    ``model_nm_per_unit`` (nm per unit of that file; default 1, i.e. nm). For the tetrahedron
    check ``model`` is a folder of each particle's posed vertices instead, and the block gets
    ``pose_error_deg`` (:func:`holly.results.particlepose.particle_pose_block`). Lengths are in
    model units, in nm where the run's store records its pixel size, and for a store made by
    `holly localise` also in the localisation file's own units (``*_source``); the flat check
    adds the localisations' own 2D extents (``data_extents``, median over particles).
    """

    cfg = run.read_config(required=False)
    data = cfg.get("data") or {}
    precision, source_per_unit = (None, None)
    if data.get("source") == "zarr":
        precision, source_per_unit = store_precision(data.get("store"))
    if spec.get("precision") is not None:
        precision = float(spec["precision"])
    scale = run.read_scale()
    poses_against = spec.get("model") if spec["check"] == "tetrahedron" else None
    model = read_structure_model(spec["model"]) if spec.get("model") and not poses_against else None
    block = check_structure(
        spec["check"],
        points,
        nm_per_unit=scale["nm_per_model_unit"] if scale else None,
        precision=precision,
        model=model,
        model_nm_per_unit=spec.get("model_nm_per_unit"),
        seed=seed,
    )
    block["source_per_unit"] = source_per_unit
    if spec["check"] == "flat" and source_per_unit:
        ext = store_particle_extents(data.get("store"))  # localisation units
        nm = block["nm_per_unit"]
        model_ext = None if ext is None else ext / source_per_unit
        block["data_extents"] = None if model_ext is None else model_ext.tolist()
        block["data_extents_nm"] = (
            None if model_ext is None or not nm else (model_ext * nm).tolist()
        )
    if source_per_unit and spec["check"] == "tetrahedron":
        block["edge_mean_source"] = block["edge_mean"] * source_per_unit
    if poses_against:  # a folder of each particle's posed model: the held-out pose error
        block["pose_error_deg"] = particle_pose_block(
            run, np.asarray(block["vertices"]), poses_against
        )
    if spec.get("model"):
        block["model_file"] = str(spec["model"])
    log.info("structure check %s: %s", spec["check"], headline(block))
    return block
