"""Pose error of a real-data run against each particle's own posed model (the tetrahedra).

Simulated particle sets such as dianamindroc/smlm's tetrahedra ship, beside the localisations,
each particle's ground-truth vertices in the pose it was imaged in (``model_structure_K.csv``,
4 x 3, the localisation files' units). A run trained on them writes its held-out poses
(``test_poses.npz`` ``rot_pred``, refined where the run refined) but no ``rot_true``: the image
store only knows the particle and the in-plane rotation of each copy. This module rebuilds
each held-out image's true vertices in the renderer's frame and compares.

**The true vertices of an image.** `holly localise` renders a particle's localisations
``(x, y)`` with y flipped (camera rows grow down, the renderer's +y is up), centred and scaled,
then rotated in plane by the copy's ``rotation_angle`` ``a``. The same map applied to the model
vertices gives ``W = Rz(a) diag(1, -1, -1) V`` (the z flip keeps the map a proper rotation;
depth is invisible anyway, see below). Centring and scale do not change a rotation, so both are
dropped (every fit below centres its points).

**The rotation to compare with.** The renderer draws ``R x`` (:mod:`holly.method.render`). The
reconstruction's four vertex clusters ``C`` (:func:`holly.results.structure.vertex_clusters`)
are mapped onto ``W`` by Kabsch (:func:`holly.method.align.kabsch`, proper rotations) for every
one of the 24 vertex matchings and for ``W`` and its depth flip ``diag(1, 1, -1) W`` (the
mirror image makes the same projection). A regular tetrahedron has 12 proper rotational
symmetries, so 12 matchings of each fit equally well: every fit within
:data:`SYMMETRY_TOLERANCE` edge lengths of the best RMS residual is an equally true pose. The
pose error of an image is the smallest geodesic angle between ``rot_pred`` and those true poses.
It needs no global alignment: ``C`` is in the reconstruction's own frame, like ``rot_pred``.

The held-out images are ``test.indices[:len(rot_pred)]`` of the run's own data split
(:func:`holly.data.realdata.store_splits`, the code training used), so each row of
``test_poses.npz`` is tied to its store image, hence to its particle and copy angle.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path

import numpy as np
import torch

from holly.config import from_dict
from holly.data.imagestore import ImageStore
from holly.data.pointio import read_points
from holly.data.realdata import store_splits
from holly.errors import HollyError
from holly.method.align import kabsch
from holly.method.geometry import geodesic_angle, rotation_about_z
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

# fits whose RMS residual is within this many mean edges of the best are symmetric twins
SYMMETRY_TOLERANCE = 0.1
DEPTH_FLIP = np.diag([1.0, 1.0, -1.0])
# source (x, y down, z) -> renderer (x, y up, z): the y flip with z flipped too, a rotation
SOURCE_TO_RENDER = np.diag([1.0, -1.0, -1.0])
MATCHINGS = np.array(list(itertools.permutations(range(4))))  # [24, 4]


def true_poses(vertices: np.ndarray, posed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every proper rotation that maps the cloud's vertices onto one image's true vertices.

    Parameters
    ----------
    vertices : ndarray [4, 3]
        The reconstruction's vertex clusters (its own frame).
    posed : ndarray [4, 3]
        The image's true vertices in the renderer's frame (any order).

    Returns
    -------
    rotations : ndarray [48, 3, 3]
        Kabsch fits ``R vertices ≈ posed[matching]`` for the 24 matchings, of ``posed`` and of
        its depth flip.
    rmsd : ndarray [48]
        RMS residual of each fit (the units of the inputs, after centring).
    """
    c = np.asarray(vertices, np.float64)
    w = np.asarray(posed, np.float64)
    targets = np.concatenate([w[MATCHINGS], (w @ DEPTH_FLIP)[MATCHINGS]])  # [48, 4, 3]
    source = np.broadcast_to(c, targets.shape)
    rot, _ = kabsch(source, targets)
    cc = c - c.mean(0)
    moved = cc @ np.swapaxes(rot, 1, 2)  # [48, 4, 3]
    resid = moved - (targets - targets.mean(1, keepdims=True))
    return rot, np.sqrt((resid**2).sum(-1).mean(-1))


