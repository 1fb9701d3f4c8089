"""Throughput of the renderer and of a whole training step, against the dense reference.

Both the fast path and the reference are timed in the same run on the same inputs, in
interleaved rounds (a burst of load from other processes hits both sides), and every call is
timed on its own. Each side reports its best and median images/s and the spread of its calls;
the ratio is taken from the best calls, the least disturbed measurement of either side.
Nothing here asserts a speed; ``holly bench`` prints the figures.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from holly.config import from_dict
from holly.method.geometry import random_rotations
from holly.method.loss import hypothesis_losses, min_over_hypotheses, normalise
from holly.method.model import HollyModel
from holly.method.render import render, render_dense
from holly.train.precision import autocast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSetup:
    """One benchmark's scale (images of ``size`` x ``size`` pixels) and repetitions."""

    batch: int
    n_points: int
    size: int
    sigma: float
    device: torch.device
    repeats: int  # timed calls of the fast path
    dense_repeats: int  # timed calls of the dense reference (slow)
    precision: str = "fp32"  # of the CNN in the training step (holly.train.precision)
    channels_last: bool = False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _call_times(fn: Callable[[], None], n: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float], batch: int) -> dict:
    """Images/s of the best and the median call, and the spread (IQR / median) of the calls."""
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "best_images_per_s": batch / min(times),
        "median_images_per_s": batch / statistics.median(times),
        "spread": (q[2] - q[0]) / statistics.median(times),
        "calls": len(times),
    }


def compare(
    fast: Callable[[], None], dense: Callable[[], None], b: BenchSetup, rounds: int = 3
) -> dict:
    """Time ``fast`` and ``dense`` (one warm-up each) in ``rounds`` interleaved rounds.

    Returns ``{"fast": summary, "dense": summary, "ratio": best dense / best fast time}``.
    """
    fast()
    dense()
    _sync(b.device)
    rounds = max(1, min(rounds, b.repeats, b.dense_repeats))
    fast_t: list[float] = []
    dense_t: list[float] = []
    for r in range(rounds):
        fast_t += _call_times(fast, _share(b.repeats, rounds, r), b.device)
        dense_t += _call_times(dense, _share(b.dense_repeats, rounds, r), b.device)
    return {
        "fast": _summary(fast_t, b.batch),
        "dense": _summary(dense_t, b.batch),
        "ratio": min(dense_t) / min(fast_t),
    }


def _share(total: int, rounds: int, r: int) -> int:
    return total // rounds + (r < total % rounds)


def bench_renderer(b: BenchSetup) -> dict:
    """Forward + backward images/s of :func:`render` and :func:`render_dense`."""
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(b.n_points, 3, generator=gen) * 2 - 1).to(b.device).requires_grad_()
    rotations = random_rotations(b.batch, gen).to(b.device)
    translations = ((torch.rand(b.batch, 2, generator=gen) - 0.5) * 0.2).to(b.device)

    def step(fn):
        def run():
            points.grad = None
            fn(points, rotations, translations, b.sigma, b.size, b.size).square().sum().backward()

        return run

    return compare(step(render), step(render_dense), b)


def _training_setup(b: BenchSetup):
    cfg = from_dict(
        {"render": {"height": b.size, "width": b.size}, "model": {"num_points": b.n_points}}
    )
    gen = torch.Generator().manual_seed(0)
    model = HollyModel(cfg, gen).to(b.device)
    if b.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.no_grad():
        targets = render(
            model.points.detach() * 0.9,
            random_rotations(b.batch, gen).to(b.device),
            torch.zeros(b.batch, 2, device=b.device),
            b.sigma,
            b.size,
            b.size,
        )
    return model, opt, normalise(targets, "batch")


def bench_training_step(b: BenchSetup) -> dict:
    """Images/s of a full training step (CNN + render + loss + AdamW), fast vs dense renderer."""
    model, opt, target = _training_setup(b)

    def step(render_fn):
        def run():
            model.render_fn = render_fn
            with autocast(b.precision, b.device):
                out = model(target, b.sigma)
            # the training loss: per hypothesis, min over them (one hypothesis here)
            losses = hypothesis_losses(out.images.float(), target, "batch", "masked_l1")
            loss = min_over_hypotheses(losses, 0.0)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run

    result = compare(step(render), step(render_dense), b)
    model.render_fn = render
    return result


def bench_cnn(b: BenchSetup) -> dict:
    """The pose CNN's share: images/s of encoder forward + backward alone (no render, no step)."""
    model, _, target = _training_setup(b)

    def run():
        model.zero_grad(set_to_none=True)
        with autocast(b.precision, b.device):
            raw = model.encoder(target)
        raw.float().square().sum().backward()

    run()
    return _summary(_call_times(run, b.repeats, b.device), b.batch)
