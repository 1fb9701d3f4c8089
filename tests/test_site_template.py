"""The site template and the declared symmetry of the annealed fusion
(holly/method/sitetemplate.py, ``symmetry`` / ``sites`` in holly/method/annealedfusion.py).

Pieces against exact cases (a symmetrised image is invariant under its turns; the sites' EM
finds an orbit it is shown; without a symmetry a placement's posterior mass is its own), then
sparse pores: 8 corners at 30 % labelling, two or three per particle, where the free density
piles the particles up and a template of 8 sites in one 8-fold orbit fuses them into a ring.
"""

import math

import numpy as np
import pytest
import torch

from holly.method.annealedfusion import _equivalent_mass, symmetrised
from holly.method.fusion import FusionParams, fuse
from holly.method.geometry import cyclic_turns
from holly.method.sitetemplate import SiteTemplate
from holly.results.structure import ring

RADIUS = 50.0  # nm: a nuclear pore's corners


def pore_particles(count, rng, labelling=0.3, precision=4.0, per_site=4):
    """Particles of an 8-corner ring, each corner labelled with probability ``labelling``
    (particles with none dropped), ``per_site`` localisations of ``precision`` per labelled
    corner, each particle turned by a random angle and moved; returns them, their angles
    and how many corners each shows."""
    corners = RADIUS * np.stack(
        [np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1
    )
    parts, angles, shown = [], [], []
    while len(parts) < count:
        labelled = corners[rng.random(8) < labelling]
        if not len(labelled):
            continue
        a = rng.uniform(0, 2 * np.pi)
        turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        locs = np.repeat(labelled, per_site, axis=0) + rng.normal(
            scale=precision, size=(len(labelled) * per_site, 2)
        )
        parts.append(locs @ turn.T + rng.uniform(-200, 200, size=2))
        angles.append(a)
        shown.append(len(labelled))
    return parts, np.array(angles), np.array(shown)


def rotation_error_mod_deg(found, true, order):
    """Each particle's found angle plus its true one, modulo the ``order``-fold symmetry,
    from their circular mean: degrees."""
    z = np.exp(1j * order * (found + true))
    return np.degrees(np.abs(np.angle(z * np.exp(-1j * np.angle(z.mean()))))) / order


def test_a_symmetrised_image_is_unchanged_by_its_quarter_turns():
    image = torch.rand(2, 24, 24, dtype=torch.float64)
    four = symmetrised(image, 4)
    assert not torch.allclose(four, image)
    assert torch.allclose(torch.rot90(four, 1, (1, 2)), four, atol=1e-12)
    assert torch.allclose(four.sum((1, 2)), image.sum((1, 2)))
    assert symmetrised(image, 1) is image


def test_the_sites_find_an_orbit_they_are_shown():
    centres = (np.arange(64) - 32 + 0.5) * 2.0
    x, y = np.meshgrid(centres, centres)
    truth = np.array([[RADIUS * math.cos(0.3), RADIUS * math.sin(0.3)]]) @ cyclic_turns(8)[
        :, :2, :2
    ].numpy().transpose(0, 2, 1)
    image = sum(np.exp(-0.5 * ((x - sx) ** 2 + (y - sy) ** 2) / 4.0**2) for sx, sy in truth[:, 0])
    template = SiteTemplate(8, 8, centres, np.random.default_rng(0))
    for _ in range(5):
        template.fit(image, 4.0)
    found = template.sites
    assert found.shape == (8, 2)
    assert np.hypot(*found.T) == pytest.approx(np.full(8, RADIUS), abs=0.5)
    nearest = np.sqrt(((found[:, None] - truth[None, :, 0]) ** 2).sum(-1)).min(1)
    assert nearest.max() < 0.5


def test_sites_must_form_orbits():
    with pytest.raises(ValueError, match="multiple"):
        SiteTemplate(6, 4, np.zeros(4), np.random.default_rng(0))
    with pytest.raises(ValueError, match="dividing the 72"):
        fuse([np.zeros((3, 2))] * 3, FusionParams(sigma=1.0, symmetry=7), seed=0)
    with pytest.raises(ValueError, match="not of pairs"):
        fuse([np.zeros((3, 2))] * 3, FusionParams(sigma=1.0, sites=4, method="pairs"), seed=0)


def test_under_sites_both_is_the_annealing_and_says_so():
    assert FusionParams(sigma=1.0, symmetry=8, sites=8).method == "anneal"  # "both" asked
    assert FusionParams(sigma=1.0).method == "both"  # no sites: both still compared
    assert FusionParams(sigma=1.0, sites=8, method="anneal").sites == 8
    assert FusionParams(sigma=1.0, sites=8, method="pairs").method == "pairs"  # refused by fuse


def test_without_a_symmetry_a_placement_holds_its_own_mass():
    p = torch.softmax(torch.randn(6 * 8 * 8), 0)
    j = int(p.argmax())
    assert _equivalent_mass(p, j, 6, 8, 1) == pytest.approx(float(p[j]))
    assert _equivalent_mass(p, j, 6, 8, 2) > float(p[j])


@pytest.fixture(scope="module")
def sparse_pores():
    return pore_particles(160, np.random.default_rng(7), precision=8.0)


def _fused_ring(parts, result):
    fused = np.concatenate(result.apply(parts))
    return ring(np.column_stack([fused, np.zeros(len(fused))]))


def test_a_site_template_fuses_sparse_pores_into_a_ring(sparse_pores):
    """Two or three corners per particle: 8 sites in one 8-fold orbit give a ring of the true
    radius with order 8 its strongest, and the particles that show three corners or more
    turned right modulo 45 degrees."""
    parts, angles, shown = sparse_pores
    params = FusionParams(
        sigma=8.0, method="anneal", anneal_rounds=10, anneal_starts=1, symmetry=8, sites=8
    )
    result = fuse(parts, params, seed=0)
    assert result.chosen == "anneal" and result.sites.shape == (8, 2)
    assert np.hypot(*result.sites.T) == pytest.approx(np.full(8, RADIUS), rel=0.1)
    shape = _fused_ring(parts, result)
    assert shape["dominant_order"] == 8 and shape["radius"] == pytest.approx(RADIUS, rel=0.1)
    error = rotation_error_mod_deg(result.angles, angles, 8)[shown >= 3]
    assert np.median(error) < 6.0


def test_the_free_density_piles_sparse_pores_up(sparse_pores):
    """The same particles with the free density (the default): no ring of order 8. What the
    site template is for (docs/maintainer-notes.md, "A site template")."""
    parts, _, _ = sparse_pores
    params = FusionParams(sigma=8.0, method="anneal", anneal_rounds=10, anneal_starts=1)
    shape = _fused_ring(parts, fuse(parts, params, seed=0))
    assert shape["dominant_order"] != 8
