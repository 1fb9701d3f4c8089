"""The annealed fusion (holly/method/annealedfusion.py) and the choice between it and pairs.

Its pieces against analytic cases (the schedule's ends, a blinking site counted once, the
likelihood scoring a right placement above a wrong one), then whole fusions: fully labelled
logos turned back into one frame from random starts, and ``method: both`` keeping the method
whose particles fit each other better. The real TU Delft 30 % logos, where annealing is what
fuses them, are the slow tier's.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from test_fusion import common_rotation_spread_deg, logo_particles, placement_spread_deg

import holly
from holly.data.shapes import logo_sites_nm
from holly.method.annealedfusion import (
    MIRROR,
    Schedule,
    fit,
    localisations_per_cluster,
    unit_mass_spectra,
    with_mirror_images,
)
from holly.method.fusion import FusionParams, Grid, fuse, rotation


def test_the_schedule_runs_from_its_start_to_its_end():
    schedule = Schedule(rounds=10, beta=5.0, beta_start=0.2, start_blur=4.0)
    steps = [schedule.at(r) for r in range(10)]
    assert steps[0] == pytest.approx((0.2, 4.0))
    assert steps[-1] == pytest.approx((5.0, 1.0))
    betas, blurs = np.array(steps).T
    assert (np.diff(betas) >= 0).all() and (np.diff(blurs) <= 0).all()
    assert blurs[7] == pytest.approx(1.0)  # sharp from two thirds of the rounds on


def test_a_blinking_fluorophore_counts_as_one_cluster():
    rng = np.random.default_rng(0)
    sites = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0], [30.0, 30.0]])
    particle = np.repeat(sites, 5, axis=0) + rng.normal(scale=0.1, size=(20, 2))
    assert localisations_per_cluster([particle, particle[:10]], sigma=2.0) == pytest.approx(5.0)


def test_the_mirror_images_made_from_the_turns_are_the_drawn_ones():
    """:func:`with_mirror_images` flips the drawn turns in Fourier space; it must equal the
    mirrored particle drawn at every turn (to float32 rounding), on an even and an odd grid."""
    rng = np.random.default_rng(2)
    points = rng.normal(0, 5, (40, 2))
    points -= points.mean(0)
    angles = 2 * np.pi * np.arange(72) / 72
    for grid in (Grid(n=52, pixel=0.7), Grid(n=45, pixel=0.9)):
        centres = torch.from_numpy(grid.centres())
        own = unit_mass_spectra(points, centres, grid.pixel, 1.0, angles)
        drawn = unit_mass_spectra(points * MIRROR, centres, grid.pixel, 1.0, angles)
        made = with_mirror_images(own)
        assert made.shape == (144, *own.shape[1:])
        torch.testing.assert_close(made[:72], own)
        torch.testing.assert_close(made[72:], drawn, atol=1e-4, rtol=0)


def test_the_fit_scores_the_right_placement_above_a_wrong_one():
    rng = np.random.default_rng(1)
    parts, angles = logo_particles(10, rng)
    centred = [p - p.mean(0) for p in parts]
    grid = Grid.for_particles(centred, 3.0)
    right = fit(centred, -angles, np.zeros((10, 2)), grid, 3.0)
    turned = -angles + np.where(np.arange(10) % 2, np.pi / 2, 0.0)  # half turned by 90 degrees
    assert right > fit(centred, turned, np.zeros((10, 2)), grid, 3.0) + 0.1


def test_annealing_turns_fully_labelled_logos_into_one_frame():
    rng = np.random.default_rng(3)
    parts, angles = logo_particles(16, rng)
    result = fuse(
        parts, FusionParams(sigma=3.0, method="anneal", anneal_rounds=10, anneal_starts=1), seed=0
    )
    assert result.chosen == "anneal" and result.pair_agreement is None
    assert common_rotation_spread_deg(result.angles, angles).max() < 6.0
    assert 0.0 < result.posterior_peak <= 1.0 and len(result.moved) == 10


def mirrored_logos(n, rng):
    """``n`` fully labelled logos, about half of them lying face down (mirrored), each turned
    and moved: (localisations, angles, face-down flags)."""
    sites = logo_sites_nm()[:, :2]
    angles, down = rng.uniform(0, 2 * np.pi, n), np.arange(n) % 2 == 1
    parts = [
        (sites * (MIRROR if d else 1.0) + rng.normal(scale=1.0, size=sites.shape))
        @ rotation(a).T + rng.normal(scale=5.0, size=2)
        for a, d in zip(angles, down, strict=True)
    ]  # fmt: skip
    return parts, angles, down


def test_annealing_turns_logos_lying_face_down_over():
    """Logos on either face (the mirror image of the chiral logo is not any turn of it): with
    ``mirror`` every particle is placed in one frame, the face-down ones mirrored (or, the
    same fusion, the others); its particles fit each other better than turns alone allow."""
    rng = np.random.default_rng(7)
    parts, angles, down = mirrored_logos(16, rng)
    common = {"sigma": 3.0, "method": "anneal", "anneal_rounds": 10, "anneal_starts": 1}
    both_faces = fuse(parts, FusionParams(**common, mirror=True), seed=0)
    assert both_faces.mirrored.sum() == 8  # either half turned over (8 of 16: a tie, kept)
    assert placement_spread_deg(both_faces.angles, both_faces.mirrored, angles, down) < 6.0
    turns_only = fuse(parts, FusionParams(**common), seed=0)
    assert turns_only.mirrored is None
    assert placement_spread_deg(turns_only.angles, np.zeros(16, bool), angles, down) == 180.0
    # the log likelihood per localisation: 0.036 higher here; a turned-over half puts a share
    # of each particle's localisations where the template has the other face's density
    assert both_faces.fits["anneal"] > turns_only.fits["anneal"] + 0.02


def test_both_keeps_the_method_that_fits_better():
    rng = np.random.default_rng(5)
    parts, angles = logo_particles(12, rng, labelling=0.6)
    params = FusionParams(
        sigma=3.0, partners=6, bootstrap_rounds=1, anneal_rounds=8, anneal_starts=2
    )
    result = fuse(parts, params, seed=0)
    assert set(result.fits) == {"anneal", "pairs"}
    assert result.fits[result.chosen] == max(result.fits.values())
    assert common_rotation_spread_deg(result.angles, angles).max() < 10.0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~7 min of annealing and pairs here; the default 900 s is tight
def test_the_real_30_percent_logos_fuse_better_by_annealing():
    """TU Delft DNA-PAINT logos at ~30 % labelling (549 particles): the annealed fusion fits
    the particles to each other better than the pairwise one, so ``both`` keeps it (the
    README's fusion table: a closed D and a U, where pairs give a D, a U and part of the T)."""
    source = Path(holly.__file__).parents[1].parent / "shared/realdata/particles"
    source = source / "tud_logo_dnapaint" / "tud_dol30.mat"
    if not source.exists():
        pytest.skip(f"{source} absent (the shared real data are not in the repository)")
    from holly.data.locformats import read_localisations

    particles, _ = read_localisations(str(source), "tud-mat", pixel_size=130)
    points = [xy[:, :2] * particles.nm_per_unit for xy in particles.xy]
    # one annealing start (the default is three) against the pairs at their defaults
    result = fuse(points, FusionParams(sigma=2.57, anneal_starts=1), seed=0)
    assert result.chosen == "anneal"
    assert result.fits["anneal"] > result.fits["pairs"]
    # either face: about one particle in ten lies face down (51 of 549 kept of three starts,
    # 49 to 53 in six starts), and the particles fit each other better than by turns alone
    # (the README's "Particles face down": the T appears)
    faces = fuse(points, FusionParams(sigma=2.57, method="anneal", anneal_starts=1, mirror=True), 0)
    down = min(int(faces.mirrored.sum()), int((~faces.mirrored).sum()))  # either face first
    assert 30 <= down <= 80, down
    assert faces.fits["anneal"] > result.fits["anneal"] + 0.003
