"""The CNN's training step: the loss of a batch, the forward pass at the step's precision
(:mod:`holly.train.precision`), and one step of the AdamW optimiser on the CNN and the cloud.
"""

from __future__ import annotations

import torch

from holly.config import ExperimentConfig
from holly.method.loss import hypothesis_losses, min_over_hypotheses, normalise
from holly.method.model import HollyModel
from holly.train.precision import StepPrecision


class CnnStep:
    """Trains ``model`` with its optimiser ``opt`` (:func:`make_optimizer`) at ``precision``
    (``train.precision``, ``train.compile``, ``train.channels_last``: the model is laid out and
    compiled for it here)."""

    def __init__(self, cfg: ExperimentConfig, model: HollyModel, device: torch.device):
        t = cfg.train
        self.cfg, self.model = cfg, model
        self.opt = make_optimizer(model, cfg)
        self.precision = StepPrecision(t.precision, device, t.compile, t.channels_last)
        self.precision.prepare(model)

    def loss_on(self, images: torch.Tensor, sigma: float, epsilon: float = 0.0):
        """Loss (min over hypotheses, relaxed by ``epsilon``), prediction, best hypothesis of
        each image, and the normalised targets."""
        lc = self.cfg.loss
        target = normalise(images, lc.normalise)
        with self.precision.autocast():
            pred = self.model(target, sigma)
        losses = hypothesis_losses(pred.images, target, lc.normalise, lc.kind, lc.mask_threshold)
        loss, best = min_over_hypotheses(losses, epsilon)
        return loss, pred, best, target

    def step(self, images: torch.Tensor, sigma: float, epsilon: float):
        """One optimiser step on ``images``; returns the loss, the prediction, the best
        hypothesis of each image and the normalised inputs."""
        self.model.train()
        loss, pred, best, target = self.loss_on(images, sigma, epsilon)
        self.opt.zero_grad(set_to_none=True)
        self.precision.backward_step(loss, self.opt)
        return loss, pred, best, target

    def state_dict(self) -> dict:
        """The checkpoint's ``model``, ``optimizer`` and ``grad_scaler`` entries."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "grad_scaler": self.precision.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state.get("grad_scaler"))


def make_optimizer(model: HollyModel, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """AdamW with two groups: CNN (lr, weight decay) and points (points_lr, no decay by default)."""
    t = cfg.train
    groups = [
        {"params": model.encoder.parameters(), "lr": t.lr, "weight_decay": t.weight_decay},
        {"params": [model.points], "lr": cfg.points_lr, "weight_decay": t.points_weight_decay},
    ]
    return torch.optim.AdamW(groups)


def best_rendering(renderings: torch.Tensor, best: torch.Tensor, mode: str) -> torch.Tensor:
    """The best hypothesis' rendering of each image ``[B, H, W]``, normalised as the samples
    show it: each hypothesis normalised as its own batch (``renderings [B, K, H, W]``)."""
    normalised = [normalise(renderings[:, k], mode) for k in range(renderings.shape[1])]
    return torch.stack(normalised, 1)[torch.arange(len(best), device=best.device), best]
