"""Exact pose identities of the image model, and the candidate poses built from them.

Poses here are *image-plane* poses: a rotation ``R`` and a shift ``s`` (model units) with
``q = 0.5 (R p + s)``, i.e. the renderer's ``latest`` order. The ``paper`` order's object-space
translation ``t`` gives the same image as ``s = (R (tx, ty, 0))_xy`` (:func:`image_plane_shift`),
so every pose of either order has an image-plane form, and candidates are easy to write in it.

Identities (``../shared/reference/pose-inference.md``, with this project's viewport, whose centre
is at pixel ``W/2`` rather than ``(W - 1)/2``; a flip of the pixel array therefore also moves
the image by one pixel, ``4 / H`` in ``s``):

* in-plane 180° turn (rows and columns reversed): ``(Rz(pi) R, (-sx - 4/H, -sy + 4/H))``;
* mirror in x (columns reversed): ``(Ry(pi) R, (-sx - 4/H, sy))``;
* mirror in y (rows reversed): ``(Rx(pi) R, (sx, -sy + 4/H))``;
* an object symmetry ``g X = X`` acts on the right: ``(R g, s)`` gives the same image.

Image flips act on the left and object symmetries on the right, so both kinds of candidate are
needed (a flip cannot undo a confusion between near-symmetric object poses).
"""

from __future__ import annotations

import torch

# The image flips as left factors: identity, half turns about z (in-plane), y (mirror in x)
# and x (mirror in y); together the Klein four-group.
FLIPS = ("none", "turn", "mirror_x", "mirror_y")
_FLIP_DIAG = {
    "none": (1.0, 1.0, 1.0),
    "turn": (-1.0, -1.0, 1.0),
    "mirror_x": (-1.0, 1.0, -1.0),
    "mirror_y": (1.0, -1.0, -1.0),
}


def flip_matrix(kind: str, dtype=torch.float32, device=None) -> torch.Tensor:
    """Left factor ``[3, 3]`` of the image flip ``kind`` (one of :data:`FLIPS`)."""
    return torch.diag(torch.tensor(_FLIP_DIAG[kind], dtype=dtype, device=device))


def image_plane_shift(
    rotations: torch.Tensor, translations: torch.Tensor, order: str
) -> torch.Tensor:
    """Image-plane shift ``s [B, 2]`` of a model pose (rotation ``[B, 3, 3]``, translation
    ``[B, 2]`` in the renderer's ``order``)."""
    if order == "latest":
        return translations
    t3 = torch.nn.functional.pad(translations, (0, 1))  # [B, 3]
    return (rotations @ t3[..., None])[:, :2, 0]


