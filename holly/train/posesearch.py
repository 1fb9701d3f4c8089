"""The refinement stage's pose searches against the current cloud: a global search of new poses
for a set of images (from the CNN's rotation hypotheses and seeded random rotations), and the
rescoring of a pose table (each image jumps to its best candidate around its current pose).
The math is :mod:`holly.method.refine`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from holly.config import ExperimentConfig
from holly.method import refine
from holly.method.viewprior import PosePrior

log = logging.getLogger(__name__)

# images [I, H, W] at sigma -> the CNN's rotation hypotheses [I, K, 3, 3]
Hypotheses = Callable[[torch.Tensor, float], torch.Tensor]
# sigma -> images [B, H, W] of a fixed set of images
ImagesAt = Callable[[float], torch.Tensor]


def render_spec(cfg: ExperimentConfig) -> refine.RenderSpec:
    """How the refinement renders and scores a pose (render size, loss)."""
    r, lc = cfg.render, cfg.loss
    return refine.RenderSpec(r.height, r.width, lc.kind, lc.mask_threshold, r.data_blur)


def search_spec(cfg: ExperimentConfig, keep: int, rotations: int) -> refine.SearchSpec:
    """The global pose search of the refinement, keeping ``keep`` candidates of the hypotheses
    and ``rotations`` seeded random rotations."""
    rc = cfg.refine
    return refine.SearchSpec(
        rotations=rotations,
        sigma=rc.search_sigma,
        keep=keep,
        ladder_steps=rc.ladder_steps,
        lr=rc.pose_lr,
        batch_size=rc.batch_size,
        flips=rc.flips,
        seed=cfg.seed,
        prior=PosePrior.from_config(cfg),
    )


class PoseSearch:
    """Searches poses of images read at ``sigma`` against ``points`` (the cloud being refined),
    starting from the CNN's ``hypotheses``."""

    def __init__(
        self, cfg: ExperimentConfig, points: torch.Tensor, hypotheses: Hypotheses, sigma: float
    ):
        self.cfg, self.points, self.hypotheses, self.sigma = cfg, points, hypotheses, sigma

    def symmetries(self) -> torch.Tensor:
        """The current cloud's symmetries that the searches try (``refine.symmetries``)."""
        return refine.cloud_symmetries(self.points, self.cfg.refine.symmetries, self.cfg.seed)

    def new_poses(self, images_at: ImagesAt, keep: int, rotations: int) -> refine.PoseTable:
        """Poses of a set of images (``images_at(sigma) -> [B, H, W]``) against the current cloud:
        the CNN's hypotheses and a global search (:func:`holly.method.refine.search_poses`)."""
        sigma = self.sigma
        hyps = self.hypotheses(images_at(sigma), sigma)
        symmetries = self.symmetries()
        with torch.enable_grad():
            return refine.search_poses(
                self.points,
                hyps,
                images_at,
                sigma,
                render_spec(self.cfg),
                search_spec(self.cfg, keep, rotations),
                symmetries,
            )

    def rescore(self, table: refine.PoseTable, pose_adam: refine.RowAdam, images_of, step: int):
        """Jump every image of ``table`` (``images_of(rows) -> [B, H, W]`` at ``sigma``) to its
        best candidate around its current pose, resetting the pose optimiser of those that
        moved."""
        symmetries, prior = self.symmetries(), PosePrior.from_config(self.cfg)
        rows = torch.arange(len(table), device=self.points.device)
        moved = 0
        for idx in rows.split(256):
            rot, shift, sigma = table.pose(idx)
            target = refine.normalised(images_of(idx))
            new_rot, new_shift, pick = refine.search_candidates(
                self.points,
                rot[:, None],
                shift,
                sigma,
                target,
                render_spec(self.cfg),
                symmetries,
                self.cfg.refine.flips,
                prior,
            )
            changed = idx[pick != 0]
            table.jump(idx, new_rot, new_shift)
            pose_adam.reset(changed)
            moved += len(changed)
        log.info(
            "refinement step %d: %d of %d images moved to another candidate",
            step,
            moved,
            len(table),
        )


def fresh_poses(cfg: ExperimentConfig, points, table, pose_adam, idx, target, step: int) -> None:
    """New poses for table rows ``idx`` (normalised images ``target``) from a search against
    the cloud ``points`` over ``refine.table_rotations`` random rotations drawn for this
    ``step`` (seeded: a resumed run draws the same); their pose optimiser restarts
    (:func:`holly.method.refine.fresh_search`, ``refine.global_steps``)."""
    # a stream of its own: seed * 7919 + k is the table subset's (k = 17) and calibration's (1)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_033 + step)
    moved = searched_afresh(cfg, points, table, pose_adam, idx, target, gen)
    if step % cfg.train.log_every == 0:
        log.info(
            "refinement step %d: a fresh search moved %d of %d poses by over %g deg",
            step,
            int(moved.sum()),
            len(idx),
            refine.DISTINCT_DEG,
        )


def searched_afresh(cfg: ExperimentConfig, points, table, pose_adam, idx, target, gen):
    """Rows ``idx`` searched afresh over ``refine.table_rotations`` rotations drawn from the
    pose prior with ``gen``, their pose optimiser restarted; which rows moved (bool)."""
    rc = cfg.refine
    rotations = PosePrior.from_config(cfg).sample(rc.table_rotations, gen).to(points)
    moved = refine.fresh_search(
        points,
        table,
        idx,
        target,
        render_spec(cfg),
        rotations,
        rc.table_keep,
        rc.ladder_steps,
        rc.pose_lr,
    )
    pose_adam.reset(idx)
    return moved
