"""Template-free 2D particle fusion: register every particle's localisations onto one frame.

For particles seen from the top (``model.pose_prior: inplane``: origami on glass, pores in the
nuclear envelope) each particle differs from the structure by an in-plane rotation and a shift.
Fusion finds them from the localisations alone, with no model of the structure, by
``FusionParams.method``:

- ``"anneal"``: every particle aligned at once against a template of all the others, by
  annealed expectation-maximisation (:mod:`holly.method.annealedfusion`);
- ``"pairs"``: the three steps of Heydarian et al. (Nat. Methods 2018), with holly's own
  registration and averaging (below);
- ``"both"`` (the default): each, then the one whose particles fit each other better
  (:func:`holly.method.annealedfusion.fit`, the likelihood the annealing maximises). Neither
  is better everywhere: annealing fit the real TU Delft 30 % logos better than pairs (its D
  and U cleaner), and pairs fused sparse simulated logos with 1 nm precision where annealing
  did not.

Pairs:

1. **Pairs.** Each particle is registered onto ``partners`` random others: the rotation (one of
   ``n_angles``) and shift that maximise the overlap of the two Gaussian-blurred localisation
   densities. The overlap of two Gaussian mixtures is the cross-correlation of their density
   images, so every shift is scored at once by FFT, for each rotation.
2. **Synchronisation.** The pairs' relative rotations are made consistent: the absolute angles
   are the phases of the top eigenvector of ``H[i, j] = w_ij exp(i theta_ij)`` (spectral
   angular synchronisation, Singer 2011), then the pairs that disagree with them by more than
   ``keep_deg`` are dropped and the angles solved again (``sync_rounds`` times). The shifts
   follow by weighted least squares over the kept pairs.
3. **Bootstrap.** Each particle is registered again, onto the fusion of all the others (leave
   one out), ``bootstrap_rounds`` times.

Rotations and shifts, and with ``FusionParams.mirror`` (annealing only) mirror images: a
particle lying face down, seen from the top, is the mirror image of one face up. The pairs
are SE(2) only. Underlabelling limits both methods: a pair registers only on the sites both
particles show, so it needs several shared sites (the TU Delft DNA-PAINT logos at ~50 %
labelling fuse into their letters by pairs; at 30 % into a partial shape by either, and into
its three letters by annealing with mirror images); holly's simulated 30 % logo and 8-corner
pore, a few sites per particle, fuse by neither, the pore only with its symmetry and site
count declared (``FusionParams.symmetry`` and ``sites``; docs/maintainer-notes.md, "Particle
fusion", "Annealed fusion", "A site template and a declared symmetry" and "Particles face
down").

Arrays only, no files: the caller (:mod:`holly.results.fusion`, for ``holly fuse``) reads and
writes. Coordinates are any length unit (the store's nm); angles in radians, counter-clockwise
in the x-y axes the points are given in.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from holly.config import fusion_prior_problem
from holly.method.annealedfusion import (
    MIRROR,
    Schedule,
    anneal,
    faces_of,
    fit,
    unit_mass_spectra,
)
from holly.method.clusters import kmeans
from holly.method.geometry import rotation_about_z
from holly.method.sitetemplate import data_kernel
from holly.method.viewprior import face_turn

log = logging.getLogger(__name__)

MAX_GRID = 256  # pixels per side of a density image: bounds memory and time
SPECTRA_BUDGET_BYTES = 1536 * 2**20  # rotated spectra kept for the bootstrap rounds


@dataclass(frozen=True)
class FusionParams:
    """How particles are registered (units of the points, e.g. nm)."""

    sigma: float  # Gaussian width of each localisation in the registration densities
    n_angles: int = 72  # rotations tried per registration (5 degree steps)
    partners: int = 64  # random partners each particle is registered onto
    keep_deg: float = 20.0  # pairs disagreeing more with the synchronised angles are dropped
    sync_rounds: int = 4
    bootstrap_rounds: int = 5
    # "anneal" (annealedfusion), "pairs" (pairs, sync, bootstrap), or "both": the one whose
    # particles fit each other better (annealedfusion.fit)
    method: str = "both"
    anneal_rounds: int = 12  # "anneal" only; partners/sync/bootstrap are "pairs" only
    anneal_starts: int = 3  # random starts, the best fitting kept
    # the particles' rotational symmetry (C_n about their centre), declared by the user, never
    # inferred: "anneal" averages its template over the n turns; 1 (the default): none. The
    # "pairs" registrations ignore it ("both" compares the two under the symmetric template)
    symmetry: int = 1
    # a template of this many discrete sites (in orbits of `symmetry`) instead of the free
    # density (holly.method.sitetemplate): "anneal" only (a "both" becomes "anneal": a site
    # model's fit and a density's are not comparable); 0 (the default): the density
    sites: int = 0
    # "anneal": each particle may lie face down, its mirror image tried too (twice the
    # candidates). False: turns only, as the pairs always are
    mirror: bool = False

    def __post_init__(self):
        # set once here, so that the fusion, its record and a run's reuse check all see (and
        # the record says) the method that runs, not a comparison that never ran
        if self.sites and self.method == "both":
            object.__setattr__(self, "method", "anneal")

    @property
    def kernel(self) -> float:
        """The Gaussian the particles are drawn with: ``sigma``, narrower under a site
        template (:func:`holly.method.sitetemplate.data_kernel`)."""
        return data_kernel(self.sigma) if self.sites else self.sigma


METHODS = ("both", "anneal", "pairs")


@dataclass
class Fusion:
    """Each particle's transform into the fused frame: ``x -> R(angle) (x - centroid) + shift``."""

    angles: np.ndarray  # [P] radians
    shifts: np.ndarray  # [P, 2]
    centroids: np.ndarray  # [P, 2] each particle's mean, subtracted first
    pair_agreement: float | None  # weighted share of the pairs the angles agree with ("pairs")
    pairs_kept: int
    pairs: int
    moved: list[int] = field(default_factory=list)  # particles re-registered (turned) per round
    posterior_peak: float | None = None  # "anneal": median of each particle's largest probability
    chosen: str = ""  # the method whose transforms these are
    sites: np.ndarray | None = None  # "anneal" with a site template: its sites, [K, 2]
    fits: dict[str, float] = field(default_factory=dict)  # each method's fit, where compared
    # [P] bool: mirrored (x -> -x) about its centroid before the turn ("anneal" with mirror)
    mirrored: np.ndarray | None = None

    def apply(self, points: list[np.ndarray]) -> list[np.ndarray]:
        """``points`` (as given to :func:`fuse`) in the fused frame."""
        faces = faces_of(self.mirrored, len(points))
        return [
            place(p, a, s, c, face)
            for p, a, s, c, face in zip(
                points, self.angles, self.shifts, self.centroids, faces, strict=True
            )
        ]


