"""The differentiable Gaussian point renderer, and its dense reference.

Image formation (HOLLy, both code eras):

* model-view: ``paper`` order translates in object space then rotates, ``q = 0.5 R (p + t)``;
  ``latest`` order rotates then translates, ``q = 0.5 (R p + t)``; ``t = (tx, ty, 0)``.
* orthographic viewport for an ``H x W`` image: column ``X = W/2 + (H/2) q_x``,
  row ``Y = H/2 - (H/2) q_y`` (so +y points up, and 1 model unit is ``H/4`` pixels).
* pixel centres at integer coordinates; each point adds a normalised isotropic Gaussian
  ``m / (2 pi sigma^2) * exp(-d^2 / (2 sigma^2))`` with ``sigma`` in pixels. No truncation by the
  frame, no occlusion.

The fast renderer uses the separable form ``I_b = G_y,b^T diag(m) G_x,b`` with factor matrices
``G_x [B, N, W]`` and ``G_y [B, N, H]``: one batched matmul, ``O(N (H + W))`` exponentials and
stored activations per image instead of ``O(N H W)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Order = Literal["paper", "latest"]

# Gaussian factors whose exponent is below this are set to exactly 0. exp(-40) ~ 4e-18, so the
# product of two factors stays above float32's smallest normal number (~1.2e-38): without the
# cut, tails underflow into denormals, which make CPU matmuls 6-10x slower. The cut sits at
# ~8.9 sigma, far below any visible intensity.
EXPONENT_CUTOFF = -40.0


def project(
    points: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    height: int,
    width: int,
    order: Order = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of posed points.

    Parameters
    ----------
    points : Tensor [N, 3] or [B, N, 3]
        Point cloud in model units; shared by all images when 2D.
    rotations : Tensor [B, 3, 3]
    translations : Tensor [B, 2]
        In-plane translation (tx, ty) in model units.
    height, width : int
        Image size in pixels.
    order : {"paper", "latest"}
        Model-view order (see module docstring).

    Returns
    -------
    cols, rows : Tensor [B, N]
        Pixel column (X) and row (Y) of every point in every image.
    """
    if order not in ("paper", "latest"):
        raise ValueError(f"order must be 'paper' or 'latest', not {order!r}")
    t3 = torch.nn.functional.pad(translations, (0, 1))[:, None, :]  # [B, 1, 3]
    if order == "paper":
        q = 0.5 * (points + t3) @ rotations.transpose(-1, -2)  # [B, N, 3]
    else:
        q = 0.5 * (points @ rotations.transpose(-1, -2) + t3)
    half_h = height / 2
    cols = width / 2 + half_h * q[..., 0]
    rows = half_h - half_h * q[..., 1]
    return cols, rows


# Where the factors' support (``2 * sqrt(-2 * EXPONENT_CUTOFF) * sigma + 2`` pixels) covers less
# than this share of the image, the CPU computes them only inside each point's band.
BAND_FRACTION = 0.7


def _band_width(sigma_max: float, size: int) -> int:
    """Pixels per point inside the exponent cut-off (``size`` when no band is narrower)."""
    reach = math.sqrt(-2 * EXPONENT_CUTOFF) * sigma_max
    return min(size, math.floor(2 * reach) + 2)


