"""The half-set split: which training particles each half of an experiment trains on, and the
seed each half trains with.

Half-set validation (:mod:`holly.results.halfsets`) compares two reconstructions from disjoint
halves of the training particles. The split is **by particle** (every augmentation copy of a
particle goes with it; the held-out test set is the same for both halves), and a pure function of
the experiment's seed, so the two half runs, trained apart, are complementary parts of one data
set. Data building (:mod:`holly.data.datasets`) takes a half; training takes its seed.
"""

from __future__ import annotations

import logging

import numpy as np

from holly.errors import HollyError

log = logging.getLogger(__name__)

HALVES = (1, 2)
HALF_SPLIT_SALT = 0x4A1F  # separates the half split's random stream from every other use of seed


def half_seed(seed: int, half: int) -> int:
    """The training seed of half ``half`` (1 or 2) of an experiment with seed ``seed``.

    Different for the two halves and from ``seed`` itself in practice, and a pure function of
    both (NumPy's ``SeedSequence``), so reruns reproduce it.
    """
    if half not in HALVES:
        raise HollyError(f"half must be 1 or 2, got {half!r}")
    return int(np.random.SeedSequence([int(seed), int(half)]).generate_state(1)[0] >> 1)


def training_seed(cfg) -> int:
    """Seed of the model initialisation and batch order: ``cfg.seed``, or its half's seed.

    The data (simulated particles, the train/test split, the half split) keep ``cfg.seed``, so
    the two halves are complementary parts of one data set.
    """
    half = cfg.validation.half
    return cfg.seed if half is None else half_seed(cfg.seed, half)


def split_halves(particle_ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split items into two halves by particle.

    Parameters
    ----------
    particle_ids : array-like [I] of int
        The particle of each item (image); the copies of one particle share an id.
    seed : int
        The experiment seed; both halves of an experiment must use the same one.

    Returns
    -------
    half1, half2 : ndarray of int64
        Sorted item positions. The unique particles are shuffled and the first ``ceil(P / 2)``
        form half 1, so no particle is in both and the halves differ by at most one particle.

    Raises
    ------
    HollyError
        Fewer than two particles.
    """
    ids = np.asarray(particle_ids)
    if ids.ndim != 1:
        raise HollyError("particle_ids must be one-dimensional")
    unique = np.unique(ids)
    if unique.size < 2:
        raise HollyError(
            f"half-set validation needs at least two training particles, got {unique.size}"
        )
    rng = np.random.default_rng([int(seed), HALF_SPLIT_SALT])
    first = rng.permutation(unique)[: (unique.size + 1) // 2]
    in_first = np.isin(ids, first)
    return np.flatnonzero(in_first), np.flatnonzero(~in_first)


def take_half(split, half: int, seed: int):
    """The part of a training split (``particle_ids()`` and ``subset(items)``) in ``half``."""
    first, second = split_halves(split.particle_ids(), seed)
    items = first if half == 1 else second
    log.info("half %d: %d of %d training images", half, len(items), len(first) + len(second))
    return split.subset(items)
