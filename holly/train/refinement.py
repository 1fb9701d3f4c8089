"""The refinement stage: after the amortised phase, per-image poses and the cloud are refined.

A seeded subset of the training images gets a pose table, started from the CNN's rotation
hypotheses and a global search; each refinement step then moves one batch of table poses and
takes one step on the cloud. The held-out poses are searched the same way against the final
cloud (:mod:`holly.train.posesearch`). The stage sees the CNN only as a callable of its
hypotheses; the math lives in :mod:`holly.method.refine`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from holly.config import ExperimentConfig
from holly.data.fusionrecord import FusionStart
from holly.method import refine
from holly.method.cloudsymmetry import fold, orbit, project, symmetric_start, symmetry_axis
from holly.method.fusion import cloud_start, image_rotations
from holly.method.viewprior import PosePrior
from holly.train.posesearch import Hypotheses, ImagesAt, PoseSearch, fresh_poses, render_spec
from holly.train.rebuild import rebuild_rounds

log = logging.getLogger(__name__)


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
    def new(cls, items: torch.Tensor, table: refine.PoseTable, points: torch.Tensor, rc, device):
        """The state of a stage starting with ``table`` (poses of training ``items``)."""
        return cls(
            items=items,
            table=table,
            pose_adam=refine.RowAdam(len(table), 6, rc.pose_lr).to(device),
            points_opt=torch.optim.Adam([points], lr=rc.points_lr),
        )

    @classmethod
    def from_state(
        cls, state: dict, points: torch.Tensor, cfg: ExperimentConfig, device
    ) -> RefinementState:
        """The state a checkpoint's ``refinement`` entry holds, for a run of ``cfg``."""
        rc = cfg.refine
        adam = refine.RowAdam(1, 6, rc.pose_lr)
        adam.load_state_dict(state["pose_adam"])
        opt = torch.optim.Adam([points], lr=rc.points_lr)
        opt.load_state_dict(state["points_opt"])
        return cls(
            state["items"],
            refine.PoseTable.from_state(state["table"], PosePrior.from_config(cfg)),
            adam.to(device),
            opt,
        )

    def step(self, points: torch.Tensor, idx: torch.Tensor, target: torch.Tensor, spec, rc):
        """``rc.pose_steps`` steps on the poses of table rows ``idx`` (normalised images
        ``target``), then one step on the cloud ``points``; returns the loss and the rows'
        sigmas."""
        for _ in range(rc.pose_steps):
            refine.pose_step(points, self.table, self.pose_adam, idx, target, spec)
        rot, shift, sigma = self.table.pose(idx)
        loss = refine.pose_losses(points, rot, shift, sigma, target, spec).sum()
        self.points_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.points_opt.step()
        if rc.symmetry > 1:  # back onto the declared symmetry: a projected gradient step
            with torch.no_grad():
                points.copy_(project(points, rc.symmetry))
        return loss, sigma


class Refinement:
    """The refinement stage of one run from step ``first_step`` on: ``points`` (the model's cloud,
    refined in place), ``train_set`` (``images(idx, sigma)``) read at ``sigma`` (the amortised
    phase's final); ``state`` is None until the stage starts (first step or checkpoint)."""

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
        self.fusion: FusionStart | None = None  # refine.fusion: set before the stage starts
        self.start_cloud: np.ndarray | None = None  # refine.start_points: set likewise
        self.train_set, self.sigma, self.first_step = train_set, sigma, first_step
        self.search = PoseSearch(cfg, points, hypotheses, sigma)
        self.state: RefinementState | None = None

    def start(self) -> None:
        """The pose table of a seeded subset of training images, and both optimisers."""
        items, table = first_table(self)
        self.state = RefinementState.new(items, table, self.points, self.cfg.refine, self.device)
        log.info("refinement: pose table of %d training images", len(table))
        rebuild_rounds(self, self.state)  # refine.rebuild_rounds (none by default)

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose steps on a batch of table rows, then a step on the cloud: loss and mean sigma."""
        if self.state is None:
            self.start()
        st, rc = self.state, self.cfg.refine
        k = step - self.first_step
        if rc.rescore_every and k > 0 and k % rc.rescore_every == 0:
            self.search.rescore(st.table, st.pose_adam, self.table_images, step)
        idx = refine.batch_rows(len(st.table), rc.batch_size, k, self.cfg.seed).to(self.device)
        target = refine.normalised(self.table_images(idx))
        if k < rc.global_steps:
            fresh_poses(self.cfg, self.points, st.table, st.pose_adam, idx, target, step)
        loss, sigma = st.step(self.points, idx, target, render_spec(self.cfg), rc)
        return loss.detach(), sigma.detach().mean()

    def table_images(self, rows: torch.Tensor) -> torch.Tensor:  # of the pose table's rows
        return self.train_set.images(self.state.items[rows], self.sigma)

    def test_poses(self, images_at: ImagesAt) -> refine.PoseTable:
        """Held-out poses against the final cloud (fixed): hypotheses and a global search."""
        rc = self.cfg.refine
        return self.search.new_poses(images_at, rc.search_keep, rc.search_rotations)

    def state_dict(self) -> dict | None:
        """The checkpoint's ``refinement`` entry: None before the stage has started."""
        return self.state.state_dict() if self.state else None

    def load_state_dict(self, state: dict | None) -> None:
        """Restore a checkpoint's ``refinement`` entry (None: the stage had not started)."""
        if state is None:
            return
        self.state = RefinementState.from_state(state, self.points, self.cfg, self.device)