class _GaussianFactors(torch.autograd.Function):
    """``w * exp(-(c - i)^2 / (2 sigma^2))`` for pixel index ``i``: ``[B, N] -> [B, N, size]``.

    One fused function with a hand-written backward instead of autograd over five elementwise
    ops: it keeps only ``d = c - i`` and the factors for backward, and it clamps the exponent
    before ``exp`` so no subnormal value is ever produced (they slow CPUs down badly).

    With ``band < size`` only the ``band`` pixels from ``start = floor(c - reach)`` (clamped to
    the frame) are evaluated; ``reach = sqrt(-2 EXPONENT_CUTOFF) sigma_max`` is where the cut
    sets factors to 0 anyway, so the result is the same as the full evaluation, bit for bit.
    The band is scattered into a zero matrix for the matmul, and backward gathers it back.
    """

    @staticmethod
    def forward(ctx, centres, sigma, weight, size: int, band: int):
        if band < size:
            reach = math.sqrt(-2 * EXPONENT_CUTOFF) * float(sigma.max())
            first = torch.nan_to_num(centres.detach() - reach).floor_().clamp_(0, size - band)
            index = first.long()[..., None] + torch.arange(band, device=centres.device)
            grid = index.to(centres.dtype)  # [B, N, band]
        else:
            index = None
            grid = torch.arange(size, dtype=centres.dtype, device=centres.device)
        d = centres[..., None] - grid  # [B, N, band]
        a = d * d
        a *= (0.5 / sigma**2)[:, None, None]  # minus the exponent, >= 0
        g = torch.exp(-a.clamp(max=-EXPONENT_CUTOFF)).masked_fill_(a >= -EXPONENT_CUTOFF, 0.0)
        ctx.save_for_backward(d, g, sigma, weight, index)
        ctx.size = size
        out = g * weight[..., None] if weight is not None else g
        if index is None:
            return out
        full = centres.new_zeros(*centres.shape, size)
        return full.scatter_(-1, index, out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        d, g, sigma, weight, index = ctx.saved_tensors
        if index is not None:
            grad = grad.gather(-1, index)
        grad_weight = None
        if weight is not None:
            if ctx.needs_input_grad[2]:
                grad_weight = (grad * g).sum(-1)
            grad = grad * weight[..., None]
        gd = grad * g
        gd *= d  # dg/dc = -g d / sigma^2 ; dg/dsigma = g d^2 / sigma^3
        grad_centres = grad_sigma = None
        if ctx.needs_input_grad[0]:
            grad_centres = gd.sum(-1) * (-1 / sigma**2)[:, None]
        if ctx.needs_input_grad[1]:
            grad_sigma = (gd * d).sum((1, 2)) / sigma**3
        return grad_centres, grad_sigma, grad_weight, None, None


def _gaussian_factors(
    centres: torch.Tensor,
    size: int,
    sigma: torch.Tensor,
    weight: torch.Tensor | None = None,
    banded: bool | None = None,
) -> torch.Tensor:
    """``weight * exp(-(c - i)^2 / (2 sigma^2))`` for pixel ``i``: ``[B, N] -> [B, N, size]``.

    ``banded`` (default: on the CPU) evaluates only each point's band inside the exponent
    cut-off. Reading the band width needs ``sigma.max()`` on the host, a sync a GPU should not
    pay every step, and GPUs gain little from it; so they use the full evaluation.
    """
    if banded is None:
        banded = centres.device.type == "cpu"
    band = size
    if banded:
        band = _band_width(float(sigma.detach().max()), size)
        if band >= BAND_FRACTION * size:
            band = size
    return _GaussianFactors.apply(centres, sigma, weight, size, band)


# A sigma near 0 makes a Gaussian a delta that no pixel sees; the cloud is kept a visible blob.
SIGMA_FLOOR = 0.3


def total_blur(sigma: torch.Tensor, data_blur: float) -> torch.Tensor:
    """The blur a rendering of the cloud needs to match an image read at ``sigma``: ``sigma``
    (floored at a visible blob) with the data's own blur ``data_blur`` added in quadrature.

    Localisations are drawn at the level's sigma but scattered by their precision, so an image
    at level ``s`` is as wide as ``sqrt(s^2 + precision^2)``; a cloud rendered at ``s`` alone
    would spread its points to imitate the scatter (docs/maintainer-notes.md, "The cloud's
    blur")."""
    if isinstance(data_blur, str):  # 'store' is resolved when training starts
        raise ValueError(f"render.data_blur {data_blur!r} was not resolved to pixels")
    sigma = sigma.clamp_min(SIGMA_FLOOR)
    if not data_blur:
        return sigma
    return (sigma * sigma + data_blur * data_blur).sqrt()


def _as_batch_sigma(sigma: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.expand(batch) if sigma.dim() == 0 else sigma


def render(
    points: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    sigma: torch.Tensor | float,
    height: int,
    width: int,
    mask: torch.Tensor | None = None,
    order: Order = "paper",
    banded: bool | None = None,
) -> torch.Tensor:
    """Render posed Gaussian point clouds, separably and batched.

    Parameters
    ----------
    points : Tensor [N, 3] or [B, N, 3]
        Model units. A 2D tensor is one cloud shared by every image.
    rotations : Tensor [B, 3, 3]
    translations : Tensor [B, 2]
        Model units.
    sigma : float or Tensor [] or [B]
        Gaussian standard deviation in pixels, per image or shared.
    height, width : int
        Image size in pixels.
    mask : Tensor [N] or [B, N], optional
        Per-point weights (0 removes a point); default all ones.
    order : {"paper", "latest"}
    banded : bool, optional
        Evaluate each point's factors only within the exponent cut-off (same result, less
        work); default on the CPU only (it reads ``max(sigma)`` on the host).

    Returns
    -------
    Tensor [B, H, W]
        Each fully visible point integrates to ~1.
    """
    batch = rotations.shape[0]
    cols, rows = project(points, rotations, translations, height, width, order)
    sig = _as_batch_sigma(sigma, batch, cols)
    # the mask and the normalisation 1 / (2 pi sigma^2) are applied to the row factors' bands
    weight = (1 / (2 * math.pi * sig**2))[:, None]  # [B, 1]
    if mask is not None:
        weight = weight * mask.to(cols.dtype)
    weight = weight.expand(batch, cols.shape[1])
    gx = _gaussian_factors(cols, width, sig, banded=banded)  # [B, N, W]
    gy = _gaussian_factors(rows, height, sig, weight, banded=banded)  # [B, N, H]
    return gy.transpose(1, 2) @ gx  # [B, H, W]


def render_dense(
    points: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    sigma: torch.Tensor | float,
    height: int,
    width: int,
    mask: torch.Tensor | None = None,
    order: Order = "paper",
) -> torch.Tensor:
    """Reference renderer: the formula evaluated densely, one image at a time.

    Same arguments and result as :func:`render`, without the separable factorisation or the
    exponent cut-off. Slow (``O(N H W)`` memory per image); kept as the test oracle and the
    benchmark baseline, the way the original renderer worked.
    """
    batch = rotations.shape[0]
    cols, rows = project(points, rotations, translations, height, width, order)
    sig = _as_batch_sigma(sigma, batch, cols)
    ys = torch.arange(height, dtype=cols.dtype, device=cols.device)[:, None]  # [H, 1]
    xs = torch.arange(width, dtype=cols.dtype, device=cols.device)[None, :]  # [1, W]
    images = []
    for b in range(batch):
        d2 = (cols[b][:, None, None] - xs) ** 2 + (rows[b][:, None, None] - ys) ** 2  # [N, H, W]
        g = torch.exp(-d2 / (2 * sig[b] ** 2)) / (2 * math.pi * sig[b] ** 2)
        if mask is not None:
            m = mask if mask.dim() == 1 else mask[b]
            g = g * m.to(g.dtype)[:, None, None]
        images.append(g.sum(0))
    return torch.stack(images)
