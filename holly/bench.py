"""Throughput of the renderer and of a whole training step, against the dense reference.

Both the fast path and the reference are timed in the same run on the same inputs, so the ratio
is meaningful on any machine. Nothing here asserts a speed; ``holly bench`` prints the figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from holly.config import from_dict
from holly.geometry import random_rotations
from holly.loss import image_loss, normalise
from holly.model import HollyModel
from holly.render import render, render_dense

log = logging.getLogger(__name__)


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


def bench_renderer(
    batch: int,
    n_points: int,
    size: int,
    sigma: float,
    device: torch.device,
    repeats: int,
    dense_repeats: int,
) -> dict:
    """Forward + backward images/s of :func:`render` and :func:`render_dense`."""
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(n_points, 3, generator=gen) * 2 - 1).to(device).requires_grad_()
    rotations = random_rotations(batch, gen).to(device)
    translations = ((torch.rand(batch, 2, generator=gen) - 0.5) * 0.2).to(device)

    def step(fn):
        def run():
            points.grad = None
            fn(points, rotations, translations, sigma, size, size).square().sum().backward()

        return run

    fast = _timed(step(render), repeats, device)
    dense = _timed(step(render_dense), dense_repeats, device)
    return {
        "separable_images_per_s": batch / fast,
        "dense_images_per_s": batch / dense,
        "ratio": dense / fast,
    }


def bench_training_step(
    batch: int,
    n_points: int,
    size: int,
    sigma: float,
    device: torch.device,
    repeats: int,
    dense_repeats: int,
) -> dict:
    """Images/s of a full training step (CNN + render + loss + AdamW), fast vs dense renderer."""
    cfg = from_dict({"render": {"height": size, "width": size}, "model": {"num_points": n_points}})
    gen = torch.Generator().manual_seed(0)
    model = HollyModel(cfg, gen).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.no_grad():
        targets = render(
            model.points.detach() * 0.9,
            random_rotations(batch, gen).to(device),
            torch.zeros(batch, 2, device=device),
            sigma,
            size,
            size,
        )
    target = normalise(targets, "batch")

    def step():
        out = model(target, sigma)
        loss = image_loss(normalise(out.images, "batch"), target, "masked_l1")
        opt.zero_grad()
        loss.backward()
        opt.step()

    fast = _timed(step, repeats, device)
    model.render_fn = render_dense
    dense = _timed(step, dense_repeats, device)
    model.render_fn = render
    return {
        "fast_images_per_s": batch / fast,
        "dense_images_per_s": batch / dense,
        "ratio": dense / fast,
    }
