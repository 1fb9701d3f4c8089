"""A template of a declared number of discrete sites, for fusing sparse particles.

The annealed fusion's template (:mod:`holly.method.annealedfusion`) is a free density: the sum of
all particles where they sit. When each particle shows only a few of the structure's sites (a
nuclear pore at 30 % labelling shows two or three of its eight corners) that model prefers
particles piled up compactly: on holly's simulated 30 % pores the truth's leave-one-out fit is
-6.03 per localisation against -5.60 for a blob 21 nm across and -5.31 for two to four hot
spots (docs/maintainer-notes.md, "A site template"). No search can fix a likelihood that ranks
the truth last.

Here the template is ``K`` sites of equal weight and a fixed width, placed by the particles (a
Gaussian mixture fitted by expectation-maximisation to the fused image), so a particle's
localisations have to land on sites, and a pile-up cannot borrow density from a halo of
misplaced particles. With a declared ``symmetry`` ``n`` the sites come in ``K / n`` orbits of
``n`` turns about the origin, so only the orbits' representatives are free: a pore's eight
corners are one orbit. Both numbers are the user's prior knowledge (a design's site count, a
pore's 8-fold symmetry), never inferred.

Widths: the particles are drawn with the data kernel :func:`data_kernel` (``sigma / sqrt 2``);
a site's width in the likelihood makes up the rest of the localisation precision ``sigma``, so
a localisation's score is close to its log likelihood under sites of width ``sigma``. With the
kernel at ``sigma`` itself the profile likelihood of a simulated pore's radius peaked at 42-46
nm for a true 50 nm; at ``sigma / 2`` and sites of 7 nm it peaked at 48 nm.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from holly.method.geometry import cyclic_turns

EM_ITERATIONS = 20  # expectation-maximisation steps of the sites per annealing round


def data_kernel(sigma: float) -> float:
    """The Gaussian the particles are drawn with under a site template (precision ``sigma``)."""
    return sigma / math.sqrt(2.0)


def site_width(sigma: float, blur: float) -> float:
    """A site's width at an annealing round of template blur ``blur`` (kernel widths, >= 1):
    with the data kernel, ``sigma * blur`` in all."""
    return math.sqrt(max((sigma * blur) ** 2 - data_kernel(sigma) ** 2, 0.0))


class SiteTemplate:
    """``count`` equal sites in orbits of ``symmetry`` turns, fitted to fused images."""

    def __init__(self, count: int, symmetry: int, centres: np.ndarray, rng: np.random.Generator):
        if count < 1 or symmetry < 1 or count % symmetry:
            raise ValueError(f"{count} sites cannot form orbits of {symmetry}: a multiple of it")
        # the in-plane blocks of C_symmetry: [symmetry, 2, 2]
        self.count, self.rng = count, rng
        self.turns = cyclic_turns(symmetry)[:, :2, :2].numpy()
        x, y = np.meshgrid(centres, centres)  # image rows are y, columns x
        self.pixels = np.column_stack([x.ravel(), y.ravel()])
        self.representatives: np.ndarray | None = None

    @property
    def sites(self) -> np.ndarray:
        """Every site, ``[count, 2]``: each representative turned by each turn."""
        return np.concatenate([self.representatives @ t.T for t in self.turns])

    def fit(self, image: np.ndarray, width: float) -> None:
        """Move the sites to ``image`` (the fused particles, ``[n, n]``): EM of an equal-weight
        mixture of Gaussians of ``width``, orbits kept (started by weighted k-means++ the first
        time, from the previous sites after)."""
        weights = np.clip(image.ravel(), 0.0, None)
        keep = weights > weights.max() * 1e-4
        xy, w = self.pixels[keep], weights[keep]
        if self.representatives is None:
            self.representatives = self._seeds(xy, w)
        m = len(self.representatives)
        for _ in range(EM_ITERATIONS):
            d2 = ((xy[:, None] - self.sites[None]) ** 2).sum(-1)  # [N, count], turn-major
            log_r = -0.5 * d2 / width**2
            r = np.exp(log_r - log_r.max(1, keepdims=True))
            r *= (w / r.sum(1))[:, None]
            moved, mass = np.zeros((m, 2)), np.zeros(m)
            for k, t in enumerate(self.turns):
                share = r[:, k * m : (k + 1) * m]  # [N, m]: each orbit's k-th turn
                moved += (share.T @ xy) @ t  # turned back: x @ t is t^-1 x for a rotation
                mass += share.sum(0)
            self.representatives = moved / np.maximum(mass, 1e-300)[:, None]

    def _seeds(self, xy: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Weighted k-means++ picks of the orbits' representatives."""
        p = w / w.sum()
        picked = [xy[self.rng.choice(len(xy), p=p)]]
        for _ in range(self.count // len(self.turns) - 1):
            d2 = ((xy[:, None] - np.array(picked)[None]) ** 2).sum(-1).min(1)
            q = p * d2
            picked.append(xy[self.rng.choice(len(xy), p=q / q.sum())])
        return np.array(picked)

    def image(self, centres: np.ndarray, width: float) -> torch.Tensor:
        """The sites as an image of equal Gaussians of ``width`` on the grid of ``centres``."""
        c = torch.from_numpy(centres)
        s = torch.from_numpy(self.sites)
        gx = torch.exp(-0.5 * ((c[None] - s[:, :1]) / width) ** 2)  # [count, n]
        gy = torch.exp(-0.5 * ((c[None] - s[:, 1:]) / width) ** 2)
        return gy.T @ gx
