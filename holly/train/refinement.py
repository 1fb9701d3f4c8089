"""The refinement stage: after the amortised phase, per-image poses and the cloud are refined.

A seeded subset of the training images gets a pose table, started from the CNN's rotation
hypotheses and a global search; each refinement step then moves one batch of table poses and
takes one step on the cloud. The held-out poses are searched the same way against the final
cloud. The stage sees the CNN only as a callable of its hypotheses; the math lives in
:mod:`holly.method.refine`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from holly.config import ExperimentConfig
from holly.method import refine

log = logging.getLogger(__name__)

# images [I, H, W] at sigma -> the CNN's rotation hypotheses [I, K, 3, 3]
Hypotheses = Callable[[torch.Tensor, float], torch.Tensor]
# sigma -> images [B, H, W] of a fixed set of images
ImagesAt = Callable[[float], torch.Tensor]


def render_spec(cfg: ExperimentConfig) -> refine.RenderSpec:
    """How the refinement renders and scores a pose (render size, loss)."""
    r, lc = cfg.render, cfg.loss
    return refine.RenderSpec(r.height, r.width, lc.kind, lc.mask_threshold)


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
    )


@dataclass
class RefinementState:
    """What the refinement stage adds to a checkpoint: the table's training items, the pose
    table, and both optimisers."""

    items: torch.Tensor
    table: refine.PoseTable
    pose_adam: refine.RowAdam
    points_opt: torch.optim.Optimizer

    def state_dict(self) -> dict:
        return {
            "items": self.items,
            "table": self.table.state_dict(),
            "pose_adam": self.pose_adam.state_dict(),
            "points_opt": self.points_opt.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict, points: torch.Tensor, rc, device) -> RefinementState:
        adam = refine.RowAdam(1, 6, rc.pose_lr)
        adam.load_state_dict(state["pose_adam"])
        opt = torch.optim.Adam([points], lr=rc.points_lr)
        opt.load_state_dict(state["points_opt"])
        return cls(
            state["items"],
            refine.PoseTable.from_state(state["table"]),
            adam.to(device),
            opt,
        )


class Refinement:
    """The refinement stage of one run, from run step ``first_step`` on.

    ``points`` is the model's cloud (refined in place), ``train_set`` the training split
    (``images(idx, sigma)``), ``hypotheses`` gives the CNN's rotation hypotheses, and ``sigma``
    is the final sigma of the amortised phase, at which all images are read. ``state`` is None
    until the stage starts (its first step, or a checkpoint made after that).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        points: torch.Tensor,
        train_set,
        hypotheses: Hypotheses,
        sigma: float,
        first_step: int,
        device: torch.device,
    ):
        self.cfg, self.points, self.device = cfg, points, device
        self.train_set, self.hypotheses = train_set, hypotheses
        self.sigma, self.first_step = sigma, first_step
        self.state: RefinementState | None = None

    def searched_poses(self, images_at: ImagesAt, keep: int, rotations: int) -> refine.PoseTable:
        """Poses of a set of images (``images_at(sigma) -> [B, H, W]``) against the current cloud:
        the CNN's hypotheses and a global search (:func:`holly.method.refine.search_poses`)."""
        sigma = self.sigma
        hyps = self.hypotheses(images_at(sigma), sigma)
        symmetries = refine.cloud_symmetries(self.points, self.cfg.refine.symmetries, self.cfg.seed)
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

    def start(self) -> None:
        """The pose table of a seeded subset of training images, and both optimisers."""
        rc = self.cfg.refine
        items = refine.table_subset(len(self.train_set), rc.images, self.cfg.seed)
        table = self.searched_poses(
            lambda sigma: self.train_set.images(items, sigma), rc.table_keep, rc.table_rotations
        )
        self.state = RefinementState(
            items=items,
            table=table,
            pose_adam=refine.RowAdam(len(table), 6, rc.pose_lr).to(self.device),
            points_opt=torch.optim.Adam([self.points], lr=rc.points_lr),
        )
        log.info("refinement: pose table of %d training images", len(table))

    def rescore(self, step: int) -> None:
        """Jump every table image to its best candidate around its current pose."""
        st, rc = self.state, self.cfg.refine
        symmetries = refine.cloud_symmetries(self.points, rc.symmetries, self.cfg.seed)
        rows = torch.arange(len(st.table), device=self.device)
        moved = 0
        for idx in rows.split(256):
            rot, shift, sigma = st.table.pose(idx)
            target = refine.normalised(self.train_set.images(st.items[idx], self.sigma))
            new_rot, new_shift, pick = refine.search_candidates(
                self.points,
                rot[:, None],
                shift,
                sigma,
                target,
                render_spec(self.cfg),
                symmetries,
                self.cfg.refine.flips,
            )
            changed = idx[pick != 0]
            st.table.jump(idx, new_rot, new_shift)
            st.pose_adam.reset(changed)
            moved += len(changed)
        log.info(
            "refinement step %d: %d of %d images moved to another candidate",
            step,
            moved,
            len(st.table),
        )

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run step ``step``: pose steps on one batch of table rows, then one step on the cloud;
        returns the loss and the batch's mean sigma as device tensors."""
        if self.state is None:
            self.start()
        st, rc = self.state, self.cfg.refine
        k = step - self.first_step
        if rc.rescore_every and k > 0 and k % rc.rescore_every == 0:
            self.rescore(step)
        idx = refine.batch_rows(len(st.table), rc.batch_size, k, self.cfg.seed).to(self.device)
        target = refine.normalised(self.train_set.images(st.items[idx], self.sigma))
        spec = render_spec(self.cfg)
        for _ in range(rc.pose_steps):
            refine.pose_step(self.points, st.table, st.pose_adam, idx, target, spec)
        rot, shift, sigma = st.table.pose(idx)
        loss = refine.pose_losses(self.points, rot, shift, sigma, target, spec).sum()
        st.points_opt.zero_grad(set_to_none=True)
        loss.backward()
        st.points_opt.step()
        return loss.detach(), sigma.detach().mean()

    def test_poses(self, images_at: ImagesAt) -> refine.PoseTable:
        """Held-out poses against the final cloud (fixed): hypotheses, global search, and
        coarse-to-fine refinement of the best few candidates."""
        rc = self.cfg.refine
        return self.searched_poses(images_at, rc.search_keep, rc.search_rotations)

    def state_dict(self) -> dict | None:
        """The checkpoint's ``refinement`` entry: None before the stage has started."""
        return self.state.state_dict() if self.state else None

    def load_state_dict(self, state: dict) -> None:
        self.state = RefinementState.from_state(state, self.points, self.cfg.refine, self.device)
