"""``refine.rebuild_rounds``: hard EM with a global refit before the refinement's steps.

Each round searches every pose-table image afresh against the cloud (as
``refine.global_steps`` searches: :func:`holly.train.posesearch.searched_afresh`) and then
rebuilds the cloud from a blob at those poses (:func:`holly.method.rebuild.rebuild_cloud`). Why,
and what it gained: that module's docstring and docs/maintainer-notes.md ("A global refit").
"""

from __future__ import annotations

import logging

import torch

from holly.method import refine
from holly.method.rebuild import rebuild_cloud
from holly.train.posesearch import render_spec, searched_afresh

log = logging.getLogger(__name__)


def rebuild_rounds(stage, state) -> None:
    """``refine.rebuild_rounds`` rounds (none: nothing) on ``stage`` (a :class:`Refinement`)
    with the pose table and optimisers of ``state``: every row searched afresh, then the cloud
    rebuilt."""
    cfg, rc = stage.cfg, stage.cfg.refine
    # streams of their own (seeded: a run interrupted in the rounds redoes the same ones):
    # rotations for the searches, blobs and batches for the rebuilds
    search_gen = torch.Generator().manual_seed(cfg.seed * 1_000_037 + 11)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_037 + 12)
    spec = render_spec(cfg)

    def target_of(rows: torch.Tensor) -> torch.Tensor:
        return refine.normalised(stage.table_images(rows))

    rows = torch.arange(len(state.table), device=stage.device)
    if rc.rebuild_rounds:  # minutes of work before the refinement's first step: say so
        log.info(
            "refinement: %d rebuild rounds, each a fresh search of %d table poses and %d batches",
            rc.rebuild_rounds,
            len(rows),
            rc.rebuild_steps,
        )
    for r in range(rc.rebuild_rounds):
        moved = 0
        for idx in rows.split(rc.batch_size):
            args = (stage.points, state.table, state.pose_adam, idx, target_of(idx), search_gen)
            moved += int(searched_afresh(cfg, *args).sum())
        loss = rebuild_cloud(
            stage.points,
            state.table,
            target_of,
            spec,
            rc.rebuild_steps,
            rc.batch_size,
            gen,
            rc.symmetry,
        )
        log.info(
            "refinement: rebuild round %d of %d: %d of %d table poses moved over %g deg in a "
            "fresh search, the cloud rebuilt from a blob (%d batches, last loss %.4g per image)",
            r + 1,
            rc.rebuild_rounds,
            moved,
            len(rows),
            refine.DISTINCT_DEG,
            rc.rebuild_steps,
            loss,
        )
