"""Template-free in-plane alignment by annealed expectation-maximisation.

The pairwise fusion (:mod:`holly.method.fusion`) registers particles two at a time, so it
sees only the sites both show; at 30 % labelling that is a few, and many pairs are wrong.
Here every particle is aligned to a template made of all the others, and the template is
made of all particles at once, each spread over its rotations and shifts by how well they
fit (expectation-maximisation, as maximum-likelihood class averaging does for cryo-EM):

- **Likelihood.** A particle's localisations are independent draws from the template's
  density ``rho`` (a Poisson process given its count, with a ``background`` share spread
  uniformly): ``log L(rotation, shift) = sum_m log rho(R x_m + shift)``. That sum is the
  correlation of the particle's density with ``log rho``, so one FFT scores every shift of a
  rotation, as in the pairwise registration.
- **Blinking.** A fluorophore gives a burst of localisations, not independent ones; the log
  likelihood is scaled by ``beta / (localisations per cluster)`` (clusters counted within two
  kernel widths), so ``beta`` is per fluorophore and the same on sparse and dense data.
- **Annealing.** The particles start at random rotations, where the template is featureless.
  Round by round ``beta`` rises (``beta_start`` to ``beta``) and the template's extra blur
  falls (``start_blur`` kernel widths to none): coarse features fix the particles' rough
  rotations before fine ones can trap them (deterministic annealing). A start from the
  pairwise fusion instead stayed in its basin (the TU Delft dol30 T; notes, "Annealed fusion").
- **Leave one out.** A particle is scored against the template without its own previous
  contribution, which would otherwise favour wherever it already sits.
- **Either face** (``mirror``). An origami on glass lands on either face; seen from the top, one
  lying face down is the mirror image of one face up. With ``mirror`` every particle is also
  tried mirrored (``x -> -x`` about its centroid, then turned): the candidates are the turns of
  the particle and the turns of its mirror image. On the real TU Delft 30 % logos about 9 % of
  the particles chose the other face in each of three starts, and the T appeared, where
  without it the T was a bar and a stroke (docs/maintainer-notes.md, "Particles face down").

On the real TU Delft DNA-PAINT logos at ~30 % labelling its particles fit each other better
than the pairwise fusion's (every run so far): by turns alone a closed D and a U, the T still
imperfect (a bar and a stroke), where the pairwise fusion showed a D, a U and part of the T;
with either face T, U and D. It does
not fuse holly's simulated 30 % logo and pore (a few sites per particle; the template
collapses onto a square or a few spots): docs/maintainer-notes.md, "Annealed fusion". Where
the user declares the pore's symmetry and site count (``symmetry``, ``sites``:
:mod:`holly.method.sitetemplate`) the 30 % pore fuses into its ring.

Arrays only; the grid (pixel size, field) is :class:`holly.method.fusion.Grid`'s.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from holly.method.sitetemplate import SiteTemplate, data_kernel, site_width

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """How the annealing runs (``beta`` per fluorophore cluster, blur in kernel widths)."""

    rounds: int = 12
    beta: float = 5.0
    beta_start: float = 0.2
    start_blur: float = 4.0
    background: float = 0.05  # share of the template's density spread uniformly

    def at(self, r: int) -> tuple[float, float]:
        """Round ``r``'s (beta, template blur multiple): beta reaches its end at 80 % of the
        rounds, the blur reaches one kernel width at two thirds of them."""
        frac = r / max(self.rounds - 1, 1)
        beta = self.beta_start * (self.beta / self.beta_start) ** min(1.0, 1.25 * frac)
        blur = self.start_blur ** (1.0 - min(1.0, 1.5 * frac))
        return beta, blur


@dataclass
class Annealed:
    angles: np.ndarray  # [P] radians, the most probable rotation of each particle
    shifts: np.ndarray  # [P, 2] its most probable shift
    peak: np.ndarray  # [P] the posterior's largest probability at the end (0-1)
    moved: list[int]  # particles whose most probable rotation changed, per round
    # the last round's mean over particles of the best score per localisation
    objective: float = -math.inf
    sites: np.ndarray | None = None  # a site template's sites at the end, [K, 2]
    # [P] bool: the particle fits best mirrored (face down), with ``mirror``; else all False
    mirrored: np.ndarray | None = None


MIRROR = np.array([-1.0, 1.0])  # a particle's mirror image about its centroid: x -> -x


def faces_of(mirrored: np.ndarray | None, count: int) -> np.ndarray:
    """``[P]`` bool, all False where no particle was mirrored (``None``)."""
    return np.zeros(count, bool) if mirrored is None else np.asarray(mirrored, bool)


def _equivalent_mass(p: torch.Tensor, j: int, k_count: int, n: int, order: int) -> float:
    """The posterior ``p`` (flat over rotations x shifts) at placement ``j`` and, under a
    declared ``order``-fold symmetry, at its equivalents: turned by ``2 pi m / order`` about
    the origin, that is rotation ``k + m K / order`` and the shift turned likewise (rounded to
    a pixel, so a little of their mass may be missed)."""
    k, rest = divmod(j, n * n)
    face, k = divmod(k, k_count)  # the mirrored candidates follow the turns (``mirror``)
    dy, dx = divmod(rest, n)
    sx, sy = (d - n if d >= n // 2 else d for d in (dx, dy))
    mass = 0.0
    for m in range(order):
        c, s = math.cos(2 * math.pi * m / order), math.sin(2 * math.pi * m / order)
        x, y = round(c * sx - s * sy) % n, round(s * sx + c * sy) % n
        turn = face * k_count + (k + m * k_count // order) % k_count
        mass += float(p[turn * n * n + y * n + x])
    return mass


def localisations_per_cluster(centred: list[np.ndarray], sigma: float) -> float:
    """Mean localisations per cluster: each localisation counts ``1 / (its neighbours within
    2 sigma)``, so a blinking fluorophore counts about once."""
    locs = clusters = 0.0
    for p in centred:
        counts = cKDTree(p).query_ball_point(p, 2 * sigma, return_length=True)
        locs, clusters = locs + len(p), clusters + float((1.0 / counts).sum())
    return locs / clusters


def unit_mass_spectra(
    points: np.ndarray, centres: torch.Tensor, pixel: float, sigma: float, angles: np.ndarray
) -> torch.Tensor:
    """FFTs ``[K, n, n/2+1]`` of ``points`` turned by each angle, drawn as Gaussians of unit
    mass each (so a sum over the image is a sum over localisations)."""
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    x, y = points[None, :, :1], points[None, :, 1:]
    turned = torch.from_numpy(np.concatenate([c * x - s * y, s * x + c * y], axis=2))
    gx = torch.exp(-0.5 * ((turned[..., :1] - centres) / sigma) ** 2)
    gy = torch.exp(-0.5 * ((turned[..., 1:] - centres) / sigma) ** 2)
    images = torch.bmm(gy.transpose(1, 2), gx) * (pixel**2 / (2 * math.pi * sigma**2))
    return torch.fft.rfft2(images.float())


def with_mirror_images(spectra: torch.Tensor) -> torch.Tensor:
    """``[2K, n, n/2+1]``: a particle's :func:`unit_mass_spectra` at ``K`` equally spaced
    turns ``2 pi k / K``, then those of its mirror image (``x -> -x`` about its centroid) at
    the same turns, made from the first without drawing again.

    ``R(a) M = M R(-a)``, so the mirror image turned by ``a_k`` is the image of the particle
    turned by ``a_(-k)``, flipped left to right. The grid's centres are symmetric about 0, so
    the flip takes column ``x`` to ``n - 1 - x``; for a real image that is
    ``G(ky, kx) = exp(2 pi i kx / n) conj(F(-ky, kx))`` in the half spectrum."""
    k_count, n = spectra.shape[0], spectra.shape[-2]
    turned_back = spectra[(-torch.arange(k_count)) % k_count]
    minus_ky = torch.roll(torch.flip(turned_back, [-2]), 1, dims=-2)
    kx = torch.arange(spectra.shape[-1], dtype=torch.float64)
    phase = torch.polar(torch.ones_like(kx), 2 * math.pi * kx / n).to(spectra.dtype)
    return torch.cat([spectra, minus_ky.conj() * phase])


def symmetrised(images: torch.Tensor, order: int) -> torch.Tensor:
    """The mean of ``images`` (``[B, n, n]``, the origin at their centre) over their turns by
    ``2 pi k / order``, ``k = 0..order-1``: a template with a declared ``order``-fold symmetry
    about the origin (bilinear resampling; 1 returns ``images`` as they are)."""
    if order <= 1:
        return images
    b, n, _ = images.shape
    total = images.clone()
    for k in range(1, order):
        c, s = math.cos(2 * math.pi * k / order), math.sin(2 * math.pi * k / order)
        theta = images.new_tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(b, 2, 3)
        # align_corners=False: normalised 0 is the image's centre, the grid's origin
        where = F.affine_grid(theta, [b, 1, n, n], align_corners=False)
        total += F.grid_sample(images[:, None], where, align_corners=False)[:, 0]
    return total / order


def _symmetrised_spectra(own: torch.Tensor, shape: tuple[int, int], order: int) -> torch.Tensor:
    """:func:`symmetrised` of the images whose FFTs are ``own``, as FFTs."""
    if order <= 1:
        return own
    return torch.fft.rfft2(symmetrised(torch.fft.irfft2(own, s=shape), order))


class _Field:
    """The periodic image grid's frequencies, shifts and the shifts allowed."""

    def __init__(self, n: int, pixel: float):
        self.n, self.pixel, self.shape = n, pixel, (n, n)
        fx, fy = torch.fft.rfftfreq(n, d=pixel), torch.fft.fftfreq(n, d=pixel)
        self.k2 = (fy[:, None] ** 2 + fx[None] ** 2).float()
        d = torch.arange(n)
        self.offsets = torch.where(d >= n // 2, d - n, d).double() * pixel
        # shifts up to a quarter of the field, as the pairwise registration allows
        reach = self.offsets[:, None] ** 2 + self.offsets[None] ** 2
        self.allowed = reach <= (n * pixel / 4) ** 2

    def blur(self, width: float) -> torch.Tensor:
        """Transfer function of a Gaussian blur of ``width``."""
        return torch.exp(-2 * math.pi**2 * width**2 * self.k2)


def _log_density(image: torch.Tensor, background: float) -> torch.Tensor:
    """``log rho``: the template image normalised to ``1 - background``, plus the background
    spread uniformly (so no localisation has zero likelihood)."""
    rho = image.clamp_min(0)
    rho = (1 - background) * rho / rho.sum().clamp_min(1e-30) + background / rho.numel()
    return torch.log(rho)


def _log_template(spectrum: torch.Tensor, field: _Field, background: float) -> torch.Tensor:
    """FFT of :func:`_log_density` of the template given by its FFT."""
    image = torch.fft.irfft2(spectrum, s=field.shape)
    return torch.fft.rfft2(_log_density(image, background))


def fit(
    centred: list[np.ndarray],
    angles: np.ndarray,
    shifts: np.ndarray,
    grid,
    sigma: float,
    background: float = Schedule.background,
    symmetry: int = 1,
    mirrored: np.ndarray | None = None,
) -> float:
    """How well particles placed by ``angles``/``shifts`` fit each other: the mean over
    particles of the log likelihood per localisation of each one under the template of all the
    others (leave one out), the likelihood :func:`anneal` maximises. It compares two fusions of
    the same particles (``fusion.method: both`` keeps the better); higher is better. With a
    declared ``symmetry`` the template is :func:`symmetrised`, as :func:`anneal` makes it.
    ``mirrored[i]``: particle ``i`` is mirrored before it is turned."""
    centres = grid.centres()
    own = []
    faces = faces_of(mirrored, len(centred))
    for p, a, s, face in zip(centred, angles, shifts, faces, strict=True):
        c, sn = math.cos(a), math.sin(a)
        p = p * MIRROR if face else p
        placed = p @ np.array([[c, sn], [-sn, c]]) + s  # rows turned by R(a), then moved
        gx = np.exp(-0.5 * ((placed[:, :1] - centres[None]) / sigma) ** 2)
        gy = np.exp(-0.5 * ((placed[:, 1:] - centres[None]) / sigma) ** 2)
        own.append(gy.T @ gx * (grid.pixel**2 / (2 * math.pi * sigma**2)))
    own_t = torch.from_numpy(np.stack(own))
    template = symmetrised(own_t, symmetry)  # each particle's share of the template
    total = template.sum(0)
    scores = []
    for i, p in enumerate(centred):
        log_rho = _log_density(total - template[i], background)
        scores.append(float((own_t[i] * log_rho).sum()) / len(p))
    return float(np.mean(scores))


def anneal(
    centred: list[np.ndarray],
    grid,
    sigma: float,
    angles: np.ndarray,
    schedule: Schedule,
    seed: int,
    drawn=None,
    symmetry: int = 1,
    sites: int = 0,
    mirror: bool = False,
) -> Annealed:
    """Align ``centred`` particles (``[n_i, 2]`` each, about their centroids) by annealed EM on
    ``grid`` (a :class:`holly.method.fusion.Grid`) over rotations ``angles``. ``drawn[i]``:
    particle ``i``'s :func:`unit_mass_spectra`, where the caller keeps them across rounds and
    starts; else drawn every round. ``symmetry``: the particles' declared rotational symmetry
    about their centre (C_n); the template is :func:`symmetrised` every round, and ``angles``
    must then hold the turns by ``2 pi / symmetry``. ``sites``: a template of that many discrete
    sites in orbits of ``symmetry`` (:mod:`holly.method.sitetemplate`) instead of the free
    density; the particles are then drawn with :func:`data_kernel` (``drawn`` too).
    ``mirror``: each particle's mirror image is a candidate too, at the same turns
    (:func:`with_mirror_images`; ``drawn`` holds the turns only, and ``angles`` must then be
    equally spaced from 0)."""
    field = _Field(grid.n, grid.pixel)
    kernel = data_kernel(sigma) if sites else sigma
    n, k_count = grid.n, len(angles)
    candidates = k_count * (2 if mirror else 1)
    spectra = _candidates(centred, grid, kernel, angles, drawn, mirror)
    per_cluster = localisations_per_cluster(centred, sigma)
    log.info("annealed fusion: %.1f localisations per fluorophore cluster", per_cluster)
    rng = np.random.default_rng(seed)
    site_template = SiteTemplate(sites, symmetry, grid.centres(), rng) if sites else None
    best = rng.integers(candidates, size=len(centred))
    own = torch.stack([spectra(i)[best[i]] for i in range(len(centred))])
    shifts, peak, moved = np.zeros((len(centred), 2)), np.zeros(len(centred)), []
    for r in range(schedule.rounds):
        started = time.monotonic()
        beta, blur = schedule.at(r)
        log_template = _round_template(
            own, site_template, grid, field, sigma, blur, schedule, symmetry
        )
        new_own, before, objective = torch.empty_like(own), best.copy(), []
        for i in range(len(centred)):
            s, log_rho = spectra(i), log_template(i)
            score = torch.fft.irfft2(s.conj() * log_rho[None], s=(n, n))
            score = torch.where(field.allowed[None], score, -math.inf)
            p = torch.softmax((beta / per_cluster) * score.flatten(), 0)
            new_own[i] = (s * torch.fft.rfft2(p.view(candidates, n, n))).sum(0)
            j = int(p.argmax())
            objective.append(float(score.flatten()[j]) / len(centred[i]))
            best[i], peak[i] = j // (n * n), _equivalent_mass(p, j, k_count, n, symmetry)
            dy, dx = divmod(j % (n * n), n)
            shifts[i] = [float(field.offsets[dx]), float(field.offsets[dy])]
        own = new_own
        moved.append(int((best != before).sum()))
        log.info(
            "annealed fusion: round %d of %d (beta %.2g, blur x%.2f): %d particles turned, "
            "median posterior peak %.2f, %.0f s",
            *(r + 1, schedule.rounds, beta, blur, moved[-1], float(np.median(peak))),
            time.monotonic() - started,
        )
    found = None if site_template is None else site_template.sites
    mirrored = best >= k_count if mirror else None
    return Annealed(
        angles[best % k_count], shifts, peak, moved, float(np.mean(objective)), found, mirrored
    )


def _candidates(centred, grid, kernel: float, angles: np.ndarray, drawn, mirror: bool):
    """``i -> [C, n, n/2+1]``: particle ``i``'s candidates, its :func:`unit_mass_spectra` at
    every turn (``drawn[i]`` where the caller keeps them) and, with ``mirror``, its mirror
    image's (:func:`with_mirror_images`, which needs the turns ``2 pi k / K``)."""
    k_count = len(angles)
    if mirror and not np.allclose(angles, 2 * np.pi * np.arange(k_count) / k_count):
        raise ValueError("mirror images need the turns 2 pi k / K, k = 0..K-1")
    centres = torch.from_numpy(grid.centres())

    def spectra(i: int) -> torch.Tensor:
        if drawn is not None:
            own = drawn[i]
        else:
            own = unit_mass_spectra(centred[i], centres, grid.pixel, kernel, angles)
        return with_mirror_images(own) if mirror else own

    return spectra


def _round_template(own, site_template, grid, field: _Field, sigma, blur, schedule, symmetry):
    """A round's ``i -> FFT of log rho`` for particle ``i``: the free density of all the others
    (leave one out, blurred by the round's extra blur, symmetrised where declared), or the
    sites, the same for every particle."""
    if site_template is not None:
        shared = _site_log_template(site_template, own, grid, field, sigma, blur, schedule)
        return lambda i: shared
    transfer = field.blur(sigma * math.sqrt(max(blur**2 - 1.0, 0.0)))
    template = _symmetrised_spectra(own, field.shape, symmetry)
    total = template.sum(0)
    return lambda i: _log_template((total - template[i]) * transfer, field, schedule.background)


def _site_log_template(
    site_template: SiteTemplate, own: torch.Tensor, grid, field: _Field, sigma, blur, schedule
) -> torch.Tensor:
    """FFT of ``log rho`` of the sites, moved to the particles where they sit now (``own``)."""
    fused = torch.fft.irfft2(own.sum(0), s=field.shape).double().numpy()
    site_template.fit(fused, sigma * blur)
    image = site_template.image(grid.centres(), site_width(sigma, blur)).float()
    return torch.fft.rfft2(_log_density(image, schedule.background))
