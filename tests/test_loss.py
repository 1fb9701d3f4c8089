"""The image losses (holly/method/loss.py), and why ``l2`` is there: the per-pixel optimum of
L1 over many images is their median, of L2 their mean."""

from __future__ import annotations

import pytest
import torch

from holly.method.loss import (
    POISSON_FLOOR,
    hypothesis_losses,
    image_loss,
    normalise,
    poisson_deviance,
)


def _images(seed=0, b=5, k=3, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, k, h, w, generator=g, dtype=torch.float64), torch.rand(
        b, h, w, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("mode", ["batch", "image", "none"])
def test_l2_is_the_squared_difference_per_image_and_hypothesis(mode):
    renderings, target = _images()
    target = normalise(target, "image")
    losses = hypothesis_losses(renderings, target, mode, "l2")
    for k in range(renderings.shape[1]):
        out = normalise(renderings[:, k], mode) if mode != "batch" else renderings[:, k]
        if mode == "batch":
            out = out * (1000.0 / (renderings[:, k].sum() + 1e-12))
        expected = ((out - target) ** 2).sum((-2, -1))
        assert torch.allclose(losses[:, k], expected)
    assert torch.allclose(
        image_loss(renderings[:, 0], target, "l2"), ((renderings[:, 0] - target) ** 2).sum()
    )


def test_l1_and_masked_l1_unchanged():
    renderings, target = _images(1)
    l1 = hypothesis_losses(renderings, target, "none", "l1")
    assert torch.allclose(l1, (renderings - target[:, None]).abs().sum((-2, -1)))
    masked = hypothesis_losses(renderings, target, "none", "masked_l1", 0.5)
    keep = (target > 0.5)[:, None]
    assert torch.allclose(masked, ((renderings - target[:, None]).abs() * keep).sum((-2, -1)))
    with pytest.raises(ValueError, match="unknown loss"):
        hypothesis_losses(renderings, target, "none", "l3")


def _fit_one_image(targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The single image that minimises the summed loss against all ``targets [N, H, W]``."""
    x = torch.full(targets.shape[1:], 0.5, dtype=targets.dtype, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.01)
    for _ in range(1500):
        opt.zero_grad()
        image_loss(x.expand_as(targets), targets, kind).backward()
        opt.step()
    return x.detach()


def test_sparse_sites_vanish_under_l1_and_survive_under_l2():
    """Ten images of one pose: site A is labelled in all of them, site B in 3 of 10 (30 %
    labelling). The L1-optimal rendering is the per-pixel median, which has no B; the
    L2-optimal one is the mean, which has B at 0.3 (what a cloud with a point at B renders)."""
    targets = torch.zeros(10, 1, 2, dtype=torch.float64)
    targets[:, 0, 0] = 1.0  # site A
    targets[:3, 0, 1] = 1.0  # site B, labelled in 30 % of the particles
    l1 = _fit_one_image(targets, "l1")
    l2 = _fit_one_image(targets, "l2")
    assert l1[0, 0] == pytest.approx(1.0, abs=0.02) and l1[0, 1] == pytest.approx(0.0, abs=0.02)
    assert l2[0, 0] == pytest.approx(1.0, abs=0.02) and l2[0, 1] == pytest.approx(0.3, abs=0.02)


def test_poisson_also_keeps_the_sparse_site_at_its_labelling_fraction():
    """The same ten images, in a frame of 20 pixels (the floor, a tenth of the mean pixel, is
    small beside a site, as in real images): the deviance's optimum is the mean image too."""
    targets = torch.zeros(10, 1, 20, dtype=torch.float64)
    targets[:, 0, 0] = 1.0
    targets[:3, 0, 1] = 1.0
    fit = _fit_one_image(targets, "poisson")
    assert fit[0, 0] == pytest.approx(1.0, abs=0.02) and fit[0, 1] == pytest.approx(0.3, abs=0.02)


def test_poisson_deviance_is_the_floored_formula_zero_only_where_images_agree():
    renderings, target = _images(2)
    dev = poisson_deviance(renderings[:, 0], target)
    floor = POISSON_FLOOR * target.mean((-2, -1), keepdim=True)
    r, t = renderings[:, 0] + floor, target + floor
    assert torch.allclose(dev, t * torch.log(t / r) - t + r)
    assert (dev >= 0).all() and float(poisson_deviance(target, target).abs().max()) < 1e-12
    # an empty rendering where the target has light costs finite, floored amounts
    assert torch.isfinite(poisson_deviance(torch.zeros_like(target), target)).all()
    losses = hypothesis_losses(renderings, target, "none", "poisson")
    assert torch.allclose(losses, poisson_deviance(renderings, target[:, None]).sum((-2, -1)))
    assert torch.allclose(image_loss(renderings[:, 0], target, "poisson"), dev.sum())
