"""Fourier shell correlation (FSC) of two point clouds, rendered as 3D Gaussian densities.

The maths only: no files, no alignment (the caller aligns the clouds first; see
:mod:`holly.results.halfsets`). docs/validation.md explains the choices; in short:

* **Density.** Each point is an isotropic 3D Gaussian of unit mass and standard deviation
  ``sigma`` (model units): ``rho(x) = sum_p (2 pi sigma^2)^(-3/2) exp(-|x - p|^2 / (2 sigma^2))``,
  sampled at voxel centres. ``sigma`` is the final training blur, so the density holds exactly
  the detail the last images could show. Separable: ``O(P * n^2 + P * n)`` work, not ``P * n^3``.
* **Grid.** One cube for both clouds (:func:`make_grid`): centred on the middle of their joint
  bounding box, voxel ``sigma / 2`` (the Gaussian spans 4 voxels per ``2 sigma``; the Nyquist
  frequency ``1 / sigma`` lies above the Gaussian's cutoff), side ``2 (R + 4 sigma)`` for the
  largest distance ``R`` of any point from the centre, so no Gaussian is cut by the box; an even
  number of voxels, at most ``max_size`` (beyond that the voxel grows, which lowers the Nyquist
  frequency, recorded in the result).
* **Mask.** A soft sphere (:func:`soft_sphere_mask`): 1 inside ``R + 3 sigma``, a raised-cosine
  edge out to ``R + 4 sigma``, 0 beyond. It encloses every point of both clouds, so it cuts no
  structure and, being the same loose envelope for both, adds no correlation of its own (a mask
  that hugs the structure correlates the halves by its shape alone); it only zeroes the far tails
  so the FFT's periodic boundary sees nothing.
* **Shells.** Spherical shells one Fourier voxel (``1 / L``, ``L`` the box side) wide; shell
  ``i`` holds the frequencies ``|k| L`` that round to ``i``; its frequency is ``i / L`` cycles per
  model unit. ``FSC_i = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the shell.
* **Cutoff.** The Gaussian's Fourier transform is ``exp(-2 pi^2 sigma^2 k^2)``; above the
  frequency where it falls to ``cutoff_level`` (default 1e-3; :func:`gaussian_cutoff`,
  ``~0.59 / sigma``) the images carried no information and the FSC is not used, so a resolution
  can never be claimed finer than ``1 / cutoff`` (``~1.7 sigma``).
* **Resolution.** The first shell after the origin where the FSC drops below a threshold
  (0.143 and 0.5), linearly interpolated in frequency with the shell before
  (:func:`crossing`); resolution = ``1 / frequency``. When the curve stays above the threshold up
  to the cutoff, the resolution is reported as the limit with ``limited = True`` ("at least
  this good").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

THRESHOLDS = (0.143, 0.5)
VOXELS_PER_SIGMA = 2.0
PAD_SIGMAS = 4.0
MASK_SIGMAS = 3.0  # the mask is flat out to R + MASK_SIGMAS sigma, zero beyond R + PAD_SIGMAS sigma
DEFAULT_CUTOFF_LEVEL = 1e-3
MAX_SIZE = 160


@dataclass(frozen=True)
class Grid:
    """A cubic voxel grid: ``size`` voxels per axis of side ``voxel``, centred on ``centre``.

    Voxel ``i`` along an axis has centre ``centre + (i - size / 2 + 0.5) * voxel``.
    """

    centre: np.ndarray  # [3], model units
    voxel: float  # model units
    size: int
    radius: float  # largest distance of a point from ``centre`` (model units)

    @property
    def side(self) -> float:
        return self.size * self.voxel

    def axis(self, d: int) -> np.ndarray:
        """Voxel centres along axis ``d`` → ``[size]``."""
        return self.centre[d] + (np.arange(self.size) - self.size / 2 + 0.5) * self.voxel

    @property
    def nyquist(self) -> float:
        """Highest frequency the grid samples, cycles per model unit."""
        return 0.5 / self.voxel


@dataclass(frozen=True)
class FSCCurve:
    """The FSC per shell: ``frequency [S]`` (cycles per unit), ``fsc [S]``, ``n_voxels [S]``."""

    frequency: np.ndarray
    fsc: np.ndarray
    n_voxels: np.ndarray


@dataclass(frozen=True)
class Crossing:
    """Where an FSC curve first drops below ``threshold``.

    ``resolution = 1 / frequency`` (model units). ``limited``: the curve never dropped below the
    threshold up to the usable limit, so ``frequency`` is that limit and the true resolution is at
    least as good.
    """

    threshold: float
    frequency: float
    resolution: float
    limited: bool


def _as_points(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
        raise ValueError(f"expected a non-empty [N, 3] point array, got shape {x.shape}")
    return x


def make_grid(
    clouds: list[np.ndarray],
    sigma: float,
    *,
    voxels_per_sigma: float = VOXELS_PER_SIGMA,
    pad_sigmas: float = PAD_SIGMAS,
    max_size: int = MAX_SIZE,
) -> Grid:
    """The common grid of ``clouds`` (each ``[N_i, 3]``, model units) at blur ``sigma``.

    See the module docstring for the rules (voxel ``sigma / voxels_per_sigma``, side
    ``2 (R + pad_sigmas sigma)``, even size, at most ``max_size``).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    pts = np.concatenate([_as_points(c) for c in clouds])
    centre = 0.5 * (pts.min(0) + pts.max(0))
    radius = float(np.sqrt(((pts - centre) ** 2).sum(1)).max())
    side = 2.0 * (radius + pad_sigmas * sigma)
    voxel = sigma / voxels_per_sigma
    size = int(math.ceil(side / voxel))
    size += size % 2
    if size > max_size:
        size = max_size - max_size % 2
        voxel = side / size
    return Grid(centre=centre, voxel=float(voxel), size=size, radius=radius)