def flipped_image_pose(
    rotations: torch.Tensor, shifts: torch.Tensor, kind: str, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose whose rendering is the rendering of ``(rotations, shifts)`` with its pixel array
    flipped by ``kind`` (``turn``: ``torch.flip(image, (-2, -1))``; ``mirror_x``: columns
    reversed; ``mirror_y``: rows reversed). Exact at the project's pixel convention.

    Parameters
    ----------
    rotations : Tensor [..., 3, 3]
    shifts : Tensor [..., 2]
        Image-plane shifts, model units.
    kind : str
        One of :data:`FLIPS`.
    height : int
        Image height in pixels (one pixel is ``2 / height`` in ``q``, ``4 / height`` in ``s``).
    """
    f = flip_matrix(kind, rotations.dtype, rotations.device)
    px = 4.0 / height
    sx, sy = shifts[..., 0], shifts[..., 1]
    if kind in ("turn", "mirror_x"):
        sx = -sx - px
    if kind in ("turn", "mirror_y"):
        sy = -sy + px
    return f @ rotations, torch.stack([sx, sy], -1)


def recentred_shift(
    shifts: torch.Tensor, old: torch.Tensor, new: torch.Tensor, centroid: torch.Tensor
) -> torch.Tensor:
    """Shift that keeps the cloud's projected centroid where rotation ``old`` put it, after the
    rotation becomes ``new``: ``s + P (old - new) c`` (``P`` takes x, y).

    Shapes: ``shifts [..., 2]``, ``old, new [..., 3, 3]``, ``centroid [3]``.
    """
    return shifts + ((old - new) @ centroid)[..., :2]


def image_centroid_q(images: torch.Tensor) -> torch.Tensor:
    """Intensity centroid of ``images [..., H, W]`` in projected coordinates ``q [..., 2]``
    (the inverse of the viewport: ``X = W/2 + (H/2) q_x``, ``Y = H/2 - (H/2) q_y``)."""
    h, w = images.shape[-2:]
    total = images.sum((-2, -1)).clamp_min(1e-12)
    cols = torch.arange(w, dtype=images.dtype, device=images.device)
    rows = torch.arange(h, dtype=images.dtype, device=images.device)
    x = (images.sum(-2) * cols).sum(-1) / total
    y = (images.sum(-1) * rows).sum(-1) / total
    return torch.stack([(x - w / 2) / (h / 2), (h / 2 - y) / (h / 2)], -1)


def centroid_shifts(
    rotations: torch.Tensor, images: torch.Tensor, centroid: torch.Tensor
) -> torch.Tensor:
    """Image-plane shifts ``[B, C, 2]`` that put the cloud's projected centroid on each image's
    intensity centroid, for candidate rotations ``[B, C, 3, 3]`` of ``images [B, H, W]``.

    Every point of a rendering integrates to ~1, so a rendering's intensity centroid is the mean
    projected point, ``0.5 (P R c + s)``: this shift matches the first moments exactly (up to
    light leaving the frame) whatever the rotation, so candidates are compared at their best
    position instead of at a shift guessed for another rotation.
    """
    q = image_centroid_q(images)[:, None]  # [B, 1, 2]
    return 2 * q - (rotations @ centroid.to(rotations.dtype))[..., :2]


def candidate_poses(
    hypotheses: torch.Tensor,
    shifts: torch.Tensor,
    symmetries: torch.Tensor,
    centroid: torch.Tensor,
    flips: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every candidate pose of every image.

    Candidates are ``F R_k g_j``: each hypothesis ``R_k``, composed on the right with each
    near-symmetry ``g_j`` of the cloud (about its centroid) and on the left with each image flip
    ``F`` (the flips about the cloud's projected centroid, not the image centre: the CNN finds
    where the particle is more reliably than how it is turned). Shifts are recentred so the
    projected centroid stays put.

    Parameters
    ----------
    hypotheses : Tensor [B, K, 3, 3]
    shifts : Tensor [B, 2]
        Image-plane shifts shared by the hypotheses.
    symmetries : Tensor [J, 3, 3]
        Including the identity.
    centroid : Tensor [3]
        The cloud's centroid (the symmetries act about it).
    flips : bool
        Include the three image flips.

    Returns
    -------
    rotations : Tensor [B, C, 3, 3]
    shifts : Tensor [B, C, 2]
        ``C = K * J * (4 if flips else 1)``.
    """
    b, k = hypotheses.shape[:2]
    kinds = FLIPS if flips else FLIPS[:1]
    lefts = torch.stack([flip_matrix(f, hypotheses.dtype, hypotheses.device) for f in kinds])
    right = hypotheses[:, :, None] @ symmetries  # [B, K, J, 3, 3]
    rot = lefts[None, None, None] @ right[:, :, :, None]  # [B, K, J, L, 3, 3]
    old = hypotheses[:, :, None, None].expand_as(rot)
    s = shifts[:, None, None, None].expand(*rot.shape[:4], 2)
    s = recentred_shift(s, old, rot, centroid.to(hypotheses.dtype))
    n = rot.shape[1] * rot.shape[2] * rot.shape[3]
    return rot.reshape(b, n, 3, 3), s.reshape(b, n, 2)
