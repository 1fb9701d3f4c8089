"""Throughput of the renderer and of a whole training step, against the dense reference.

Both the fast path and the reference are timed in the same run on the same inputs, so the ratio
is meaningful on any machine. Nothing here asserts a speed; ``holly bench`` prints the figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from holly.config import from_dict
from holly.geometry import random_rotations
from holly.loss import image_loss, normalise
from holly.model import HollyModel
from holly.render import render, render_dense

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


def _timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Seconds per call: one warm-up call, then the mean of ``repeats`` calls."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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

    fast = _timed(step(render), b.repeats, b.device)
    dense = _timed(step(render_dense), b.dense_repeats, b.device)
    return {
        "separable_images_per_s": b.batch / fast,
        "dense_images_per_s": b.batch / dense,
        "ratio": dense / fast,
    }


def bench_training_step(b: BenchSetup) -> dict:
    """Images/s of a full training step (CNN + render + loss + AdamW), fast vs dense renderer."""
    cfg = from_dict(
        {"render": {"height": b.size, "width": b.size}, "model": {"num_points": b.n_points}}
    )
    gen = torch.Generator().manual_seed(0)
    model = HollyModel(cfg, gen).to(b.device)
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
    target = normalise(targets, "batch")

    def step():
        out = model(target, b.sigma)
        loss = image_loss(normalise(out.images, "batch"), target, "masked_l1")
        opt.zero_grad()
        loss.backward()
        opt.step()

    fast = _timed(step, b.repeats, b.device)
    model.render_fn = render_dense
    dense = _timed(step, b.dense_repeats, b.device)
    model.render_fn = render
    return {
        "fast_images_per_s": b.batch / fast,
        "dense_images_per_s": b.batch / dense,
        "ratio": dense / fast,
    }
