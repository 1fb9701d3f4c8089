"""Built-in ground-truth shapes, and loading a user's own.

Each built-in shape is procedural and deterministic (no RNG), centred at the origin, in model
units (1 unit = H/4 pixels; the frame spans [-2, 2)), sized to fit a radius of about 1.5 so that
translated copies stay inside the frame.

* ``cep152`` — a 9-fold barrel like the centriole's CEP152 toroid: nine tilted blades (short rows
  of points along the barrel axis) on a ring, joined by a thin ring at one end. 9-fold symmetric.
* ``tetrapod`` — four straight arms of different lengths from a hub, each ending in a knob of a
  different size. No symmetry at all.
* ``helix`` — 1.75 turns of a helix with a knob at one end and a straight tail at the other.
  Chiral and asymmetric.
* ``spiral`` — a conical helix (2.5 turns, radius shrinking along z) with a short tail: a hard
  case (thin, fine features near the apex) that the CPU default does not recover.

Two sparse, flat test structures (a few discrete sites in the z = 0 plane, like DNA-origami binding
sites or pore corners), for the localisation simulator (:mod:`holly.data.locsim`); their size in nm
is :data:`SIZE_NM`:

* ``logo`` — the letters "TUD" sampled on a grid, 38 sites, 80 x 75 nm (11 columns at 8 nm,
  7 rows at 12.5 nm), like the TU Delft DNA-PAINT logo. No symmetry.
* ``pore`` — 8 corners on a ring of radius 50 nm, like one ring of a nuclear pore. 8-fold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from holly.data.pointio import SUFFIXES, read_points
from holly.errors import HollyError

log = logging.getLogger(__name__)


def _cep152() -> np.ndarray:
    blades, per_blade = 9, 14
    radius, half_len, tilt = 1.1, 0.7, np.deg2rad(20)
    t = np.linspace(-half_len, half_len, per_blade)
    pts = []
    for k in range(blades):
        phi = 2 * np.pi * k / blades
        # a blade runs along z, leaning tangentially by `tilt` (the centriole's triplet pitch)
        tangent = np.array([-np.sin(phi), np.cos(phi), 0.0])
        centre = radius * np.array([np.cos(phi), np.sin(phi), 0.0])
        direction = np.cos(tilt) * np.array([0, 0, 1.0]) + np.sin(tilt) * tangent
        pts.append(centre + t[:, None] * direction)
    ring_phi = np.linspace(0, 2 * np.pi, 45, endpoint=False)
    ring = np.stack(
        [0.75 * np.cos(ring_phi), 0.75 * np.sin(ring_phi), np.full_like(ring_phi, -half_len)], 1
    )
    return np.concatenate(pts + [ring])


def _segment(a, b, n) -> np.ndarray:
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) * np.asarray(a) + s * np.asarray(b)


def _sphere_shell(centre, radius, n) -> np.ndarray:
    # Fibonacci sphere: evenly spread, deterministic
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    d = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return np.asarray(centre) + radius * d


def _fit(pts: np.ndarray, radius: float) -> np.ndarray:
    """Centre on the centroid and scale so the farthest vertex is ``radius`` from the origin."""
    pts = pts - pts.mean(0)
    return pts * (radius / np.linalg.norm(pts, axis=1).max())


def _tetrapod() -> np.ndarray:
    # Arms along the four tetrahedral directions: the lengths and knob sizes make the shape
    # asymmetric, but its skeleton is only pseudo-symmetric, and the pose CNN confuses views
    # related by the skeleton's rotations (a measured, honest weakness of the method; the cloud
    # itself is recovered well). Irregular arm directions were tried and learned worse.
    dirs = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]], dtype=float)
    lengths = [1.5, 1.2, 1.0, 0.8]
    knob_radii = [0.25, 0.2, 0.15, 0.1]  # one knob per arm, all of different sizes
    knob_counts = [40, 28, 18, 10]
    parts = [_sphere_shell([0, 0, 0], 0.15, 16)]
    for d, length, r, n in zip(dirs, lengths, knob_radii, knob_counts, strict=True):
        parts.append(_segment(0.15 * d, (length - r) * d, max(5, int((length - r) / 0.08))))
        parts.append(_sphere_shell(length * d, r, n))
    return _fit(np.concatenate(parts), 1.5)


def _helix() -> np.ndarray:
    s = np.linspace(0, 1, 120)
    angle = 2 * np.pi * 1.75 * s
    helix = np.stack([0.8 * np.cos(angle), 0.8 * np.sin(angle), -1.0 + 2.0 * s], 1)
    # a knob at the start and a straight tail at the end make it asymmetric end to end
    knob = _sphere_shell(helix[0] + [0.0, 0.0, -0.25], 0.22, 30)
    tail = _segment(helix[-1] + [-0.05, 0.05, 0], helix[-1] + [-0.8, 0.6, 0.0], 12)
    return _fit(np.concatenate([helix, knob, tail]), 1.5)


def _spiral() -> np.ndarray:
    s = np.linspace(0, 1, 180)
    angle = 2 * np.pi * 2.5 * s
    radius = 1.2 - 0.9 * s
    z = -1.0 + 2.0 * s
    helix = np.stack([radius * np.cos(angle), radius * np.sin(angle), z], 1)
    tail = _segment(helix[0] + [0.07, 0, 0], helix[0] + [0.9, 0, -0.3], 14)
    return _fit(np.concatenate([helix, tail]), 1.5)


# "TUD" on a grid: 3-column letters with one empty column between them, 7 rows
_LOGO_ROWS = (
    "###.#.#.##.",
    ".#..#.#.#.#",
    ".#..#.#.#.#",
    ".#..#.#.#.#",
    ".#..#.#.#.#",
    ".#..#.#.#.#",
    ".#..###.##.",
)
_LOGO_PITCH_NM = (8.0, 12.5)  # x, y
PORE_RADIUS_NM = 50.0


def logo_sites_nm() -> np.ndarray:
    """The ``logo`` sites ``[38, 3]`` in nm, centred on their centroid, z = 0, +y up."""
    rows = len(_LOGO_ROWS)
    sites = [
        (c * _LOGO_PITCH_NM[0], (rows - 1 - r) * _LOGO_PITCH_NM[1], 0.0)
        for r, line in enumerate(_LOGO_ROWS)
        for c, ch in enumerate(line)
        if ch == "#"
    ]
    sites = np.array(sites, dtype=np.float64)
    return sites - sites.mean(0)


def pore_sites_nm() -> np.ndarray:
    """The ``pore`` corners ``[8, 3]`` in nm: a ring of radius :data:`PORE_RADIUS_NM`, z = 0."""
    phi = 2 * np.pi * np.arange(8) / 8
    return PORE_RADIUS_NM * np.stack([np.cos(phi), np.sin(phi), np.zeros(8)], 1)


def _diameter(pts: np.ndarray) -> float:
    return 2.0 * float(np.linalg.norm(pts - pts.mean(0), axis=1).max())


# Natural size of the shapes that have one: the diameter (twice the farthest site's distance
# from the centroid) in nm
SIZE_NM = {"logo": _diameter(logo_sites_nm()), "pore": _diameter(pore_sites_nm())}
SPARSE_SHAPES = ("logo", "pore")  # a few discrete sites each, not a sampled surface or curve


# Cyclic symmetry about the shape's z axis: views related by it give identical images, so the
# pose error takes the minimum over it.
SYMMETRY_ORDER = {"cep152": 9, "pore": 8}
# flat shapes that turning over (180 degrees about an axis in their plane) also leaves alike:
# the pore's 8 corners in a plane have the dihedral group D8, not only C8
DIHEDRAL = {"pore"}

BUILTIN_SHAPES = {
    "cep152": _cep152,
    "tetrapod": _tetrapod,
    "helix": _helix,
    "spiral": _spiral,
    "logo": lambda: _fit(logo_sites_nm(), 1.5),
    "pore": lambda: _fit(pore_sites_nm(), 1.5),
}


def builtin_shape(name: str) -> np.ndarray:
    """Vertices ``[N, 3]`` of a built-in shape (see module docstring)."""
    try:
        return BUILTIN_SHAPES[name]().astype(np.float64)
    except KeyError:
        raise HollyError(
            f"unknown shape {name!r}: use one of {sorted(BUILTIN_SHAPES)} or a path to a "
            f"{'/'.join(s.lstrip('.').upper() for s in SUFFIXES)} file"
        ) from None


def is_shape_path(name: str) -> bool:
    """True if ``name`` names a point file rather than a built-in shape."""
    return Path(name).suffix.lower() in SUFFIXES


def load_shape(name: str, fit_radius: float | None = None) -> np.ndarray:
    """Vertices of a built-in shape or of a PLY/OBJ/CSV file.

    Parameters
    ----------
    name : str
        Built-in name or path.
    fit_radius : float, optional
        If given, centre the shape on its centroid and scale it so its farthest vertex lies at
        this distance from the origin (model units). Use it for a user's own model, whose units
        are arbitrary; ``None`` keeps coordinates as they are (the original's behaviour).
    """
    xyz = read_points(name) if is_shape_path(name) else builtin_shape(name)
    check_vertices(xyz, name)
    if fit_radius is not None:
        xyz = xyz / np.abs(xyz).max()  # first to order 1: coordinates near 1e300 stay finite
        xyz = xyz - xyz.mean(0)
        extent = np.linalg.norm(xyz, axis=1).max()
        if extent == 0:
            raise HollyError(f"shape {name} has all vertices at one point; cannot scale it")
        xyz = xyz * (fit_radius / extent)
    return xyz


def check_vertices(xyz: np.ndarray, name: str) -> None:
    """A shape has vertices, all finite (an overflowing file reads as inf), not all at one point."""
    if len(xyz) == 0:
        raise HollyError(f"shape {name} has no vertices")
    if not np.isfinite(xyz).all():
        raise HollyError(
            f"shape {name} holds non-finite coordinates (NaN, or numbers too large for the file's "
            "type); fix the file"
        )
    if np.ptp(xyz, axis=0).max() == 0:
        raise HollyError(f"shape {name} has all its vertices at one point: it has no extent")


def frame_radius(height: int, width: int) -> float:
    """Half the image's shorter side in model units (1 model unit is ``height / 4`` pixels)."""
    return 2.0 * min(1.0, width / height)


FIT_RADIUS_FIX = "set data.fit_radius (e.g. 1.2) to centre and scale it"


def check_in_frame(
    xyz: np.ndarray,
    name: str,
    height: int,
    width: int,
    max_trans: float = 0.0,
    fix: str = FIT_RADIUS_FIX,
) -> None:
    """The shape must lie inside the image frame, or most of it would never be seen.

    A vertex farther from the origin than the frame's half-size (:func:`frame_radius`) leaves
    the image in some poses: a warning. When most vertices are that far (a shape in other units,
    or far off centre) the images would be nearly blank and the loss meaningless: an error that
    says what to do (``fix``: by default, ``data.fit_radius``).
    """
    check_vertices(xyz, name)
    frame = frame_radius(height, width) - max_trans * np.sqrt(2)
    radius = np.linalg.norm(xyz, axis=1)
    outside = float((radius > frame).mean())
    if outside > 0.5:
        raise HollyError(
            f"shape {name}: {outside:.0%} of its vertices lie outside the image frame (farthest "
            f"{radius.max():.3g} model units from the centre; the {height}x{width} frame reaches "
            f"{frame:.3g}): {fix}"
        )
    if outside > 0:
        log.warning(
            "shape %s: %.0f%% of its vertices can leave the image frame (farthest %.3g model "
            "units, frame %.3g); to keep them in, %s",
            name,
            100 * outside,
            radius.max(),
            frame,
            fix,
        )
