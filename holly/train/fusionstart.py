"""``refine.fusion``: the run's own particle fusion, where its refinement starts.

For top views the CNN's poses fail on sparse particles (a few dozen sites, each showing a
different subset), while a particle fusion registers the particles' localisations onto each
other (:mod:`holly.method.fusion`). With ``refine.fusion`` the run fuses its own training
particles (a half-set run its half only, so the two halves stay independent; never the
held-out ones) before the CNN phase, keeps the record as the run folder's ``fusion.json``
(read back when the run resumes), and its refinement starts from it
(:func:`holly.train.refinement.fusion_table`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np

from holly.config import ExperimentConfig
from holly.data.fusionrecord import (
    FusionStart,
    default_sigma,
    fuse_store,
    fusion_quality,
    fusion_start,
    read_fusion,
    write_fusion,
)
from holly.data.localisations import read_store_localisations
from holly.errors import HollyError
from holly.method.fusion import FusionParams
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)


def start_fusion(trainer) -> None:
    """Give ``trainer``'s refinement its fusion start, unless it needs none (``refine.fusion``
    off, or the stage already restored from a checkpoint)."""
    if not trainer.cfg.refine.fusion or trainer.refinement.state is not None:
        return
    trainer.refinement.fusion = own_fusion(
        trainer.cfg, trainer.data.train.particle_ids(), trainer.run_folder, trainer.seed
    )


def own_fusion(
    cfg: ExperimentConfig, particles: np.ndarray, run: RunFolder, seed: int
) -> FusionStart:
    """The fusion of ``particles`` (the training split's) of ``cfg.data.store``: the run's
    ``fusion.json`` if it is theirs, else fused now and written there."""
    store, rc = cfg.data.store, cfg.refine
    particles = np.unique(particles)
    record, locs = _reusable(run, rc, seed, particles), None
    if record is None:
        locs = read_store_localisations(store)  # read once: the fusion and its poses use it
        sigma = rc.fusion_sigma if rc.fusion_sigma is not None else default_sigma(locs)
        params = FusionParams(sigma=sigma, **_settings(rc))
        log.info(
            "fusing %d training particles of %s (kernel %.3g %s)",
            len(particles),
            store,
            sigma,
            locs.unit,
        )
        record, _ = fuse_store(locs, params, seed, store, particles)
        write_fusion(run.fusion, record)
    else:
        log.info("fusion: %s's record of %d particles", run.fusion, record["particles"])
    log.info("fusion: %s", fusion_quality(record))
    return fusion_start(store, record, locs)


def _settings(rc) -> dict:
    """The :class:`FusionParams` the config's ``refine.fusion_*`` keys set (all but the kernel,
    which may be left to the store)."""
    return {
        "method": rc.fusion_method,
        "anneal_rounds": rc.fusion_rounds,
        "anneal_starts": rc.fusion_starts,
        "partners": rc.fusion_partners,
        "bootstrap_rounds": rc.fusion_bootstrap,
        "symmetry": rc.symmetry,
        "sites": rc.fusion_sites,
        "mirror": rc.fusion_mirror,
    }


# FusionParams added after records were first written, with the value that reproduces what
# those records' holly did (no symmetry, the free density): a record without them used that
ADDED_LATER = {"symmetry": 1, "sites": 0, "mirror": False}


def _reusable(run: RunFolder, rc, seed: int, particles: np.ndarray) -> dict | None:
    """The run folder's fusion record if it was made with these settings of these particles."""
    if not run.fusion.exists():
        return None
    try:
        record = read_fusion(run.fusion)
    except HollyError as exc:
        log.warning("%s; fusing again", exc)
        return None
    params = FusionParams(sigma=rc.fusion_sigma or 0.0, **_settings(rc))
    wanted = {**asdict(params), "seed": seed}
    if rc.fusion_sigma is None:
        del wanted["sigma"]  # the store's precision, checked by the store's creation time
    made = {**ADDED_LATER, **(record.get("params") or {})}
    same = all(made.get(k) == v for k, v in wanted.items()) and {
        t["particle"] for t in record["transforms"]
    } <= set(particles.tolist())
    return record if same else None
