"""The CNN's amortised phase (:class:`AmortisedPhase`): which images each step trains on
(:class:`AmortisedPlan`: the phase's length, the sigma schedule, the batch order, the weight of
the non-winning pose hypotheses), the step itself (:mod:`holly.train.cnnstep`), and what the
steps leave behind: the pose heads' wins (:mod:`holly.train.heads`) and the inputs BatchNorm's
statistics are recomputed from (:mod:`holly.train.calibration`) before the CNN is evaluated
(:mod:`holly.train.evaluation`).

The batch order is a fresh permutation of the training items per epoch, derived from
``(seed, epoch)``: nothing else is random during training, which is what makes a resumed run
exact (:mod:`holly.train.trainer`).
"""

from __future__ import annotations

import logging

import torch

from holly.config import ExperimentConfig
from holly.data.datasets import Data
from holly.data.sigmas import load_sigma_list
from holly.method.curriculum import SigmaSchedule, training_length
from holly.method.model import HollyModel
from holly.train.calibration import BatchNormCalibration
from holly.train.cnnstep import CnnStep
from holly.train.evaluation import Evaluation
from holly.train.heads import HeadWins
from holly.train.refinement import Refinement

log = logging.getLogger(__name__)


class AmortisedPlan:
    """What the amortised phase of one run trains on: ``steps`` steps of the sigma ``schedule``
    (``length``: epochs and steps per epoch, from ``train.epochs`` or ``train.steps``), each on
    a batch of ``train_set`` (``images(idx, sigma)``) in an order derived from ``seed``."""

    def __init__(self, cfg: ExperimentConfig, train_set, seed: int):
        self.cfg, self.train_set, self.seed = cfg, train_set, seed
        t = cfg.train
        self.length = training_length(t.epochs, t.steps, len(train_set), t.batch_size)
        if self.length.short:
            log.warning("%s", self.length.warning())
        values = tuple(load_sigma_list(cfg.sigma.values))
        self.schedule = SigmaSchedule(
            values, cfg.sigma.schedule, self.length.epochs, self.length.steps_per_epoch
        )
        self.steps = min(self.schedule.total_steps, t.max_steps or self.schedule.total_steps)

    def final_sigma(self) -> float:
        """The sigma of the phase's last step, at which the run's final files are made."""
        return self.schedule.sigma_at(max(self.steps - 1, 0))

    def batch_indices(self, step: int) -> torch.Tensor:
        spe, b = self.schedule.steps_per_epoch, self.cfg.train.batch_size
        epoch, k = divmod(step, spe)
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(len(self.train_set), generator=gen)[k * b : (k + 1) * b]

    def epsilon_at(self, step: int) -> float:
        """Weight of the non-winning hypotheses: decays linearly to 0 over the warm-up."""
        m = self.cfg.model
        warmup = m.hypothesis_warmup * self.steps
        if m.pose_hypotheses == 1 or warmup <= 0:
            return 0.0
        return m.hypothesis_epsilon * max(0.0, 1.0 - step / warmup)

    def plan_reads(self, from_step: int) -> None:
        """Streaming data reads the phase's batches ahead, from ``from_step`` on."""
        if hasattr(self.train_set, "plan"):
            self.train_set.plan(
                lambda k: (self.batch_indices(k), self.schedule.sigma_at(k)),
                min(from_step, self.steps),
                self.steps,  # the refinement stage reads its own images
            )


class AmortisedPhase:
    """The amortised phase of one run: ``model`` trained by ``cnn`` on the batches of ``plan``
    (training items of ``data``, ordered by ``seed``), counting the pose heads' wins
    (``heads``) and keeping the last inputs for BatchNorm's ``calibration``; ``evaluation``
    evaluates the CNN (held-out loss, hypotheses, held-out poses)."""

    def __init__(self, cfg: ExperimentConfig, model: HollyModel, data: Data, seed: int, device):
        self.cfg, self.train_set, self.device = cfg, data.train, device
        self.cnn = CnnStep(cfg, model, device)  # its optimiser and precision
        self.plan = AmortisedPlan(cfg, data.train, seed)
        self.heads = HeadWins(cfg.model.pose_hypotheses, device)
        self.calibration = BatchNormCalibration(cfg, data.train, seed, self.plan.final_sigma())
        self.evaluation = Evaluation(cfg, data.test, self.cnn, self.calibration)

    def refinement_stage(self) -> Refinement:
        """The refinement stage after this phase: from its last step on, at its final sigma,
        started from the CNN's hypotheses, on the same cloud and training images."""
        plan, points = self.plan, self.cnn.model.points
        return Refinement(
            self.cfg,
            points,
            self.train_set,
            self.evaluation.hypotheses,
            plan.final_sigma(),
            plan.steps,
            self.device,
        )

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run step ``step``; returns loss and mean predicted sigma as device tensors (reading
        them on the host would stall a GPU every step; the loop reads them at log steps)."""
        sigma = self.plan.schedule.sigma_at(step)
        images = self.train_set.images(self.plan.batch_indices(step), sigma)
        loss, pred, best, target = self.cnn.step(images, sigma, self.plan.epsilon_at(step))
        self.calibration.remember(target.detach())
        self.heads.count(best)
        return loss.detach(), pred.sigma.detach().mean()

    def guard_heads(self, step: int) -> None:
        """The dead-head guard at a log step (after the row has read the window's wins)."""
        self.heads.reseed_dead(self.cnn.model, self.cfg.seed, step, self.plan.steps)
        self.heads.reset()

    def state_dict(self) -> dict:
        """The checkpoint's ``model``, ``optimizer``, ``grad_scaler`` and ``head_wins``."""
        return {**self.cnn.state_dict(), "head_wins": self.heads.wins}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.cnn.load_state_dict(state)
        self.heads.wins = state.get("head_wins", self.heads.wins).to(device)
