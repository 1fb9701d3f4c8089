"""Sigma curriculum: the blur of the input images, sharpened over training.

The schedule is given the list's values (pixels); reading a list, shipped or the user's, is
:mod:`holly.data.sigmas`'s (this layer reads no files).

Three schedules, each a pure function of the global step (``sigma_at``):

* ``epoch`` (PAPER without ``--cont``): ``list[min(epoch, L - 1)]``.
* ``geometric`` (PAPER ``--cont``): start at ``list[0]``; every step multiply by
  ``(list[a+1] / list[a]) ** (1 / (steps_per_epoch * e_per))`` with ``e_per = epochs / (L - 1)``
  epochs per list interval and ``a = floor(epoch / e_per)``. Never re-anchored to list values.
* ``linear`` (HEAD): piecewise-linear interpolation over the list by training progress.

How long the CNN phase is (``training_length``): ``train.epochs`` passes over the training
images, or, when ``train.steps`` is set, the fewest whole epochs that give at least that many
steps, so a small image store gets the training the defaults were tuned for (``TUNED_STEPS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from holly.errors import HollyError

# The CNN steps the default workflow's settings were tuned at (config/config.yaml: 2 epochs of
# 4,000 particles x 8 copies in batches of 32). A run far shorter than this learns only the
# envelope of its structure (README, "The default experiments, measured").
TUNED_STEPS = 2000
# A run with fewer CNN steps than this fraction of TUNED_STEPS is warned about.
SHORT_FRACTION = 0.25


@dataclass(frozen=True)
class SigmaSchedule:
    """Input sigma as a function of the global training step (0-based, before the update).

    ``sigma_at(s)`` is the sigma the images of step ``s`` are rendered at.
    """

    values: tuple[float, ...]
    schedule: str
    epochs: int
    steps_per_epoch: int

    def __post_init__(self):
        if self.schedule not in ("epoch", "geometric", "linear"):
            raise HollyError(f"unknown sigma schedule {self.schedule!r}")
        if self.steps_per_epoch < 1:
            raise HollyError("the training set is smaller than one batch; add particles")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def sigma_at(self, step: int) -> float:
        values, n = self.values, len(self.values)
        epoch = step // self.steps_per_epoch
        if n == 1:
            return values[0]
        if self.schedule == "epoch":
            return values[min(epoch, n - 1)]
        if self.schedule == "linear":
            m = (n - 1) * min(step / self.total_steps, 1.0)
            lo = math.floor(m)
            hi = min(lo + 1, n - 1)
            return values[lo] + (values[hi] - values[lo]) * (m - lo)
        return self._geometric(step)

    def _geometric(self, step: int) -> float:
        # Sum the log-factors of all completed steps, one list interval `a` at a time.
        n, spe = len(self.values), self.steps_per_epoch
        e_per = self.epochs / (n - 1)
        steps_per_interval = spe * e_per
        log_sigma = math.log(self.values[0])
        full_epochs, rest = divmod(step, spe)
        for epoch in range(full_epochs + 1):
            count = spe if epoch < full_epochs else rest
            if count == 0:
                continue
            a = min(int(epoch / e_per), n - 2)
            log_sigma += count * math.log(self.values[a + 1] / self.values[a]) / steps_per_interval
        return math.exp(log_sigma)


@dataclass(frozen=True)
class TrainingLength:
    """The CNN phase's length: ``epochs`` x ``steps_per_epoch`` = ``steps``.

    ``source`` is the config key it was derived from (``train.epochs`` or ``train.steps``).
    """

    epochs: int
    steps_per_epoch: int
    source: str

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def short(self) -> bool:
        """Far shorter than the budget the defaults were tuned for."""
        return self.steps < SHORT_FRACTION * TUNED_STEPS

    def warning(self) -> str | None:
        """What to raise when the run is short (None when it is not)."""
        if not self.short:
            return None
        fix = (
            f"set train.steps: {TUNED_STEPS} (epochs are then derived from the data size)"
            if self.source == "train.epochs"
            else "raise train.steps"
        )
        return (
            f"training is short: {self.steps} CNN steps ({self.epochs} epochs of "
            f"{self.steps_per_epoch} steps, from {self.source}), under "
            f"{SHORT_FRACTION:.0%} of the {TUNED_STEPS} steps the defaults were tuned for; {fix}"
        )

    def record(self) -> dict:
        """The provenance entry (``provenance.json`` key ``training_length``)."""
        return {
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "steps": self.steps,
            "source": self.source,
            "tuned_steps": TUNED_STEPS,
            "short": self.short,
            "warning": self.warning(),
        }


def training_length(
    epochs: int, steps: int | None, train_images: int, batch_size: int
) -> TrainingLength:
    """The CNN phase's epochs and steps for a training set of ``train_images``.

    Parameters
    ----------
    epochs
        ``train.epochs``: used as is when ``steps`` is None.
    steps
        ``train.steps`` or None. When set, the epochs are the fewest whole passes that give at
        least this many steps (``ceil(steps / steps_per_epoch)``), and ``train.epochs`` is
        ignored: a store of any size gets about the same training.
    train_images, batch_size
        Images in the training set and per step; ``steps_per_epoch = train_images //
        batch_size``.

    Raises
    ------
    HollyError
        When the training set is smaller than one batch.
    """
    spe = train_images // batch_size
    if spe < 1:
        raise HollyError(
            f"the training set has {train_images} images, fewer than one batch of "
            f"{batch_size}: raise data.particles or data.augment, or lower train.batch_size"
        )
    if steps is None:
        return TrainingLength(epochs, spe, "train.epochs")
    return TrainingLength(max(1, math.ceil(steps / spe)), spe, "train.steps")