def first_table(stage: Refinement) -> tuple[torch.Tensor, refine.PoseTable]:
    """The table's items (positions in the training set) and their first poses: from the CNN's
    hypotheses and the search (against ``refine.start_points`` where given), or from
    ``refine.fusion``'s particle fusion."""
    if stage.fusion is not None:
        return fusion_table(stage.fusion, stage.train_set, stage.points, stage.sigma, stage.cfg)
    rc = stage.cfg.refine
    if stage.start_cloud is not None:  # refine.start_points: in place of the CNN's cloud
        with torch.no_grad():
            stage.points.copy_(torch.as_tensor(stage.start_cloud).to(stage.points))
        log.info("refinement: the cloud starts from %s", rc.start_points)
    if rc.symmetry > 1:  # the cloud made symmetric before the table is searched on it
        with torch.no_grad():
            stage.points.copy_(torch.as_tensor(symmetric_start_cloud(stage)).to(stage.points))
    items = refine.table_subset(len(stage.train_set), rc.images, stage.cfg.seed)
    table = stage.search.new_poses(
        lambda sigma: stage.train_set.images(items, sigma), rc.table_keep, rc.table_rotations
    )
    return items, table


def symmetric_start_cloud(stage: Refinement) -> np.ndarray:
    """The refinement's first cloud (the CNN phase's, or ``refine.start_points``') made
    ``refine.symmetry``-fold symmetric about z. Under a uniform pose prior its axis is first
    turned onto z (:func:`symmetry_axis`: the cloud's frame is its own); a tilt or in-plane
    prior fixes z as the viewing axis, which the axis must then be."""
    cfg, order = stage.cfg, stage.cfg.refine.symmetry
    cloud = stage.points.detach().cpu().double().numpy()
    if cfg.model.pose_prior == "uniform":
        cloud = (cloud - cloud.mean(0)) @ symmetry_axis(cloud, order, cfg.seed).T
        log.info("refinement: the cloud's %d-fold axis turned onto z", order)
    return symmetric_start(cloud, order, cfg.seed)


def fusion_table(
    fusion: FusionStart, train_set, points: torch.Tensor, sigma: float, cfg: ExperimentConfig
) -> tuple[torch.Tensor, refine.PoseTable]:
    """``refine.fusion``: the table's items (a seeded subset of the fused particles' training
    images) at their poses in the fusion; ``points`` restart on the fused localisations (the
    poses' frame), flat: the CNN phase's cloud is in a frame of its own."""
    angles, shifts, fused, down = fusion.for_images(train_set.indices)
    eligible = np.flatnonzero(fused)
    rows = eligible[refine.table_subset(len(eligible), cfg.refine.images, cfg.seed).numpy()]
    like = {"dtype": points.dtype, "device": points.device}
    table = refine.PoseTable(
        image_rotations(angles[rows], down[rows]).to(**like),
        torch.as_tensor(shifts[rows]).to(**like),
        torch.full((len(rows),), float(sigma), **like),
        PosePrior.from_config(cfg),
    )
    order = cfg.refine.symmetry
    if order > 1:  # one sector's part, from the fused points folded into it, then its turns
        part = cloud_start(fold(fusion.points, order), points.shape[0] // order, cfg.seed)
        cloud = orbit(torch.as_tensor(part), order).numpy()
    else:
        cloud = cloud_start(fusion.points, points.shape[0], cfg.seed)
    with torch.no_grad():
        points.copy_(torch.as_tensor(cloud, **like))
    log.info(
        "refinement: poses of %d of %d training images, and the cloud, from the particle fusion %s",
        len(rows),
        len(eligible),
        cfg.refine.fusion,
    )
    return torch.as_tensor(rows), table
