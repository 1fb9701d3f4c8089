"""The inputs that BatchNorm's statistics are recomputed from before the CNN is evaluated
(:meth:`holly.method.model.HollyModel.recalibrate_batchnorm`).

They are the normalised inputs of the last training steps: no extra reads (a streaming store
keeps its read-ahead plan), and checkpoints hold them, so a resumed run evaluates the CNN with
the same statistics. Where there are none (a run resumed from an older checkpoint with no
training step left), fixed seeded training batches at the final sigma stand in.
"""

from __future__ import annotations

from collections import deque

import torch

from holly.config import ExperimentConfig
from holly.method.loss import normalise
from holly.method.model import HollyModel
from holly.train.precision import StepPrecision

# Training batches that BatchNorm's statistics are recomputed from before the CNN is evaluated:
# at step 44,000 of the improved paper-length run the held-out loss with statistics from
# 1 / 4 / 32 batches was 221 / 213 / 211, against 1,071 with the running averages.
CALIBRATION_BATCHES = 4


class BatchNormCalibration:
    """The calibration batches of one run: ``recent_inputs`` (the last training steps'), else
    batches of ``train_set`` drawn from ``seed`` at ``sigma`` (the final sigma)."""

    def __init__(self, cfg: ExperimentConfig, train_set, seed: int, sigma: float):
        self.batch_size, self.normalise = cfg.train.batch_size, cfg.loss.normalise
        self.train_set, self.seed, self.sigma = train_set, seed, sigma
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=CALIBRATION_BATCHES)

    def remember(self, inputs: torch.Tensor) -> None:
        """Keep a training step's normalised inputs (the oldest drop out)."""
        self.recent_inputs.append(inputs)

    def batches(self) -> list[torch.Tensor]:
        """The normalised training batches the statistics come from."""
        if self.recent_inputs:
            return list(self.recent_inputs)
        b, n = self.batch_size, len(self.train_set)
        gen = torch.Generator().manual_seed(self.seed * 7919 + 1)
        idx = torch.randperm(n, generator=gen)[: CALIBRATION_BATCHES * b]
        return [
            normalise(self.train_set.images(chunk, self.sigma), self.normalise)
            for chunk in idx.split(b)
        ]

    def calibrate(self, model: HollyModel, precision: StepPrecision) -> None:
        """BatchNorm statistics of ``model``'s current weights."""
        with precision.autocast():
            model.recalibrate_batchnorm(self.batches())

    def restore(self, batches: list[torch.Tensor]) -> None:
        """Replace the recent inputs by a checkpoint's."""
        self.recent_inputs.clear()
        self.recent_inputs.extend(batches)