def place(points, angle: float, shift, centroid, mirrored: bool = False) -> np.ndarray:
    """``points [n, 2]`` of one particle in the fused frame: about their ``centroid``,
    mirrored (``x -> -x``) where ``mirrored``, turned by ``angle``, then moved by ``shift``."""
    centred = np.asarray(points, dtype=np.float64) - centroid
    return (centred * MIRROR if mirrored else centred) @ rotation(angle).T + shift


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class Grid:
    """Square density images: ``n`` pixels of ``pixel`` units, the origin at the centre."""

    n: int
    pixel: float

    @classmethod
    def for_particles(cls, centred: list[np.ndarray], sigma: float) -> Grid:
        """Pixels of ``sigma / 1.5``, the field 2.5x the particles' reach (95th percentile
        over particles of their 95 % radius): shifts up to a quarter of it never wrap around
        the periodic correlation (a stray localisation further out may)."""
        radii = [float(np.quantile(np.linalg.norm(p, axis=1), 0.95)) for p in centred]
        reach = float(np.quantile(radii, 0.95)) + 2 * sigma
        pixel = sigma / 1.5
        n = int(math.ceil(2.5 * reach / pixel / 2)) * 2
        if n > MAX_GRID:
            pixel *= n / MAX_GRID
            n = MAX_GRID
        return cls(n=max(n, 16), pixel=pixel)

    def centres(self) -> np.ndarray:
        return (np.arange(self.n) - self.n / 2 + 0.5) * self.pixel