def pose_errors(
    vertices: np.ndarray, posed: np.ndarray, rot_pred: np.ndarray, edge: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image pose error (degrees) against the true vertices, up to the symmetries.

    Parameters
    ----------
    vertices : ndarray [4, 3]
        The reconstruction's vertex clusters.
    posed : ndarray [T, 4, 3]
        Each image's true vertices in the renderer's frame (same length unit as ``vertices``
        up to scale: the fits centre but do not scale, so pass both in one unit).
    rot_pred : ndarray [T, 3, 3]
        The run's poses.
    edge : float, optional
        Mean edge of ``vertices`` (for the symmetry tolerance); computed when omitted.

    Returns
    -------
    errors_deg : ndarray [T]
    rmsd : ndarray [T]
        The best fit's RMS residual per image (how well the cloud's vertices match the model,
        whatever the pose).
    """
    c = np.asarray(vertices, np.float64)
    if edge is None:
        i, j = np.triu_indices(4, 1)
        edge = float(np.linalg.norm(c[i] - c[j], axis=1).mean())
    errors, best = [], []
    for w, r in zip(np.asarray(posed), np.asarray(rot_pred, np.float64), strict=True):
        rot, rmsd = true_poses(c, w)
        twins = rmsd <= rmsd.min() + SYMMETRY_TOLERANCE * edge
        angles = geodesic_angle(rot[twins], np.broadcast_to(r, (int(twins.sum()), 3, 3)))
        errors.append(np.degrees(np.min(angles)))
        best.append(rmsd.min())
    return np.asarray(errors), np.asarray(best)


def image_vertices(models: np.ndarray, angles: np.ndarray, per_unit: float = 1.0) -> np.ndarray:
    """True vertices ``[T, 4, 3]`` of images in the renderer's frame (see the module docstring).

    ``models [T, 4, 3]``: each image's particle model in the localisation files' units;
    ``angles [T]``: the copies' in-plane rotations (radians); ``per_unit``: model units per
    source unit (a scale, so that the result is in model units)."""
    rz = rotation_about_z(torch.as_tensor(np.asarray(angles), dtype=torch.float64)).numpy()
    v = np.asarray(models, np.float64) @ SOURCE_TO_RENDER * per_unit
    return v @ np.swapaxes(rz, 1, 2)


def _number(name: str) -> int | None:
    """The last integer in a file name's stem (``smlm_sample12.csv`` -> 12)."""
    found = re.findall(r"\d+", Path(name).stem)
    return int(found[-1]) if found else None


def read_particle_models(folder: str | Path, labels: list[str]) -> dict[int, np.ndarray]:
    """Each particle's posed model vertices, matched to the particles by file number.

    Parameters
    ----------
    folder : path
        A folder of CSV files with a header and one vertex per row (x, y, z), one file per
        particle, numbered like the localisation files (``model_structure_K.csv`` for
        ``smlm_sampleK.csv``).
    labels : list of str
        The store's particle labels (read order): the localisation file names.

    Returns
    -------
    dict
        particle index (read order) -> ndarray [V, 3]; particles without a model are absent.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HollyError(
            f"structure model {folder}: the tetrahedron check's pose error needs a folder of "
            "per-particle model files (model_structure_K.csv)"
        )
    by_number = {_number(f.name): f for f in sorted(folder.glob("*.csv"))}
    out = {}
    for index, label in enumerate(labels):
        path = by_number.get(_number(label))
        if path is not None:
            out[index] = read_points(path)  # x, y, z columns after a header line
    if not out:
        raise HollyError(
            f"structure model {folder}: no model file matches the particles' file numbers "
            f"(e.g. {labels[:2]})"
        )
    return out


def _summary(errors: np.ndarray) -> dict:
    return {
        "median": float(np.median(errors)),
        "mean": float(errors.mean()),
        "p90": float(np.percentile(errors, 90)),
        "within_10deg": float((errors <= 10).mean()),
    }


def particle_pose_block(run: RunFolder, vertices: np.ndarray, model_folder: str | Path) -> dict:
    """The ``pose_error`` entry of a tetrahedron check: held-out poses against the model files.

    Returns a dict with ``refined`` and ``amortised`` error summaries (degrees: median, mean,
    p90, share within 10 degrees; ``refined`` is ``rot_pred``, the CNN's own poses where the
    run did not refine), ``images`` and ``particles`` compared, ``fit_rmsd_median`` (model
    units: how well the cloud's vertices fit each model, pose aside) and ``symmetry``.
    Raises HollyError when the run has no held-out poses or no store to tie them to.
    """
    poses = run.read_test_poses()
    if poses is None or "rot_pred" not in poses:
        raise HollyError(f"{run.test_poses} not found: the pose error needs the held-out poses")
    raw = run.read_config(required=False)
    if (raw.get("data") or {}).get("source") != "zarr":
        raise HollyError("the pose error against model files needs a run on an image store")
    test = store_splits(from_dict(raw), torch.device("cpu"))[1]
    store = ImageStore.open(raw["data"]["store"])
    idx = test.indices[: len(poses["rot_pred"])]
    source = store.attrs.get("source") or {}
    labels = source.get("particle_labels") or [f["name"] for f in source.get("files", [])]
    models = read_particle_models(model_folder, [Path(x).name for x in labels])
    particle = store.particle_ids[idx]
    keep = np.array([p in models for p in particle])
    if not keep.any():
        raise HollyError(f"{model_folder}: none of the held-out particles has a model file")
    angles = store.array("rotation_angle")[idx][keep]
    per_unit = (store.height / 4) / float(store.attrs["params"]["pixels_per_unit"])
    posed = image_vertices(np.stack([models[p] for p in particle[keep]]), angles, 1 / per_unit)
    refined, rmsd = pose_errors(vertices, posed, poses["rot_pred"][keep])
    amortised = poses.get("rot_amortised", poses["rot_pred"])[keep]
    block = {
        "refined": _summary(refined),
        "amortised": _summary(pose_errors(vertices, posed, amortised)[0]),
        "images": int(keep.sum()),
        "particles": int(np.unique(particle[keep]).size),
        "fit_rmsd_median": float(np.median(rmsd)),
        "symmetry": "12 proper rotations of the tetrahedron x the depth flip",
    }
    log.info(
        "pose error against the model files: median %.1f deg (CNN %.1f) over %d images",
        block["refined"]["median"],
        block["amortised"]["median"],
        block["images"],
    )
    return block
