"""Sigma curriculum: the blur of the input images, sharpened over training.

The original lists ship in ``holly/data/sigma_<name>.csv`` (one comma-separated line, pixels):
``quick`` (10 values, ``run/sigma.csv``), ``bunny`` (20), ``cep`` (40, one per epoch). ``default``
is the original's fallback ``[10, 1.25]``.

Three schedules, each a pure function of the global step (``sigma_at``):

* ``epoch`` (PAPER without ``--cont``): ``list[min(epoch, L - 1)]``.
* ``geometric`` (PAPER ``--cont``): start at ``list[0]``; every step multiply by
  ``(list[a+1] / list[a]) ** (1 / (steps_per_epoch * e_per))`` with ``e_per = epochs / (L - 1)``
  epochs per list interval and ``a = floor(epoch / e_per)``. Never re-anchored to list values.
* ``linear`` (HEAD): piecewise-linear interpolation over the list by training progress.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from holly.errors import HollyError

SHIPPED = ("quick", "bunny", "cep", "default")


def load_sigma_list(name_or_values: str | list[float]) -> list[float]:
    """A shipped list by name, a path to a sigma file, or an explicit list (validated > 0)."""
    if isinstance(name_or_values, list):
        values = [float(v) for v in name_or_values]
    elif name_or_values == "default":
        values = [10.0, 1.25]
    elif name_or_values in SHIPPED:
        text = resources.files("holly.data").joinpath(f"sigma_{name_or_values}.csv").read_text()
        values = _parse(text, name_or_values)
    else:
        try:
            with open(name_or_values) as fh:
                values = _parse(fh.read(), name_or_values)
        except FileNotFoundError:
            raise HollyError(
                f"sigma list {name_or_values!r} is neither a shipped list {list(SHIPPED)} "
                f"nor an existing file"
            ) from None
    if not values or any(v <= 0 or not math.isfinite(v) for v in values):
        raise HollyError(f"sigma list {name_or_values!r} must be positive numbers, got {values}")
    return values


def _parse(text: str, source: str) -> list[float]:
    try:
        return [float(v) for v in text.replace("\n", "").split(",") if v.strip()]
    except ValueError as exc:
        raise HollyError(f"sigma file {source}: {exc}") from None


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
