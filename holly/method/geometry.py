"""Rotations, batched in torch (and, for scoring, in numpy).

Conventions
-----------
* Rotation matrices act on column vectors: ``x' = R @ x`` (active, right-handed).
* Axis-angle vectors ``r = theta * k`` with unit axis ``k`` and angle ``theta`` in radians.
* Quaternions are ``(w, x, y, z)``, scalar first, unit norm; ``q`` and ``-q`` are the same rotation.
* The 6D representation (Zhou et al., CVPR 2019) is the first two columns of ``R``, stacked as
  ``[c0, c1]`` (6 numbers); any 6 numbers map back to a rotation by Gram-Schmidt.

Every function takes and returns tensors with arbitrary leading batch dimensions ``[...]``;
:func:`random_rotations` and :func:`geodesic_angle` also serve numpy callers (the scores).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Below this squared angle, the Rodrigues coefficients use their Taylor series; this keeps
# both values and gradients finite at r = 0 (the original only nudged an exact zero by 1e-3).
_SMALL_ANGLE_SQ = 1e-6


def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix ``[v]x`` of ``v [..., 3]`` → ``[..., 3, 3]``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (
        torch.stack([zero, -z, y], -1),
        torch.stack([z, zero, -x], -1),
        torch.stack([-y, x, zero], -1),
    )
    return torch.stack(rows, -2)


def axis_angle_to_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula ``R = I + A [r]x + B [r]x^2``, smooth at ``r = 0``.

    Parameters
    ----------
    r : Tensor [..., 3]
        Axis-angle vectors (radians).

    Returns
    -------
    Tensor [..., 3, 3]
    """
    theta_sq = (r * r).sum(-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1 - theta_sq / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24, (1 - torch.cos(theta)) / theta_sq.where(~small, 1))
    k = _skew(r)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand(k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``(w, x, y, z) [..., 4]`` → rotation matrix ``[..., 3, 3]``.

    The input is normalised first, so any non-zero 4-vector is accepted.
    """
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = (
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    )
    return torch.stack(rows, -2)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` → unit quaternion ``[..., 4]`` with ``w >= 0``.

    Uses the numerically stable branch (Shepperd): of the four candidate formulas, the one whose
    denominator (largest of ``1 + trace``, ``1 + 2 m_ii - trace``) is biggest.
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # 4*q_i^2 for i = w, x, y, z
    four_sq = torch.stack(
        [1 + trace, 1 + 2 * m00 - trace, 1 + 2 * m11 - trace, 1 + 2 * m22 - trace], -1
    )
    # Each candidate row is 4*q_i*q (in w, x, y, z order) from the matrix entries.
    cand = torch.stack(
        [
            torch.stack(
                [
                    four_sq[..., 0],
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    four_sq[..., 1],
                    m[..., 1, 0] + m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] + m[..., 0, 1],
                    four_sq[..., 2],
                    m[..., 2, 1] + m[..., 1, 2],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] + m[..., 1, 2],
                    four_sq[..., 3],
                ],
                -1,
            ),
        ],
        -2,
    )  # [..., 4 candidates, 4 components]
    best = four_sq.argmax(-1)
    chosen = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = chosen / chosen.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``[..., 4]`` → axis-angle ``[..., 3]`` with angle in ``[0, pi]``."""
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = v.norm(dim=-1)
    angle = 2 * torch.atan2(s, q[..., 0])
    # angle / sin(angle/2) -> 2 as s -> 0
    scale = torch.where(s > 1e-8, angle / s.clamp_min(1e-8), torch.full_like(s, 2.0))
    return v * scale[..., None]


def axis_angle_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[..., 3]`` → unit quaternion ``[..., 4]``."""
    theta = r.norm(dim=-1)
    half = theta / 2
    scale = torch.where(theta > 1e-8, torch.sin(half) / theta.clamp_min(1e-8), 0.5 - theta**2 / 48)
    return torch.cat([torch.cos(half)[..., None], r * scale[..., None]], -1)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` → axis-angle ``[..., 3]`` with angle in ``[0, pi]``."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Continuous 6D representation ``[..., 6]`` → rotation matrix ``[..., 3, 3]``.

    The two 3-vectors are orthonormalised by Gram-Schmidt and become the first two columns; the
    third column is their cross product, so the result is always a proper rotation.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` → 6D representation ``[..., 6]`` (first two columns)."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], -1)


def random_quaternions(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` Haar-uniform random unit quaternions ``[n, 4]`` by Shoemake's method.

    With u1, u2, u3 ~ U(0, 1): ``(sqrt(1-u1) sin 2pi u2, sqrt(1-u1) cos 2pi u2,
    sqrt(u1) sin 2pi u3, sqrt(u1) cos 2pi u3)`` is uniform on S^3, hence uniform on SO(3).
    """
    u1, u2, u3 = torch.rand(3, n, generator=generator, dtype=torch.float64)
    a, b = torch.sqrt(1 - u1), torch.sqrt(u1)
    q = torch.stack(
        [
            a * torch.sin(2 * math.pi * u2),
            a * torch.cos(2 * math.pi * u2),
            b * torch.sin(2 * math.pi * u3),
            b * torch.cos(2 * math.pi * u3),
        ],
        -1,
    )
    return q.to(dtype)


def random_rotations(
    n: int,
    generator: torch.Generator | np.random.Generator | None = None,
    dtype: torch.dtype = torch.float32,
):
    """``n`` Haar-uniform random rotation matrices ``[n, 3, 3]``.

    With a torch ``generator`` (or none): a tensor of ``dtype``, from random unit quaternions.
    With a numpy ``Generator``: a float64 ndarray, from the QR decomposition of Gaussian matrices
    (sign-corrected), the stream the alignment's seeded start rotations
    (:mod:`holly.method.align`) have always been drawn from; ``dtype`` is then ignored. Both
    are exactly Haar-uniform; they are different draws of it, so each caller keeps its stream.
    """
    if isinstance(generator, np.random.Generator):
        return _random_rotations_numpy(n, generator)
    return quaternion_to_matrix(random_quaternions(n, generator, torch.float64)).to(dtype)


def _random_rotations_numpy(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    q[np.linalg.det(q) < 0, :, 2] *= -1  # flip one column: proper rotation, still uniform
    return q


def rotation_about_z(theta: torch.Tensor) -> torch.Tensor:
    """In-plane rotations about the viewing (z) axis, ``theta [...]`` radians → ``[..., 3, 3]``."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    rows = (
        torch.stack([c, -s, zero], -1),
        torch.stack([s, c, zero], -1),
        torch.stack([zero, zero, one], -1),
    )
    return torch.stack(rows, -2)


def cyclic_turns(order: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The cyclic group C_order about z: the turns by ``2 pi k / order``, ``[order, 3, 3]``."""
    return rotation_about_z(torch.arange(order, dtype=dtype) * (2 * math.pi / order))


def rotation_about_x(theta: torch.Tensor) -> torch.Tensor:
    """Rotations about the x axis (an out-of-plane tilt), ``theta [...]`` radians →
    ``[..., 3, 3]``."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    rows = (
        torch.stack([one, zero, zero], -1),
        torch.stack([zero, c, -s], -1),
        torch.stack([zero, s, c], -1),
    )
    return torch.stack(rows, -2)


def geodesic_angle(r1, r2):
    """Angle in radians of ``r1^T r2`` for orthogonal matrices ``[..., 3, 3]`` → ``[...]``.

    Computed with atan2 of the sine (from the skew part) and cosine (from the trace) parts, which
    is accurate near 0 and pi, unlike ``arccos((tr - 1) / 2)``. Torch tensors in, a tensor out
    (training, on its device); numpy arrays in, an ndarray out (scoring, in float64 on the CPU).
    The two branches compute the same formula; they are not merged into one because numpy's and
    torch's batched matrix products round differently, and every published score was made with
    the numpy one. Both need ``r1`` and ``r2`` of equal determinant.
    """
    if isinstance(r1, np.ndarray):
        return _geodesic_angle_numpy(r1, r2)
    rel = r1.transpose(-1, -2) @ r2
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = rel - rel.transpose(-1, -2)
    sin = torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], -1).norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def _geodesic_angle_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rel = np.swapaxes(a, -1, -2) @ b
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1) / 2
    skew = rel - np.swapaxes(rel, -1, -2)
    sin = np.linalg.norm(np.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], -1), axis=-1)
    return np.arctan2(sin / 2, cos)
