"""The pose prior: which viewing directions the particles of a data set can show.

Particles on glass or in the nuclear envelope are seen from a narrow range of directions, and a
flat particle seen only from above does not determine its own depth (issue 25). The prior says
so up front (``model.pose_prior``), and the CNN's poses, the pose search and the refinement all
keep to it:

* ``uniform``: any 3D pose (the default; nothing is changed).
* ``tilt``: the viewing direction ``d = R[2]`` (the camera's axis in the cloud's frame, as in
  :mod:`holly.results.views`) lies within ``max_tilt_deg`` of the cloud's ``+z`` or ``-z``.
  Both poles are allowed because a particle on a surface may have landed on either face (a DNA
  origami does); seen from the other face it is the mirror image, which no rotation about z
  can make.
* ``inplane``: ``d = +z`` or ``-z`` exactly: rotations about the viewing axis, and those after
  the half turn about x (the other face). The depth of the cloud then never reaches an image:
  the model starts the cloud flat (``z = 0``) and it stays flat, and the evaluation reports z
  as unresolved, not as measured.

**Projection** onto the allowed poses: ``R' = R Q^T``, with ``Q`` the rotation that turns ``d``
towards the nearer pole until its tilt is allowed, about the axis ``d x pole`` (the smallest
change of viewing direction; the turn about ``d`` is kept). Then ``R'[2] = Q d``. Two kinds:

* ``soft`` (the CNN's outputs): the tilt ``t`` becomes ``T tanh(t / T)``, smooth everywhere, so
  the network's gradient does not vanish at the boundary;
* hard (the pose search's candidates and the refined poses): ``min(t, T)``.

In-plane poses are rebuilt exactly as ``R_z(psi) diag(1, s, s)`` (``s = +-1``, the face), so
that ``R[0, 2] = R[1, 2] = 0`` in floating point: a residue of 1e-7 would give the points' z a
gradient that Adam rescales into steps of full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from holly.method.geometry import (
    axis_angle_to_matrix,
    random_rotations,
    rotation_about_x,
    rotation_about_z,
)

PRIORS = ("uniform", "tilt", "inplane")


@dataclass(frozen=True)
class PosePrior:
    """Allowed viewing directions: ``kind`` (one of :data:`PRIORS`) and, for ``tilt``, the
    largest out-of-plane tilt ``max_tilt_deg`` (degrees)."""

    kind: str = "uniform"
    max_tilt_deg: float = 90.0

    def __post_init__(self):
        if self.kind not in PRIORS:
            raise ValueError(f"pose prior {self.kind!r}: expected one of {', '.join(PRIORS)}")

    @classmethod
    def from_config(cls, cfg) -> PosePrior:
        """The prior of an :class:`holly.config.ExperimentConfig` (``model.pose_prior``)."""
        return cls(cfg.model.pose_prior, cfg.model.max_tilt_deg)

    @property
    def constrains(self) -> bool:
        """Whether any pose is excluded (a tilt prior of 90 degrees excludes none)."""
        return self.kind == "inplane" or (self.kind == "tilt" and self.max_tilt_deg < 90.0)

    @property
    def flat(self) -> bool:
        """Whether the cloud's depth is never seen (in-plane poses only)."""
        return self.kind == "inplane"

    def project(self, rotations: torch.Tensor, soft: bool = False) -> torch.Tensor:
        """The nearest allowed poses ``[..., 3, 3]`` of ``rotations [..., 3, 3]`` (unchanged
        when the prior excludes nothing); ``soft`` squashes the tilt smoothly (see the module
        docstring) instead of clamping it."""
        if not self.constrains:
            return rotations
        if self.kind == "inplane":
            return _exactly_inplane(_limit_tilt(rotations, 0.0, soft=False))
        return _limit_tilt(rotations, math.radians(self.max_tilt_deg), soft)

    def sample(
        self, n: int, generator: torch.Generator | None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``n`` random allowed rotations ``[n, 3, 3]``: Haar-uniform for ``uniform`` (the same
        stream as :func:`holly.method.geometry.random_rotations`); otherwise the viewing
        direction uniform over the allowed caps about ``+z`` and ``-z``, the turn about it
        uniform."""
        if not self.constrains:
            return random_rotations(n, generator, dtype)
        u = torch.rand(4, n, generator=generator, dtype=torch.float64)
        cos_max = math.cos(math.radians(self.max_tilt_deg)) if self.kind == "tilt" else 1.0
        tilt = torch.acos(cos_max + (1.0 - cos_max) * u[0])
        face = torch.where(u[3] < 0.5, 1.0, -1.0).to(torch.float64)
        rotations = (
            rotation_about_z(2 * math.pi * u[1])
            @ rotation_about_x(tilt)
            @ rotation_about_z(2 * math.pi * u[2])
            @ face_turn(face)
        )
        return rotations.to(dtype)


UNIFORM = PosePrior()  # any 3D pose: the default, which changes nothing


def tilt_of(rotations: torch.Tensor) -> torch.Tensor:
    """Out-of-plane tilt (radians, in [0, pi/2]) of each pose's viewing direction ``R[2]``
    from the nearer of ``+z`` and ``-z``."""
    return _sin_and_tilt(rotations[..., 2, :])[1]


def _sin_and_tilt(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``|d x pole|`` and the tilt of viewing directions ``d [..., 3]``; the sine is kept off 0
    (by 1e-15) so that its gradient stays finite at a pure top view."""
    sin_t = torch.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2 + 1e-30)
    return sin_t, torch.atan2(sin_t, d[..., 2].abs())


def _limit_tilt(rotations: torch.Tensor, max_tilt: float, soft: bool) -> torch.Tensor:
    d = rotations[..., 2, :]
    pole = torch.where(d[..., 2] >= 0, 1.0, -1.0).to(d.dtype)
    sin_t, tilt = _sin_and_tilt(d)
    if soft and max_tilt > 0:
        allowed = max_tilt * torch.tanh(tilt / max_tilt)
    else:
        allowed = tilt.clamp(max=max_tilt)
    turn = (tilt - allowed) / sin_t  # angle over |d x pole|: the axis below is not unit
    axis = torch.stack([d[..., 1] * pole, -d[..., 0] * pole, torch.zeros_like(pole)], -1)
    q = axis_angle_to_matrix(axis * turn[..., None])
    return rotations @ q.transpose(-1, -2)


def _exactly_inplane(rotations: torch.Tensor) -> torch.Tensor:
    psi = torch.atan2(rotations[..., 1, 0], rotations[..., 0, 0])
    face = torch.where(rotations[..., 2, 2] >= 0, 1.0, -1.0).to(rotations.dtype)
    return rotation_about_z(psi) @ face_turn(face)


def face_turn(face: torch.Tensor) -> torch.Tensor:
    """``diag(1, s, s)`` ``[..., 3, 3]`` for ``s = face [...]`` (+-1): the half turn about x
    that shows the other face, or the identity."""
    one = torch.ones_like(face)
    return torch.diag_embed(torch.stack([one, face, face], -1))