def density(points: np.ndarray, grid: Grid, sigma: float) -> np.ndarray:
    """Sum of isotropic Gaussians at ``points [n, 2]``: image ``[row = y, column = x]``."""
    c = grid.centres()
    gx = np.exp(-0.5 * ((points[:, :1] - c[None]) / sigma) ** 2)
    gy = np.exp(-0.5 * ((points[:, 1:] - c[None]) / sigma) ** 2)
    return gy.T @ gx


def _unit(images: torch.Tensor) -> torch.Tensor:
    norm = images.flatten(-2).norm(dim=-1).clamp_min(1e-30)
    return images / norm[..., None, None]


def rotated_spectra(points: np.ndarray, grid: Grid, sigma: float, angles: np.ndarray):
    """FFTs ``[K, n, n/2+1]`` of the unit-norm densities of ``points`` turned by each of
    ``angles`` (all K drawn in one batched product)."""
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    x, y = points[None, :, :1], points[None, :, 1:]
    turned = torch.from_numpy(np.concatenate([c * x - s * y, s * x + c * y], axis=2))
    centres = torch.from_numpy(grid.centres())
    gx = torch.exp(-0.5 * ((turned[..., :1] - centres) / sigma) ** 2)  # [K, n_points, n]
    gy = torch.exp(-0.5 * ((turned[..., 1:] - centres) / sigma) ** 2)
    images = torch.bmm(gy.transpose(1, 2), gx).float()
    return torch.fft.rfft2(_unit(images))


