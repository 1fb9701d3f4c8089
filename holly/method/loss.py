"""Image normalisers and the image loss.

* ``batch`` (PAPER): the whole batch ``[B, H, W]`` is scaled to total 1000, so images in a batch
  are coupled.
* ``image`` (HEAD): each image is scaled to total 100.
* ``none``: raw intensities (each visible point contributes ~1).

Loss ``masked_l1`` (PAPER): L1 summed over pixels where the *target* exceeds a threshold (output
light outside the target's support is not penalised); ``l1`` (HEAD): plain L1 sum; ``l2``: the
sum of squared differences; ``poisson``: the Poisson deviance, summed.

Why ``l2`` exists: the rendering that minimises a pixel's L1 over many images of one pose is
their *median*, and L2's is their *mean*. With sparse labelling each particle shows a different
random subset of its sites; a site labelled in fewer than half of the particles has median 0, so
under L1 the cloud gains by leaving it out, and with a few dozen sites (a DNA origami logo at
30 % labelling) almost every site goes: the cloud collapses onto the few places most images
share. The mean keeps every site, at its labelling fraction (issue 25; docs/maintainer-notes.md).

Why ``poisson``: a localisation image is a histogram of draws from the structure's density
(blurred by the precision and the level), and the Poisson deviance
``sum t log(t / r) - t + r`` is, up to terms without the rendering ``r``, the negative
log-likelihood of those draws under the rendered density. Its per-pixel optimum over many
images is their mean, as for L2, but it weighs a pixel by its expected count instead of
squaring it: L2 lets the bright, dense parts of a structure (a knob, an end ring) dominate,
L1 drops what fewer than half the particles show, and the deviance counts every localisation
once. Both images get a floor of :data:`POISSON_FLOOR` times the target's mean pixel, the
density a stray localisation (background, a far tail) meets where the cloud renders nothing;
without it the logarithm would let one such localisation dominate the gradient.
"""

from __future__ import annotations

import torch

# Guards the division when an image (or batch) is empty, e.g. every point left the frame.
_EPS = 1e-12
# The poisson loss's floor under both images, as a share of the target image's mean pixel.
POISSON_FLOOR = 0.1


def poisson_deviance(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel Poisson deviance ``t log(t / r) - t + r`` of ``output`` against ``target``
    (both ``[..., H, W]``, each raised by the floor), >= 0 and 0 where they agree."""
    floor = POISSON_FLOOR * target.mean(dim=(-2, -1), keepdim=True) + _EPS
    r, t = output + floor, target + floor
    return t * torch.log(t / r) - t + r


def normalise(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale ``images [B, H, W]`` according to ``mode`` (``batch``, ``image`` or ``none``)."""
    if mode == "batch":
        return images * (1000.0 / (images.sum() + _EPS))
    if mode == "image":
        return images * (100.0 / (images.sum(dim=(-2, -1), keepdim=True) + _EPS))
    if mode == "none":
        return images
    raise ValueError(f"unknown normalisation {mode!r}")


def pixel_losses(
    output: torch.Tensor, target: torch.Tensor, kind: str, mask_threshold: float = 1e-4
) -> torch.Tensor:
    """The per-pixel loss ``kind`` of normalised ``output`` against ``target`` (broadcast, e.g.
    ``[B, K, H, W]`` against ``[B, 1, H, W]``): the one place each loss is written."""
    if kind == "l2":
        return (output - target) ** 2
    if kind == "poisson":
        return poisson_deviance(output, target)
    diff = (output - target).abs()
    if kind == "masked_l1":
        return diff * (target > mask_threshold)
    if kind == "l1":
        return diff
    raise ValueError(f"unknown loss {kind!r}")


def image_loss(
    output: torch.Tensor, target: torch.Tensor, kind: str, mask_threshold: float = 1e-4
) -> torch.Tensor:
    """L1 (``l2``: squared; ``poisson``: the deviance) sum between normalised ``output`` and
    ``target`` ``[B, H, W]``; a scalar."""
    return pixel_losses(output, target, kind, mask_threshold).sum()


def hypothesis_losses(
    renderings: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    kind: str,
    mask_threshold: float = 1e-4,
) -> torch.Tensor:
    """Per-image, per-hypothesis loss ``[B, K]`` of ``renderings [B, K, H, W]`` against the
    normalised ``target [B, H, W]``.

    Each hypothesis ``k`` is normalised as its own batch ``renderings[:, k]``, exactly as a
    single-pose model's output is. With ``K > 1`` and ``batch`` normalisation the batch total is
    treated as a constant (detached): otherwise a hypothesis that wins no image would still get
    gradient through the other images' normaliser, and the min over hypotheses would not send
    gradient to the winners only. (Each visible point integrates to ~1 whatever the pose, so the
    total hardly depends on the pose anyway.)
    """
    b, k = renderings.shape[:2]
    if mode == "batch":
        totals = renderings.sum(dim=(0, 2, 3), keepdim=True)  # [1, K, 1, 1]
        if k > 1:
            totals = totals.detach()
        output = renderings * (1000.0 / (totals + _EPS))
    else:
        output = normalise(renderings, mode)  # image / none act per image already
    diff = pixel_losses(output, target[:, None], kind, mask_threshold)  # [B, K, H, W]
    return diff.sum(dim=(-2, -1))


def min_over_hypotheses(losses: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch loss from per-image hypothesis losses ``[B, K]``, and each image's winner.

    Winner-takes-all, relaxed during warm-up: the winner (lowest loss) gets weight
    ``1 - epsilon``, the others share ``epsilon``, so that every head learns while the cloud is
    still a blob. With ``epsilon = 0`` only the winners get gradient. With ``K = 1`` this is the
    plain sum over the batch.

    Returns
    -------
    loss : Tensor []
        Sum over the batch of the weighted per-image losses.
    best : Tensor [B] (long)
        Index of each image's best-fitting hypothesis.
    """
    best = losses.detach().argmin(dim=1)
    k = losses.shape[1]
    if k == 1 or epsilon <= 0:
        return losses.gather(1, best[:, None]).sum(), best
    winner = torch.nn.functional.one_hot(best, k).to(losses.dtype)
    weights = winner * (1 - epsilon) + (1 - winner) * (epsilon / (k - 1))
    return (weights * losses).sum(), best