def density(points: np.ndarray, grid: Grid, sigma: float) -> np.ndarray:
    """Sum of unit-mass isotropic Gaussians of ``sigma`` at ``points [N, 3]`` on ``grid``.

    Returns
    -------
    ndarray [size, size, size], float64
        Indexed ``[x, y, z]``; points per cubic model unit.
    """
    pts = _as_points(points)
    norm = (2 * math.pi * sigma**2) ** -0.5
    g = [
        norm * np.exp(-0.5 * ((grid.axis(d)[None] - pts[:, d : d + 1]) / sigma) ** 2)
        for d in (0, 1, 2)
    ]
    gx, gy, gz = g  # each [N, size]
    xy = gx[:, :, None] * gy[:, None, :]  # [N, size, size]
    return np.tensordot(xy, gz, axes=([0], [0]))  # [size, size, size]


def soft_sphere_mask(grid: Grid, inner: float, outer: float) -> np.ndarray:
    """1 within ``inner`` of the grid centre, a raised-cosine edge to 0 at ``outer`` → ``[n]*3``."""
    if not outer > inner:
        raise ValueError(f"need outer > inner, got {inner}, {outer}")
    x, y, z = (grid.axis(d) - grid.centre[d] for d in (0, 1, 2))
    r = np.sqrt(x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2)
    t = np.clip((r - inner) / (outer - inner), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(math.pi * t))


def shell_index(size: int) -> np.ndarray:
    """Shell of each coefficient of ``rfftn`` of a ``size^3`` volume → ``[size, size, size//2+1]``.

    The shell is ``round(|k| * size)`` with ``k`` in cycles per voxel (FFT frequency order).
    """
    f = np.fft.fftfreq(size) * size
    fz = np.fft.rfftfreq(size) * size
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fz[None, None, :] ** 2)
    return np.rint(r).astype(np.int64)