class RotatedSpectra:
    """Each particle's :func:`rotated_spectra` (or ``draw``'s: the annealing's unit-mass
    ones), kept while they fit ``budget`` bytes (the bootstrap rounds, the annealing's rounds
    and starts reuse them), else drawn again when asked for."""

    def __init__(
        self, centred, grid: Grid, sigma: float, angles: np.ndarray, budget: int, draw=None
    ):
        self.centred, self.grid, self.sigma, self.angles = centred, grid, sigma, angles
        self.draw = draw or (lambda points: rotated_spectra(points, grid, sigma, angles))
        each = len(angles) * grid.n * (grid.n // 2 + 1) * 8  # complex64
        self.keep = each * len(centred) <= budget
        self.cache: dict[int, torch.Tensor] = {}

    def __getitem__(self, i: int) -> torch.Tensor:
        spectra = self.cache.get(i)
        if spectra is None:
            spectra = self.draw(self.centred[i])
            if self.keep:
                self.cache[i] = spectra
        return spectra


def best_alignment(spectra: torch.Tensor, targets: torch.Tensor, grid: Grid):
    """For each target spectrum, the rotation index and shift that best map the rotated
    source (``spectra [K, n, n/2+1]``) onto it: ``(score, k, shift [2])`` arrays.

    ``irfft2(conj(A) B)[s]`` is ``sum_x A(x) B(x + s)``: peak where B is A moved by ``s``."""
    n = grid.n
    corr = torch.fft.irfft2(spectra[None].conj() * targets[:, None], s=(n, n))
    score, flat = corr.flatten(1).max(1)
    k, rest = flat // (n * n), flat % (n * n)
    dy, dx = rest // n, rest % n
    dy = torch.where(dy >= n // 2, dy - n, dy)
    dx = torch.where(dx >= n // 2, dx - n, dx)
    shift = torch.stack([dx, dy], 1).double() * grid.pixel
    return score.double().numpy(), k.numpy(), shift.numpy()


@dataclass
class Pairs:
    """Pairwise registrations: particle ``i`` maps into ``j``'s frame by
    ``x -> R(theta) x + shift`` with overlap ``score``."""

    i: np.ndarray
    j: np.ndarray
    theta: np.ndarray
    shift: np.ndarray
    score: np.ndarray


def register_pairs(
    centred: list[np.ndarray],
    params: FusionParams,
    grid: Grid,
    rng: np.random.Generator,
    rotated: RotatedSpectra,
) -> Pairs:
    n, angles = len(centred), rotated.angles
    base = torch.fft.rfft2(
        _unit(torch.from_numpy(np.stack([density(p, grid, params.sigma) for p in centred])).float())
    )
    rows, started, report = [], time.monotonic(), max(n // 10, 1)
    for i in range(n):
        if i and i % report == 0:  # minutes of work: say how far it is
            left = (time.monotonic() - started) / i * (n - i)
            log.info("fusion: registered %d of %d particles' pairs, ~%.0f s left", i, n, left)
        others = np.delete(np.arange(n), i)
        js = rng.choice(others, size=min(params.partners, n - 1), replace=False)
        score, k, shift = best_alignment(rotated[i], base[torch.from_numpy(js)], grid)
        rows.append((np.full(len(js), i), js, angles[k], shift, score))
    return Pairs(*(np.concatenate(column) for column in zip(*rows, strict=True)))


def synchronise_angles(n: int, pairs: Pairs, keep: np.ndarray) -> np.ndarray:
    """Angles ``phi`` with ``phi_i - phi_j ~ theta_ij`` over the kept pairs (top eigenvector)."""
    h = np.zeros((n, n), complex)
    i, j, w, theta = pairs.i[keep], pairs.j[keep], pairs.score[keep], pairs.theta[keep]
    np.add.at(h, (i, j), w * np.exp(1j * theta))
    h = h + h.conj().T
    _, vectors = np.linalg.eigh(h)
    return np.angle(vectors[:, -1])


def disagreement_deg(pairs: Pairs, phi: np.ndarray) -> np.ndarray:
    """Each pair's angle against the synchronised ``phi_i - phi_j``, degrees in [0, 180]."""
    return np.degrees(disagreement(pairs.theta, phi[pairs.i] - phi[pairs.j]))


def synchronise_shifts(n: int, pairs: Pairs, phi: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Shifts ``b`` with ``b_i - b_j = R(phi_j) shift_ij`` over the kept pairs (weighted least
    squares, mean zero): from composing ``x -> R(phi) x + b`` along each pair."""
    w = pairs.score * keep
    c, s = np.cos(phi[pairs.j]), np.sin(phi[pairs.j])
    t = pairs.shift
    v = np.stack([c * t[:, 0] - s * t[:, 1], s * t[:, 0] + c * t[:, 1]], 1)
    lap = np.zeros((n, n))
    rhs = np.zeros((n, 2))
    np.add.at(lap, (pairs.i, pairs.i), w)
    np.add.at(lap, (pairs.j, pairs.j), w)
    np.add.at(lap, (pairs.i, pairs.j), -w)
    np.add.at(lap, (pairs.j, pairs.i), -w)
    np.add.at(rhs, pairs.i, w[:, None] * v)
    np.add.at(rhs, pairs.j, -w[:, None] * v)
    lap += np.eye(n) * 1e-9 * max(float(w.max(initial=0.0)), 1.0)  # fixes the common shift
    b = np.linalg.lstsq(lap, rhs, rcond=None)[0]
    return b - b.mean(0)


def bootstrap_round(
    centred: list[np.ndarray],
    phi: np.ndarray,
    shifts: np.ndarray,
    params: FusionParams,
    grid: Grid,
    rotated: RotatedSpectra,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Register every particle onto the fusion of all the others at the current transforms."""
    angles = rotated.angles
    placed = [p @ rotation(a).T + s for p, a, s in zip(centred, phi, shifts, strict=True)]
    own = torch.fft.rfft2(
        torch.from_numpy(np.stack([density(p, grid, params.sigma) for p in placed])).float()
    )
    total = own.sum(0)
    new_phi, new_shifts = phi.copy(), shifts.copy()
    for i in range(len(centred)):
        _, k, shift = best_alignment(rotated[i], (total - own[i])[None], grid)
        new_phi[i], new_shifts[i] = angles[k[0]], shift[0]
    moved = int((disagreement(new_phi, phi) > 1e-6).sum())
    return new_phi, new_shifts, moved


def disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` as angles, radians in [0, pi]."""
    return np.abs(np.angle(np.exp(1j * (a - b))))


def fuse(points: list[np.ndarray], params: FusionParams, seed: int) -> Fusion:
    """Register ``points`` (one ``[n_i, 2]`` array per particle) onto one frame, by
    ``params.method``: annealed EM against all particles (:mod:`holly.method.annealedfusion`)
    or pairwise registrations, synchronisation and bootstrap (:func:`fuse_pairs`)."""
    if len(points) < 3:
        raise ValueError(f"particle fusion needs at least 3 particles, got {len(points)}")
    if params.method not in METHODS:
        raise ValueError(f"fusion method {params.method!r}: one of {', '.join(METHODS)}")
    _check_prior(params)
    centroids = np.stack([p.mean(0) for p in points])
    centred = [p - c for p, c in zip(points, centroids, strict=True)]
    grid = Grid.for_particles(centred, params.kernel)
    angles = 2 * np.pi * np.arange(params.n_angles) / params.n_angles
    log.info(
        "fusion (%s%s): %d particles, %d angles, %d px density images of %.3g",
        params.method,
        _prior_words(params),
        len(centred),
        params.n_angles,
        grid.n,
        grid.pixel,
    )
    if params.method != "both":
        return _fuse_by(params.method, centred, centroids, params, grid, angles, seed)
    found = {m: _fuse_by(m, centred, centroids, params, grid, angles, seed) for m in METHODS[1:]}
    fits = {m: f.fits.get(m) for m, f in found.items()}
    placed = found["pairs"]
    fits["pairs"] = fit(
        centred, placed.angles, placed.shifts, grid, params.sigma, symmetry=params.symmetry
    )
    chosen = max(fits, key=fits.get)
    log.info(
        "fusion: log likelihood per localisation, anneal %.4f, pairs %.4f: keeping %s",
        fits["anneal"],
        fits["pairs"],
        chosen,
    )
    found[chosen].fits = fits
    return found[chosen]


def _prior_words(params: FusionParams) -> str:
    """What the user declared, for the log: sites (annealing only) and symmetry."""
    words = f" on {params.sites} sites, annealing only" if params.sites else ""
    words += f", {params.symmetry}-fold symmetry" if params.symmetry > 1 else ""
    return words + (", either face" if params.mirror else "")


def _check_prior(params: FusionParams) -> None:
    problem = fusion_prior_problem(params.symmetry, params.sites, params.method, params.n_angles)
    if problem:
        raise ValueError(f"fusion {problem[0]} {problem[1]}")


def _fuse_by(method: str, centred, centroids, params, grid, angles, seed) -> Fusion:
    if method == "pairs":
        return fuse_pairs(centred, centroids, params, grid, angles, seed)
    return fuse_annealed(centred, centroids, params, grid, angles, seed)


def fuse_annealed(centred, centroids, params, grid, angles, seed) -> Fusion:
    """``params.anneal_starts`` annealings from different random rotations; the one whose
    particles fit each other best is kept (the outcome depends on the start: on the TU Delft
    30 % logos one start gave clean letters, another a smeared T)."""
    schedule = Schedule(rounds=params.anneal_rounds)
    centres, kernel, mirror = torch.from_numpy(grid.centres()), params.kernel, params.mirror
    drawn = RotatedSpectra(  # the turns only: anneal makes the mirror images from them
        centred,
        grid,
        kernel,
        angles,
        SPECTRA_BUDGET_BYTES,
        draw=lambda points: unit_mass_spectra(points, centres, grid.pixel, kernel, angles),
    )
    best, best_fit = None, -math.inf
    for start in range(params.anneal_starts):
        done = anneal(
            centred,
            grid,
            params.sigma,
            angles,
            schedule,
            seed + 7919 * start,
            drawn,
            symmetry=params.symmetry,
            sites=params.sites,
            mirror=mirror,
        )
        score = (
            done.objective  # the site model's own log likelihood per localisation
            if params.sites
            else fit(
                *(centred, done.angles, done.shifts, grid, params.sigma),
                symmetry=params.symmetry,
                mirrored=done.mirrored,
            )
        )
        faces = "" if done.mirrored is None else f", {int(done.mirrored.sum())} face down"
        log.info("fusion: annealing start %d fits %.4f per localisation%s", start + 1, score, faces)
        if score > best_fit:
            best, best_fit = done, score
    peak = float(np.median(best.peak))
    return majority_face_up(
        Fusion(
            best.angles,
            best.shifts,
            centroids,
            None,
            0,
            0,
            best.moved,
            peak,
            chosen="anneal",
            fits={"anneal": best_fit},
            sites=best.sites,
            mirrored=best.mirrored,
        )
    )


def majority_face_up(fusion: Fusion) -> Fusion:
    """The same fusion with most particles face up: where more than half were placed
    mirrored, the fused frame is mirrored (``x -> -x``) as a whole, which the particles fit
    exactly as well. ``M R(a) M^f = R(-a) M^(f+1)``: each angle changes sign, each shift and
    site is mirrored and each face turns over. So the fused particle shows the face most
    particles show (on the TU Delft logos, the letters read as designed, not mirrored)."""
    down = fusion.mirrored
    if down is None or 2 * int(down.sum()) <= len(down):
        return fusion
    fusion.angles, fusion.shifts, fusion.mirrored = -fusion.angles, fusion.shifts * MIRROR, ~down
    if fusion.sites is not None:
        fusion.sites = fusion.sites * MIRROR
    return fusion


def fuse_pairs(
    centred: list[np.ndarray],
    centroids: np.ndarray,
    params: FusionParams,
    grid: Grid,
    angles: np.ndarray,
    seed: int,
) -> Fusion:
    """Pairwise registrations onto ``params.partners`` random others, angular and shift
    synchronisation, then ``params.bootstrap_rounds`` leave-one-out rounds."""
    n = len(centred)
    log.info("fusion: %d partners each", min(params.partners, n - 1))
    rotated = RotatedSpectra(centred, grid, params.sigma, angles, SPECTRA_BUDGET_BYTES)
    pairs = register_pairs(centred, params, grid, np.random.default_rng(seed), rotated)
    keep = np.ones(len(pairs.i), bool)
    phi = synchronise_angles(n, pairs, keep)
    for _ in range(params.sync_rounds):
        keep = disagreement_deg(pairs, phi) < params.keep_deg
        phi = synchronise_angles(n, pairs, keep)
    keep = disagreement_deg(pairs, phi) < params.keep_deg
    agreement = float((pairs.score * keep).sum() / pairs.score.sum())
    log.info("fusion: the angles agree with %.0f %% of the pairs (weighted)", 100 * agreement)
    shifts = synchronise_shifts(n, pairs, phi, keep)
    moved = []
    for r in range(params.bootstrap_rounds):
        phi, shifts, m = bootstrap_round(centred, phi, shifts, params, grid, rotated)
        moved.append(m)
        log.info("fusion: bootstrap round %d re-registered %d of %d particles", r + 1, m, n)
    return Fusion(
        phi, shifts, centroids, agreement, int(keep.sum()), len(keep), moved, chosen="pairs"
    )


# ------------------------------------------------------------- a fusion as holly's poses
@dataclass(frozen=True)
class ImageFrames:
    """How each image of a store shows its particle (one row per image).

    ``holly localise`` draws particle ``x`` (its localisations, y down as read) at
    ``R(copy_angle) @ (units_per_length * Y (x - frame_centre))`` in model units, with
    ``Y = diag(1, -1)`` (the model's y points up) and ``R`` counter-clockwise in the model's axes.
    """

    frame_centres: np.ndarray  # [I, 2] the particle's centre the image is drawn around
    copy_angles: np.ndarray  # [I] radians
    units_per_length: float  # model units per unit of the localisations (e.g. per nm)


def image_poses(
    angles: np.ndarray,
    shifts: np.ndarray,
    centroids: np.ndarray,
    frames: ImageFrames,
    origin: np.ndarray,
    mirrored: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The in-plane pose of each image against the fused particle, in holly's model frame.

    The fused particle in model units is ``Q = k Y (F - origin)`` (``k`` the scale, ``F`` the
    fused localisations); a particle's localisation ``x`` lies at
    ``F = R(a) (x - centroid) + shift`` (the image's particle's transform, ``angles``/``shifts``/
    ``centroids`` given per image). Solving for ``x`` and drawing it as ``holly localise`` did
    (:class:`ImageFrames`), with ``Y R(-a) = R(a) Y``:
    ``R(c) k Y (x - e) = R(c + a) Q + R(c) k Y (centroid - e + R(-a) (origin - shift))``,
    so the image is the cloud ``Q`` turned by ``c + a`` about the viewing axis and shifted in
    the image plane by the second term (model units).

    A particle ``mirrored`` in the fusion (``F = R(a) M (x - centroid) + shift``, ``M = -Y``)
    gives, with ``Y M = -I`` and ``-R(-a) Y = R(pi - a) Y``:
    ``R(c) k Y (x - e) = R(c - a + pi) Y Q + R(c) k Y (centroid - e + M R(-a) (origin -
    shift))``: the cloud shown face down (``Y``, the half turn about x in 3D: ``diag(1, -1,
    -1)``, :func:`image_rotations`), then turned by ``c - a + pi``.

    Returns
    -------
    rotation angles [I] (radians, about the viewing axis; after the face-down half turn where
    ``mirrored``), shifts [I, 2] (model units)
    """
    k = frames.units_per_length
    flip = np.array([1.0, -1.0])
    down = faces_of(mirrored, len(angles))
    c, a = frames.copy_angles, np.asarray(angles, dtype=np.float64)
    back = _turn(np.asarray(origin, dtype=np.float64) - shifts, -a)  # R(-a) (origin - shift)
    back = np.where(down[:, None], back * MIRROR, back)
    offset = k * (centroids - frames.frame_centres + back) * flip
    return np.where(down, c - a + np.pi, c + a), _turn(offset, c)


def image_rotations(turns: np.ndarray, mirrored: np.ndarray | None = None) -> torch.Tensor:
    """Model-frame rotations ``[I, 3, 3]`` (float64) of :func:`image_poses`' ``turns``:
    ``R_z(turn)``, after the in-plane prior's half turn about x
    (:func:`holly.method.viewprior.face_turn`) where ``mirrored``."""
    face = torch.as_tensor(np.where(faces_of(mirrored, len(turns)), -1.0, 1.0))
    return rotation_about_z(torch.as_tensor(turns, dtype=torch.float64)) @ face_turn(face)


def fused_model_points(
    fused: np.ndarray, units_per_length: float, origin: np.ndarray
) -> np.ndarray:
    """Fused localisations ``[N, 2]`` (y down) as holly's model-frame points ``Q`` (y up)."""
    return units_per_length * (np.asarray(fused, dtype=np.float64) - origin) * np.array([1.0, -1.0])


def cloud_start(
    points: np.ndarray, n: int, seed: int, sample: int = 20_000, dense: float = 0.5
) -> np.ndarray:
    """A flat cloud ``[n, 3]`` (z = 0) at the k-means centres of the densest ``dense`` share
    of fused model-frame points ``[N, 2]`` (a seeded subsample of ``sample`` of them).

    Density is the inverse distance to the 10th nearest neighbour. Background localisations
    and stray particles' outliers lie in sparse regions; given to k-means they would take
    points of their own far from the structure, which the refinement then has to pull in (at
    300 steps on the TUD dol30 logos it had not: the cloud's second extent was 57 nm
    against the data's 38)."""
    rng = np.random.default_rng(seed)
    x = points if len(points) <= sample else points[rng.choice(len(points), sample, replace=False)]
    k = min(10, len(x) - 1)
    reach = cKDTree(x).query(x, k + 1)[0][:, -1]
    x = x[reach <= np.quantile(reach, dense)] if len(x) * dense >= n else x
    centres, _ = kmeans(x, n, seed, restarts=1, iterations=50)
    return np.concatenate([centres, np.zeros((n, 1))], axis=1)


def _turn(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rows of ``v [I, 2]`` each turned counter-clockwise by its ``angle [I]``."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([cos * v[:, 0] - sin * v[:, 1], sin * v[:, 0] + cos * v[:, 1]], axis=1)
