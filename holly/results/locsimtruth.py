"""The ground truth of a run trained on a simulated localisation table, for ``holly evaluate``.

A run trained on an image store that ``holly localise`` made from a table of ``holly
simulate-localisations`` (:mod:`holly.data.locsim`) has no ``ground_truth.ply`` and no true
poses: the store holds what real data hold. The simulation's sidecars still know both, so this
module recovers them in the run's own frame and units:

* **the cloud**: the structure's sites (``NAME.sites.ply``'s points, ``NAME.truth.npz``'s
  ``sites_nm``) divided by the run's nm per model unit (provenance ``scale``); ``holly localise``
  centres each particle on its bounding box, which the mirror-aware alignment's centring removes;
* **the poses** of the held-out images, in ``test_poses.npz`` order: the store's images
  (:func:`holly.data.locsim.store_poses`) picked as training picked them, the run's
  ``split_by_particle(ids, data.test_fraction, seed)`` and then the first ``train.test_images``
  of that test set (:mod:`holly.data.realdata`, :mod:`holly.train.evaluation`);
* **the views** the simulation drew for those images: the tilt of each particle's viewing
  direction from the structure's z axis (``tilt_deg``, folded to [0, 90] as
  :mod:`holly.results.views` measures tilts: a view from below counts as one from above), to
  compare with what the run reports.

``holly evaluate RUN --locsim-truth NAME.csv`` scores the run with these as it scores a
simulated run with its own ground truth; the ``locsim_truth`` block of ``evaluation.json``
records where they came from.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from holly.data.imagestore import ImageStore, split_by_particle
from holly.data.locsim import read_record, read_truth, sidecars, store_particles, store_poses
from holly.data.shapes import SYMMETRY_ORDER
from holly.errors import HollyError
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocSimTruth:
    """What a simulation knows about a run: ``points [S, 3]`` (sites, model units),
    ``rot_true [T, 3, 3]`` (held-out poses, renderer convention), ``symmetry_order`` of the
    simulated shape, and ``block`` (``evaluation.json``'s ``locsim_truth``)."""

    points: np.ndarray
    rot_true: np.ndarray
    symmetry_order: int
    block: dict


def held_out_images(cfg: dict, store: ImageStore) -> np.ndarray:
    """Store indices of a zarr run's held-out images, in ``test_poses.npz`` order."""
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    ids = store.particle_ids
    if data.get("max_images") is not None:
        ids = ids[: int(data["max_images"])]
    _, test_idx = split_by_particle(ids, float(data.get("test_fraction", 0.05)), int(cfg["seed"]))
    return test_idx[: int(train.get("test_images", 256))]


def _zarr_store(run: RunFolder, cfg: dict) -> Path:
    data = cfg.get("data") or {}
    if data.get("source") != "zarr" or not data.get("store"):
        raise HollyError(
            f"--locsim-truth: {run.config} is not a run on an image store (data.source zarr); "
            "a simulated run has its own ground truth"
        )
    store = Path(data["store"])
    if not store.exists():
        raise HollyError(f"--locsim-truth: the run's image store {store} is missing")
    return store


def locsim_truth(run_dir: str | os.PathLike, table: str | os.PathLike) -> LocSimTruth:
    """The ground truth of ``run_dir`` from the simulated ``table`` it was localised from.

    Raises
    ------
    HollyError
        The run is not on an image store, has no nm scale, its store was not made from
        ``table``, or its held-out poses do not match the store's test set.
    """
    run = RunFolder(run_dir)
    cfg = run.read_config()
    store_path = _zarr_store(run, cfg)
    scale = run.read_scale()
    if scale is None:
        raise HollyError(
            f"--locsim-truth: {run.provenance} records no nm per model unit; the sites (nm) "
            "cannot be put in the run's units"
        )
    truth, record = read_truth(table), read_record(table)
    store = ImageStore.open(store_path)
    test = held_out_images(cfg, store)
    rot_true = store_poses(store_path, table)[test]
    particle = store_particles(store, len(truth["rotations"]), table)[test]
    poses = run.read_test_poses()
    if poses is not None and len(poses["rot_pred"]) != len(rot_true):
        raise HollyError(
            f"--locsim-truth: {run.test_poses} holds {len(poses['rot_pred'])} held-out poses but "
            f"the run's split of {store_path} gives {len(rot_true)}; was the run trained on it?"
        )
    nm = scale["nm_per_model_unit"]
    params = record.get("params") or {}
    shape = str(params.get("shape"))
    sim_tilt = np.asarray(truth["tilt_deg"], dtype=np.float64)[particle]
    sim_tilt = np.minimum(sim_tilt, 180.0 - sim_tilt)  # axial, as views.py measures tilts
    block = {
        "table": str(table),
        "sites": str(sidecars(table)["sites"]),
        "shape": shape,
        "n_sites": len(truth["sites_nm"]),
        "nm_per_model_unit": nm,
        "size_nm": record.get("size_nm"),
        "size_model_units": None if record.get("size_nm") is None else record["size_nm"] / nm,
        "params": params,
        "held_out_images": len(test),
        "held_out_particles": len(np.unique(particle)),
        "simulated_tilt_deg": {
            "median": float(np.median(sim_tilt)),
            "p90": float(np.percentile(sim_tilt, 90)),
            "max": float(sim_tilt.max()),
        },
    }
    log.info(
        "locsim truth %s: %d sites (%.4g nm per model unit), %d held-out poses",
        table,
        block["n_sites"],
        nm,
        len(test),
    )
    points = np.asarray(truth["sites_nm"], dtype=np.float64) / nm
    return LocSimTruth(points, rot_true, SYMMETRY_ORDER.get(shape, 1), block)
