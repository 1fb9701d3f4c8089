"""Simulated training data, with the original's semantics, seeded and vectorised.

For each base particle (HOLLy's "base sample"):

1. one fluorophore realisation of the ground-truth vertices: ``spawn_copies`` copies per vertex,
   each jittered by N(0, wobble^2) per axis; a vertex is dropped (all its copies masked) with
   probability ``dropout``; otherwise each copy is kept with probability ``spawn_rate``;
2. one Haar-uniform 3D rotation and one x/y translation, uniform in ``±max_trans``;
3. ``augment`` in-plane copies, each rotated about the viewing axis by an angle ~ U(0, 2 pi),
   sharing the realisation and the translation.

As in the PAPER code, each particle's points are pre-rotated by its 3D rotation and an image's
pose is the in-plane rotation only, so the image is ``render(R_z(theta) (R p + t))`` in paper order;
the full ground-truth rotation of an image is ``R_z(theta) R``. Only one copy of the points is
stored per particle, and images are rendered on demand at whatever sigma the curriculum asks.

Train and test sets are split **by particle**: augmentation copies never straddle the split.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from holly.config import ExperimentConfig
from holly.method.geometry import random_rotations, rotation_about_z
from holly.method.render import render

log = logging.getLogger(__name__)


@dataclass
class SimulatedSet:
    """One split (train or test): the items' particles, in-plane angles, and rendering inputs."""

    points: torch.Tensor  # [P, M, 3] per-particle points, pre-rotated by base_rotations
    masks: torch.Tensor  # [P, M] 0/1 fluorophore presence
    base_rotations: torch.Tensor  # [P, 3, 3]
    translations: torch.Tensor  # [P, 2]
    item_particle: torch.Tensor  # [I] long, particle of each image
    item_angle: torch.Tensor  # [I] in-plane angle (radians)
    height: int
    width: int
    order: str

    def __len__(self) -> int:
        return self.item_particle.shape[0]

    def to(self, device: torch.device) -> SimulatedSet:
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return SimulatedSet(**moved)

    def rotations(self, idx: torch.Tensor) -> torch.Tensor:
        """Full ground-truth rotations ``R_z(theta) R`` of items ``idx`` → ``[B, 3, 3]``."""
        idx = idx.to(self.item_particle.device)
        return rotation_about_z(self.item_angle[idx]) @ self.base_rotations[self.item_particle[idx]]

    def translations_of(self, idx: torch.Tensor) -> torch.Tensor:
        return self.translations[self.item_particle[idx.to(self.item_particle.device)]]

    def particle_ids(self) -> np.ndarray:
        """The particle of each item → ``[I]`` (for splits by particle)."""
        return self.item_particle.cpu().numpy()

    def subset(self, items: np.ndarray) -> SimulatedSet:
        """The items at positions ``items`` (all copies of whole particles), as a new set."""
        pos = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.item_particle.device)
        particle = self.item_particle[pos]
        keep = torch.unique(particle)  # sorted
        return SimulatedSet(
            self.points[keep],
            self.masks[keep],
            self.base_rotations[keep],
            self.translations[keep],
            torch.searchsorted(keep, particle),
            self.item_angle[pos],
            self.height,
            self.width,
            self.order,
        )

    def images(self, idx: torch.Tensor, sigma: float) -> torch.Tensor:
        """Render items ``idx [B]`` at ``sigma`` pixels → ``[B, H, W]`` on the set's device."""
        idx = idx.to(self.item_particle.device)
        particle = self.item_particle[idx]
        return render(
            self.points[particle],
            rotation_about_z(self.item_angle[idx]),
            self.translations[particle],
            sigma,
            self.height,
            self.width,
            mask=self.masks[particle],
            order=self.order,
        )


def realise(
    vertices: torch.Tensor,
    n: int,
    wobble: float,
    dropout: float,
    spawn_copies: int,
    spawn_rate: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fluorophore realisations of ``vertices [V, 3]``.

    Returns points ``[n, V*S, 3]`` and masks ``[n, V*S]`` (``S = spawn_copies``).
    """
    v = vertices.shape[0]
    s = spawn_copies
    pts = vertices[None, :, None, :].expand(n, v, s, 3)
    if wobble > 0:
        pts = pts + wobble * torch.randn(n, v, s, 3, generator=generator, dtype=vertices.dtype)
    kept_vertex = torch.rand(n, v, generator=generator) >= dropout
    kept_copy = torch.rand(n, v, s, generator=generator) < spawn_rate
    masks = (kept_vertex[..., None] & kept_copy).to(vertices.dtype)
    return pts.reshape(n, v * s, 3).contiguous(), masks.reshape(n, v * s)


def simulate_particles(
    vertices: np.ndarray,
    n_particles: int,
    cfg: ExperimentConfig,
    generator: torch.Generator,
) -> SimulatedSet:
    """Draw ``n_particles`` particles and their ``augment`` copies (see module docstring)."""
    d = cfg.data
    verts = torch.as_tensor(vertices, dtype=torch.float32)
    points, masks = realise(
        verts, n_particles, d.wobble, d.dropout, d.spawn_copies, d.spawn_rate, generator
    )
    base = random_rotations(n_particles, generator)
    points = points @ base.transpose(-1, -2)  # pre-rotate each particle: [P, M, 3]
    translations = (torch.rand(n_particles, 2, generator=generator) * 2 - 1) * d.max_trans
    a = d.augment
    if a > 1:
        angles = torch.rand(n_particles, a, generator=generator, dtype=torch.float64) * 2 * math.pi
    else:
        angles = torch.zeros(n_particles, 1, dtype=torch.float64)
    item_particle = torch.arange(n_particles).repeat_interleave(a)
    return SimulatedSet(
        points,
        masks,
        base,
        translations,
        item_particle,
        angles.reshape(-1).float(),
        cfg.render.height,
        cfg.render.width,
        cfg.render.order,
    )


def simulate(vertices: np.ndarray, cfg: ExperimentConfig) -> tuple[SimulatedSet, SimulatedSet]:
    """Train and test sets for ``cfg``, split by particle, reproducible from ``cfg.seed``.

    The test set uses its own generator stream, so changing the number of training particles
    does not change the test images.
    """
    train_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
    test_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    train = simulate_particles(vertices, cfg.data.particles, cfg, train_gen)
    test = simulate_particles(vertices, cfg.data.test_particles, cfg, test_gen)
    log.info(
        "simulated %d train images (%d particles x %d) and %d test images",
        len(train),
        cfg.data.particles,
        cfg.data.augment,
        len(test),
    )
    return train, test