def _rfft_weights(size: int) -> np.ndarray:
    """Multiplicity of each ``rfftn`` coefficient in the full spectrum (1 or 2) → ``[size//2+1]``.

    The half-spectrum stores each conjugate pair once, except the ``k_z = 0`` plane and, for an
    even size, the Nyquist plane, which are their own mirror images.
    """
    w = np.full(size // 2 + 1, 2.0)
    w[0] = 1.0
    if size % 2 == 0:
        w[-1] = 1.0
    return w


def fsc(volume_a: np.ndarray, volume_b: np.ndarray, voxel: float) -> FSCCurve:
    """Fourier shell correlation of two cubic volumes on the same grid.

    Parameters
    ----------
    volume_a, volume_b : ndarray [n, n, n]
        Real densities (masked already, if a mask is wanted).
    voxel : float
        Voxel side, model units (sets the frequency scale).

    Returns
    -------
    FSCCurve
        Shells 0 .. n // 2 (the last at the Nyquist frequency ``0.5 / voxel``); a shell with no
        power in either volume has FSC 0.
    """
    a, b = np.asarray(volume_a, np.float64), np.asarray(volume_b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"need two equal cubic volumes, got {a.shape} and {b.shape}")
    n = a.shape[0]
    return _shell_correlation(np.fft.rfftn(a), np.fft.rfftn(b), shell_index(n), n, voxel)


def _shell_correlation(
    fa: np.ndarray, fb: np.ndarray, shells: np.ndarray, n: int, spacing: float
) -> FSCCurve:
    """The correlation per shell (ring) of two half-spectra ``fa``, ``fb`` (``rfftn`` of ``n``
    samples per axis, ``spacing`` apart) whose coefficients lie in ``shells`` (same shape);
    each coefficient counts with its multiplicity in the full spectrum."""
    w = np.broadcast_to(_rfft_weights(n), shells.shape)
    keep = shells <= n // 2
    idx, wk, s = shells[keep], w[keep], n // 2 + 1
    cross = np.bincount(idx, wk * (fa[keep] * np.conj(fb[keep])).real, minlength=s)
    pa = np.bincount(idx, wk * np.abs(fa[keep]) ** 2, minlength=s)
    pb = np.bincount(idx, wk * np.abs(fb[keep]) ** 2, minlength=s)
    count = np.bincount(idx, wk, minlength=s)
    denom = np.sqrt(pa * pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(denom > 0, cross / np.where(denom > 0, denom, 1.0), 0.0)
    return FSCCurve(
        frequency=np.arange(s) / (n * spacing), fsc=curve, n_voxels=count.astype(np.int64)
    )


def frc(image_a: np.ndarray, image_b: np.ndarray, pixel: float) -> FSCCurve:
    """Fourier ring correlation of two square images on the same grid: :func:`fsc` in 2D
    (rings ``round(|k| * n)``, the half-spectrum's columns weighted as its planes are there).

    Used for clouds that are flat by construction (the in-plane pose prior): their xy
    projections are the ``k_z = 0`` slice of the volumes' spectra (projection-slice theorem),
    the only part of it the data determined.
    """
    a, b = np.asarray(image_a, np.float64), np.asarray(image_b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two equal square images, got {a.shape} and {b.shape}")
    n = a.shape[0]
    f, fy = np.fft.fftfreq(n) * n, np.fft.rfftfreq(n) * n
    rings = np.rint(np.sqrt(f[:, None] ** 2 + fy[None, :] ** 2)).astype(np.int64)
    return _shell_correlation(np.fft.rfft2(a), np.fft.rfft2(b), rings, n, pixel)


def gaussian_cutoff(sigma: float, level: float = DEFAULT_CUTOFF_LEVEL) -> float:
    """Frequency (cycles per unit) where a Gaussian's transform ``exp(-2 pi^2 sigma^2 k^2)``
    falls to ``level``: ``sqrt(ln(1 / level) / 2) / (pi sigma)``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return math.sqrt(math.log(1.0 / level) / 2.0) / (math.pi * sigma)


def crossing(curve: FSCCurve, threshold: float, max_frequency: float | None = None) -> Crossing:
    """First drop of ``curve`` below ``threshold`` after the origin, linearly interpolated.

    Only shells up to ``max_frequency`` count (default: all). When none of them is below the
    threshold, the result is the last usable shell's frequency, ``limited=True``.
    """
    f, c = curve.frequency, curve.fsc
    top = (
        len(f) - 1 if max_frequency is None else int(np.searchsorted(f, max_frequency, "right")) - 1
    )
    if top < 1:
        raise ValueError("the curve has no usable shell beyond the origin")
    for i in range(1, top + 1):
        if c[i] < threshold:
            c0, c1 = c[i - 1], c[i]
            t = (c0 - threshold) / (c0 - c1) if c0 > c1 else 0.0
            freq = float(f[i - 1] + min(max(t, 0.0), 1.0) * (f[i] - f[i - 1]))
            freq = max(freq, float(f[1]) * 1e-6)  # below threshold at the first shell
            return Crossing(threshold, freq, 1.0 / freq, False)
    freq = float(f[top])
    return Crossing(threshold, freq, 1.0 / freq, True)


@dataclass(frozen=True)
class CloudFSC:
    """Result of :func:`cloud_fsc`: the curve, its crossings, the grid and the usable limit."""

    curve: FSCCurve
    crossings: dict[float, Crossing]
    grid: Grid
    sigma: float
    max_frequency: float  # min(grid Nyquist, Gaussian cutoff), cycles per model unit
    planar: bool = False  # the curve is the FRC of the xy projections (flat clouds)

    def to_dict(self, nm_per_unit: float | None = None) -> dict:
        """JSON-ready: resolutions in model units (and nm when ``nm_per_unit`` is known)."""
        usable = self.curve.frequency <= self.max_frequency + 1e-12
        out = {
            "kind": "FRC of the xy projections" if self.planar else "FSC",
            "sigma": self.sigma,
            "grid": {
                "size": self.grid.size,
                "voxel": self.grid.voxel,
                "centre": self.grid.centre.tolist(),
                "radius": self.grid.radius,
            },
            "max_frequency": self.max_frequency,
            "resolution_limit": 1.0 / self.max_frequency,
            "curve": {
                "frequency": self.curve.frequency[usable].tolist(),
                "fsc": self.curve.fsc[usable].tolist(),
                "n_voxels": self.curve.n_voxels[usable].tolist(),
            },
            "nm_per_unit": nm_per_unit,
        }
        for t, cr in self.crossings.items():
            key = _key(t)
            out[f"resolution_{key}"] = cr.resolution
            out[f"resolution_{key}_limited"] = cr.limited
            out[f"resolution_{key}_nm"] = cr.resolution * nm_per_unit if nm_per_unit else None
        return out


def _key(threshold: float) -> str:
    """0.143 -> '0143', 0.5 -> '05' (JSON keys and table columns)."""
    return f"{threshold:g}".replace(".", "")


def cloud_fsc(
    a: np.ndarray,
    b: np.ndarray,
    sigma: float,
    *,
    thresholds: tuple[float, ...] = THRESHOLDS,
    cutoff_level: float = DEFAULT_CUTOFF_LEVEL,
    max_size: int = MAX_SIZE,
    planar: bool = False,
) -> CloudFSC:
    """FSC of two (already aligned) clouds ``a [N, 3]``, ``b [M, 3]`` rendered at ``sigma``.

    The grid, density, mask, shells, cutoff and crossings are those of the module docstring.
    ``planar``: the clouds are flat by construction (z never reached an image), so two of them
    agree perfectly along z whatever their in-plane detail, and the 3D FSC stays high up to the
    cutoff; the Fourier ring correlation of their xy projections (:func:`frc`) is used instead.
    """
    a, b = _as_points(a), _as_points(b)
    grid = make_grid([a, b], sigma, max_size=max_size)
    mask = soft_sphere_mask(
        grid, grid.radius + MASK_SIGMAS * sigma, grid.radius + PAD_SIGMAS * sigma
    )
    vol_a, vol_b = density(a, grid, sigma) * mask, density(b, grid, sigma) * mask
    if planar:
        curve = frc(vol_a.sum(axis=2), vol_b.sum(axis=2), grid.voxel)
    else:
        curve = fsc(vol_a, vol_b, grid.voxel)
    limit = min(grid.nyquist, gaussian_cutoff(sigma, cutoff_level))
    cross = {t: crossing(curve, t, limit) for t in thresholds}
    return CloudFSC(curve, cross, grid, float(sigma), float(limit), planar)
