"""The pose heads' win counts, and the guard against hypothesis collapse that they drive.

With K pose heads (``model.pose_hypotheses``), each training image is won by the head whose
hypothesis renders it best. A head that wins (almost) nothing in a log window is dead: it
restarts as a turned copy of the most-used head (:meth:`HeadWins.reseed_dead`).
"""

from __future__ import annotations

import logging

import torch

from holly.method.geometry import random_rotations
from holly.method.model import HollyModel

log = logging.getLogger(__name__)

# A head that wins less than this fraction of a log window's images is re-seeded, as a fraction
# of the fair share 1/K.
DEAD_HEAD_SHARE = 0.1


class HeadWins:
    """How many images each head won since the last log step (``wins``, a ``[K]`` tensor on the
    training device, saved in checkpoints as ``head_wins``)."""

    def __init__(self, k: int, device: torch.device):
        self.wins = torch.zeros(k, dtype=torch.long, device=device)

    def count(self, best: torch.Tensor) -> None:
        """Add a batch's winners (``best``: the winning head of each image)."""
        self.wins += torch.bincount(best, minlength=len(self.wins))

    def usage(self) -> str:
        """Win fraction of each head since the last log step, e.g. ``0.41 0.20 0.21 0.18``."""
        total = max(int(self.wins.sum()), 1)
        return " ".join(f"{int(w) / total:.2f}" for w in self.wins)

    def reset(self) -> None:
        self.wins.zero_()

    def reseed_dead(self, model: HollyModel, seed: int, step: int, amortised_steps: int) -> None:
        """A head that won (almost) no image in the last log window restarts as a copy of the
        most-used head turned by a random rotation seeded by ``seed`` and ``step``, on the
        object side (``offset <- offset_best @ g``), so it proposes a different view of the
        same particle. Not in the last 10 % of the amortised phase, so every head has time to
        settle."""
        k = len(self.wins)
        total = int(self.wins.sum())
        if k == 1 or total == 0 or step > 0.9 * amortised_steps:
            return
        share = self.wins.double() / total
        dead = torch.nonzero(share < DEAD_HEAD_SHARE / k).flatten().tolist()
        if not dead:
            return
        best = int(share.argmax())
        gen = torch.Generator().manual_seed(seed * 7727 + step)
        turns = random_rotations(len(dead), gen)
        fc2, d = model.encoder.fc2, model.rot_dim
        with torch.no_grad():
            for j, head in enumerate(dead):
                rows_to = slice(head * d, (head + 1) * d)
                rows_from = slice(best * d, (best + 1) * d)
                fc2.weight[rows_to] = fc2.weight[rows_from]
                fc2.bias[rows_to] = fc2.bias[rows_from]
                model.offsets[head] = model.offsets[best] @ turns[j].to(fc2.weight)
        log.info("re-seeded pose heads %s from head %d (win shares %s)", dead, best, share.tolist())
