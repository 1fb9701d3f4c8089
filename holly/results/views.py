"""Which viewing directions a run's poses cover, and which directions the data leave unresolved.

A particle seen only from above (on glass, in the nuclear envelope) does not determine its own
depth: every image is the same xy projection, whatever the structure does along the viewing
axis. This module measures the distribution of viewing directions from a run's held-out poses
and says when it is too narrow to resolve z (the ``views`` block of ``evaluation.json``).

**The viewing direction** of a pose ``R`` (``x' = R x``, the image plane is the first two rows)
is ``d = R[2]``, the third row: the camera's axis in the cloud's own frame.

**The gauge.** A reconstruction is only defined up to a global rotation (and a reflection), and
its poses carry the same freedom: cloud ``Q X`` with poses ``R Q^T`` make the same images, and
then every ``d`` becomes ``Q d``. Tilts must therefore be measured against an axis that turns
with the cloud. Two such axes exist:

* the **view axis**: the principal axis of the viewing directions' orientation tensor
  ``mean(d d^T)`` (its eigenvector of the largest eigenvalue; axial, so ``d`` and ``-d``,
  a view and its mirror from below, count alike). It depends on the poses only;
* the cloud's **normal**: the axis of its smallest principal extent, which is the top-view
  direction of a flat object.

The tilts are measured against the view axis. It is what decides what the data resolve, it is
defined for any object (a round or blob-like cloud has no meaningful normal), and it does not
assume the reconstruction is right: the TU Delft logos came out as a 3D blob, whose smallest
principal axis says nothing about the views. The angle between the two axes and the tilts
against the normal are reported beside it (for a flat object seen from above they agree).

**Tilt** is ``arccos |d . a|`` in [0, 90] degrees. For uniform random 3D views its distribution
is ``P(tilt <= t) = 1 - cos t`` (median 60 deg, 90th percentile 84.3 deg). For views uniform over
a cap of half-angle ``T`` (:mod:`holly.data.locsim`'s ``tilt`` views), ``1 - cos t`` is uniform on
``[0, 1 - cos T]``; ``cone_deg`` inverts this from the 90th percentile,
``1 - cos cone = (1 - cos p90) / 0.9``: ``T`` for such a cap, 90 for uniform views.

**Unresolved z.** When at least :data:`NARROW_FRACTION` of the tilts lie within
:data:`NARROW_DEG` of the view axis, the extent along that axis is not determined by the data:
``unresolved_z`` is true, the verdict is "flat, or unresolved in z", and a warning is logged.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from holly.errors import HollyError
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

NARROW_DEG = 20.0  # a tilt within this of the view axis is a near top view
NARROW_FRACTION = 0.9  # this share of near top views leaves z unresolved
LIMITED_P90_DEG = 60.0  # below this 90th percentile, 3D is resolved only partly (missing cone)
UNIFORM_P90_DEG = math.degrees(math.acos(0.1))  # 84.26: uniform 3D views
UNIFORM_MEDIAN_DEG = 60.0


def view_directions(rotations: np.ndarray) -> np.ndarray:
    """Viewing directions ``[T, 3]`` (unit, in the cloud's frame) of poses ``[T, 3, 3]``."""
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or len(rotations) == 0:
        raise ValueError(f"need poses [T, 3, 3], got {rotations.shape}")
    d = rotations[:, 2, :]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def view_axis(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axis ``[3]`` of the orientation tensor ``mean(d d^T)`` and its eigenvalues
    (descending, summing to 1: ``[1, 0, 0]`` for one direction, ``1/3`` each for uniform)."""
    d = np.asarray(directions, dtype=np.float64)
    tensor = d.T @ d / len(d)
    values, vectors = np.linalg.eigh(tensor)  # ascending
    axis = vectors[:, -1]
    return axis * np.sign(axis[np.argmax(np.abs(axis))]), values[::-1]


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes ``[3, 3]`` (rows, largest extent first) and the extents (rms along each)."""
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(0)
    values, vectors = np.linalg.eigh(x.T @ x / len(x))
    return vectors[:, ::-1].T, np.sqrt(np.clip(values[::-1], 0, None))


def tilts_deg(directions: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Out-of-plane tilt ``arccos |d . axis|`` of each direction, degrees in [0, 90]."""
    axis = np.asarray(axis, dtype=np.float64)
    cos = np.abs(np.asarray(directions, dtype=np.float64) @ (axis / np.linalg.norm(axis)))
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def cone_deg(p90_deg: float) -> float:
    """Half-angle of the uniform cap whose tilts have this 90th percentile (90: uniform)."""
    one_minus = (1.0 - math.cos(math.radians(p90_deg))) / 0.9
    return math.degrees(math.acos(max(-1.0, 1.0 - min(one_minus, 1.0))))


def uniform_sphere_ks(tilts: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the tilts from uniform 3D views (CDF ``1 - cos t``)."""
    t = np.sort(np.radians(np.asarray(tilts, dtype=np.float64)))
    n = len(t)
    cdf = 1.0 - np.cos(t)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


HISTOGRAM_EDGES_DEG = tuple(range(0, 91, 10))


def tilt_summary(tilts: np.ndarray, narrow_deg: float = NARROW_DEG) -> dict:
    """Spread of tilts (degrees): median, mean, sd, 90th/95th percentiles, max, the fraction
    within ``narrow_deg``, ``cone_deg``, the KS distance from uniform views and a histogram
    (``histogram``: counts per 10 degrees, 0-90)."""
    t = np.asarray(tilts, dtype=np.float64)
    p90 = float(np.percentile(t, 90))
    return {
        "median": float(np.median(t)),
        "mean": float(t.mean()),
        "sd": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
        "p90": p90,
        "p95": float(np.percentile(t, 95)),
        "max": float(t.max()),
        "within_narrow": float((t <= narrow_deg).mean()),
        "cone_deg": cone_deg(p90),
        "ks_uniform": uniform_sphere_ks(t),
        "histogram": np.histogram(t, bins=HISTOGRAM_EDGES_DEG)[0].tolist(),
    }


def views_summary(
    rotations: np.ndarray,
    points: np.ndarray | None = None,
    narrow_deg: float = NARROW_DEG,
    narrow_fraction: float = NARROW_FRACTION,
) -> dict:
    """The ``views`` block for poses ``[T, 3, 3]`` of a cloud ``points [N, 3]`` (optional).

    Returns
    -------
    dict
        ``n_poses``; ``axis`` (the view axis in the cloud's frame) and ``axis_eigenvalues``;
        ``tilt_deg`` (:func:`tilt_summary` against the view axis); with ``points``: the cloud's
        ``principal_extents`` (rms, largest first), ``flatness`` (smallest / largest),
        ``axis_to_normal_deg`` (view axis vs the smallest principal axis),
        ``tilt_to_normal_deg`` (median, p90) and ``extent_along_axis`` (the cloud's rms extent
        along the view axis / its largest); ``unresolved_z``, ``verdict``, and the rule used
        (``narrow_deg``, ``narrow_fraction``).
    """
    d = view_directions(rotations)
    axis, eig = view_axis(d)
    tilt = tilt_summary(tilts_deg(d, axis), narrow_deg)
    unresolved = tilt["within_narrow"] >= narrow_fraction
    if unresolved:
        verdict = "flat, or unresolved in z"
    elif tilt["p90"] < LIMITED_P90_DEG:
        verdict = (
            f"limited view range: z only partly resolved (views within ~{tilt['p90']:.0f} deg)"
        )
    else:
        verdict = "views cover 3D"
    block = {
        "n_poses": len(d),
        "axis": axis.tolist(),
        "axis_eigenvalues": eig.tolist(),
        "tilt_deg": tilt,
        "uniform_reference_deg": {"median": UNIFORM_MEDIAN_DEG, "p90": UNIFORM_P90_DEG},
        "unresolved_z": bool(unresolved),
        "verdict": verdict,
        "rule": {"narrow_deg": narrow_deg, "narrow_fraction": narrow_fraction},
    }
    if points is not None and len(points) >= 3:
        axes, extents = principal_axes(points)
        normal = axes[2]
        centred = np.asarray(points, dtype=np.float64) - np.mean(points, 0)
        along = float(np.sqrt(((centred @ axis) ** 2).mean()))
        to_normal = tilts_deg(d, normal)
        block |= {
            "principal_extents": extents.tolist(),
            "flatness": float(extents[2] / extents[0]) if extents[0] > 0 else None,
            "axis_to_normal_deg": float(tilts_deg(axis[None], normal)[0]),
            "tilt_to_normal_deg": {
                "median": float(np.median(to_normal)),
                "p90": float(np.percentile(to_normal, 90)),
            },
            "extent_along_axis": along / float(extents[0]) if extents[0] > 0 else None,
        }
    return block


def run_views(
    run_dir: str | os.PathLike,
    points: np.ndarray | None = None,
    rot_true: np.ndarray | None = None,
) -> dict | None:
    """The ``views`` block of a run: its held-out poses (``test_poses.npz``), refined where the
    run refined them (``rot_pred``), else the CNN's; with ``rot_true`` (simulated runs, or
    given: a simulated localisation table's) the true poses' block too (``true``, in the
    ground truth's frame). None without poses.

    Logs a warning when the views leave z unresolved.
    """
    run = RunFolder(run_dir)
    poses = run.read_test_poses()
    if poses is None or "rot_pred" not in poses:
        return None
    if rot_true is not None:
        poses = dict(poses, rot_true=rot_true)
    if points is None and run.points.is_file():
        points = run.read_cloud(run.points)
    try:
        block = views_summary(poses["rot_pred"], points)
        if "rot_true" in poses:
            true = views_summary(poses["rot_true"])
            block["true"] = {k: true[k] for k in ("axis", "tilt_deg", "unresolved_z", "verdict")}
    except ValueError as exc:
        raise HollyError(f"{run.test_poses}: {exc}") from None
    block["poses"] = "refined" if "shift_refined" in poses else "amortised (CNN)"
    _note_pose_prior(block, run.read_config(required=False).get("model") or {})
    tilt = block["tilt_deg"]
    if block["unresolved_z"]:
        log.warning(
            "%s: %.0f%% of the held-out views lie within %.0f deg of one axis (90th percentile "
            "%.1f deg): the extent along it is unresolved; report the cloud as flat, or "
            "unresolved in z, not as a 3D shape",
            run_dir,
            100 * tilt["within_narrow"],
            block["rule"]["narrow_deg"],
            tilt["p90"],
        )
    else:
        log.info(
            "views: tilt median %.1f deg, 90th percentile %.1f deg (%s)",
            tilt["median"],
            tilt["p90"],
            block["verdict"],
        )
    return block


def _note_pose_prior(block: dict, model: dict) -> None:
    """Record the run's pose prior (``model.pose_prior``) in the ``views`` block. Poses held to
    top views by the prior say nothing about depth whatever they are: z is then unresolved by
    construction, and the verdict says so instead of measuring it."""
    kind = model.get("pose_prior", "uniform")
    block["pose_prior"] = {"kind": kind, "max_tilt_deg": model.get("max_tilt_deg")}
    if kind == "inplane":
        block["unresolved_z"] = True
        block["verdict"] = (
            "flat, or unresolved in z: the in-plane pose prior (model.pose_prior) keeps the "
            "cloud flat; its depth was not measured"
        )
    elif kind == "tilt":
        block["verdict"] += f" (pose prior: tilt <= {model.get('max_tilt_deg')} deg)"


def held_out_tilts(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tilts (degrees, against each set's own view axis) of a run's held-out poses: ``poses``
    (refined, else the CNN's) and, in simulated runs, ``true``; empty without poses."""

    poses = RunFolder(run_dir).read_test_poses() or {}
    out = {}
    for key, name in (("rot_pred", "poses"), ("rot_true", "true")):
        if key in poses:
            d = view_directions(poses[key])
            out[name] = tilts_deg(d, view_axis(d)[0])
    return out
