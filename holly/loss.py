"""Image normalisers and the image loss.

* ``batch`` (PAPER): the whole batch ``[B, H, W]`` is scaled to total 1000, so images in a batch
  are coupled.
* ``image`` (HEAD): each image is scaled to total 100.
* ``none``: raw intensities (each visible point contributes ~1).

Loss ``masked_l1`` (PAPER): L1 summed over pixels where the *target* exceeds a threshold (output
light outside the target's support is not penalised); ``l1`` (HEAD): plain L1 sum.
"""

from __future__ import annotations

import torch

# Guards the division when an image (or batch) is empty, e.g. every point left the frame.
_EPS = 1e-12


def normalise(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale ``images [B, H, W]`` according to ``mode`` (``batch``, ``image`` or ``none``)."""
    if mode == "batch":
        return images * (1000.0 / (images.sum() + _EPS))
    if mode == "image":
        return images * (100.0 / (images.sum(dim=(-2, -1), keepdim=True) + _EPS))
    if mode == "none":
        return images
    raise ValueError(f"unknown normalisation {mode!r}")


def image_loss(
    output: torch.Tensor, target: torch.Tensor, kind: str, mask_threshold: float = 1e-4
) -> torch.Tensor:
    """L1 sum between normalised ``output`` and ``target`` ``[B, H, W]``; a scalar."""
    if kind == "masked_l1":
        mask = target > mask_threshold
        return ((output - target).abs() * mask).sum()
    if kind == "l1":
        return (output - target).abs().sum()
    raise ValueError(f"unknown loss {kind!r}")
