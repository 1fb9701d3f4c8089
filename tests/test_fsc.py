"""FSC maths (holly/results/fsc.py): densities, shells, analytic cases and crossings."""

import math

import numpy as np
import pytest

from holly.results import fsc as F

SIGMA = 0.0625  # 1 px at 64 x 64 images, in model units


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_density_has_unit_mass_per_point_and_peaks_at_the_point():
    pts = np.array([[0.1, -0.2, 0.3], [-0.5, 0.4, 0.0]])
    grid = F.make_grid([pts], SIGMA)
    rho = F.density(pts, grid, SIGMA)
    assert rho.sum() * grid.voxel**3 == pytest.approx(2.0, rel=1e-6)
    one = F.density(pts[:1], grid, SIGMA)
    peak = np.unravel_index(np.argmax(one), one.shape)
    centre = [grid.axis(d)[peak[d]] for d in range(3)]
    assert np.abs(np.array(centre) - pts[0]).max() <= grid.voxel / 2 + 1e-12


def test_grid_holds_both_clouds_with_padding_and_samples_sigma():
    a, b = _rng().uniform(-1, 1, (50, 3)), _rng(1).uniform(-0.5, 1.5, (60, 3))
    grid = F.make_grid([a, b], SIGMA)
    assert grid.size % 2 == 0 and grid.voxel == pytest.approx(SIGMA / 2)
    lo, hi = grid.axis(0)[0], grid.axis(0)[-1]
    assert lo < min(a[:, 0].min(), b[:, 0].min()) - 3.5 * SIGMA
    assert hi > max(a[:, 0].max(), b[:, 0].max()) + 3.5 * SIGMA
    capped = F.make_grid([a * 10], SIGMA, max_size=64)
    assert capped.size == 64 and capped.voxel > SIGMA / 2


def test_shells_are_parseval_complete():
    """The weighted half-spectrum powers over all shells sum to n^3 * sum(v^2)."""
    n = 16
    v = _rng().standard_normal((n, n, n))
    spec = np.abs(np.fft.rfftn(v)) ** 2
    w = np.broadcast_to(F._rfft_weights(n), spec.shape)
    assert (w * spec).sum() == pytest.approx(n**3 * (v**2).sum(), rel=1e-10)
    assert F.shell_index(n).max() > n // 2  # corners exist, and fsc() drops them


def test_identical_clouds_correlate_perfectly_up_to_the_cutoff():
    a = _rng().uniform(-1, 1, (150, 3))
    result = F.cloud_fsc(a, a.copy(), SIGMA)
    usable = result.curve.frequency <= result.max_frequency
    assert result.curve.fsc[usable].min() > 0.9999
    assert result.max_frequency == pytest.approx(F.gaussian_cutoff(SIGMA))
    for cr in result.crossings.values():
        assert cr.limited and cr.resolution == pytest.approx(1 / result.curve.frequency[usable][-1])


def test_independent_random_clouds_correlate_about_zero():
    a, b = _rng(1).uniform(-1, 1, (1000, 3)), _rng(2).uniform(-1, 1, (1000, 3))
    result = F.cloud_fsc(a, b, SIGMA)
    c = result.curve
    fine = (c.frequency > 3.0) & (c.frequency <= result.max_frequency)  # beyond the envelope
    assert fine.sum() > 20
    assert np.abs(c.fsc[fine]).mean() < 0.05 and np.abs(c.fsc[fine]).max() < 0.25
    assert not result.crossings[0.143].limited and result.crossings[0.143].resolution > 0.25


def test_crossing_of_a_known_band_limited_pair():
    """Shared signal of power A exp(-k^2 / ks^2) plus independent white noise of power 1:
    FSC(k) = P / (P + 1), so it crosses t at k = ks sqrt(ln(A (1 - t) / t))."""
    n, amp, ks = 64, 1000.0, 8.0
    rng = _rng(0)
    f = np.fft.fftfreq(n) * n
    k = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + (np.fft.rfftfreq(n) * n) ** 2)

    def white():
        return np.fft.rfftn(rng.standard_normal((n, n, n)))

    shared = white() * np.sqrt(amp * np.exp(-(k**2) / ks**2))
    va = np.fft.irfftn(shared + white(), s=(n, n, n), axes=(0, 1, 2))
    vb = np.fft.irfftn(shared + white(), s=(n, n, n), axes=(0, 1, 2))
    voxel = 0.05
    curve = F.fsc(va, vb, voxel)
    for t in (0.143, 0.5):
        expected = ks * math.sqrt(math.log(amp * (1 - t) / t)) / (n * voxel)
        got = F.crossing(curve, t)
        assert not got.limited
        assert got.frequency == pytest.approx(expected, abs=0.5 / (n * voxel))  # half a shell
        assert got.resolution == pytest.approx(1 / got.frequency)


def test_crossing_interpolates_linearly():
    curve = F.FSCCurve(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 0.9, 0.1, 0.0]), np.ones(4))
    cr = F.crossing(curve, 0.5)
    assert cr.frequency == pytest.approx(1.5) and cr.resolution == pytest.approx(1 / 1.5)
    assert F.crossing(curve, 0.05, max_frequency=2.0).limited


def test_resolution_coarsens_with_jitter():
    a = _rng(3).uniform(-1, 1, (300, 3))
    res = [
        F.cloud_fsc(a, a + _rng(4).normal(0, s, a.shape), SIGMA).crossings[0.143].resolution
        for s in (0.02, 0.05, 0.1, 0.2)
    ]
    assert res == sorted(res) and res[-1] > 3 * res[0]


def test_to_dict_reports_nm_when_the_pixel_size_is_known():
    a = _rng().uniform(-1, 1, (40, 3))
    out = F.cloud_fsc(a, a + 0.05, 0.1).to_dict(nm_per_unit=160.0)
    assert out["resolution_0143_nm"] == pytest.approx(160.0 * out["resolution_0143"])
    assert F.cloud_fsc(a, a, 0.1).to_dict()["resolution_05_nm"] is None
    assert len(out["curve"]["frequency"]) == len(out["curve"]["fsc"])


def _flat(seed: int, n: int = 300) -> np.ndarray:
    a = _rng(seed).uniform(-1, 1, (n, 3))
    a[:, 2] = 0.0
    return a


def test_frc_is_one_for_equal_images_and_about_zero_for_independent_ones():
    img = _rng(5).random((32, 32))
    curve = F.frc(img, img.copy(), 0.1)
    assert np.allclose(curve.fsc[curve.n_voxels > 0], 1.0)
    assert curve.frequency[-1] == pytest.approx(0.5 / 0.1)  # rings 0 .. n/2, Nyquist last
    noise = F.frc(_rng(6).normal(size=(64, 64)), _rng(7).normal(size=(64, 64)), 1.0)
    # independent noise: each ring's correlation is ~N(0, 1 / coefficients); within 4 sd
    assert np.all(np.abs(noise.fsc[1:]) < 4 / np.sqrt(noise.n_voxels[1:]))
    # Parseval: the ring weights count every coefficient of the full 2D spectrum once
    assert noise.n_voxels.sum() == pytest.approx(
        (
            np.rint(np.hypot(*np.meshgrid(np.fft.fftfreq(64) * 64, np.fft.fftfreq(64) * 64))) <= 32
        ).sum()
    )
    with pytest.raises(ValueError, match="square"):
        F.frc(np.zeros((4, 5)), np.zeros((4, 5)), 1.0)


def test_flat_clouds_need_the_ring_correlation():
    """Two flat clouds whose in-plane points differ (jitter 0.1) agree perfectly along z: the 3D
    FSC counts that as agreement and stays near the cutoff, while the FRC of the projections
    shows the in-plane disagreement."""
    a = _flat(8)
    b = a + np.c_[_rng(9).normal(0, 0.1, (len(a), 2)), np.zeros(len(a))]
    volume = F.cloud_fsc(a, b, SIGMA)
    rings = F.cloud_fsc(a, b, SIGMA, planar=True)
    assert rings.planar and rings.to_dict()["kind"] == "FRC of the xy projections"
    assert volume.to_dict()["kind"] == "FSC"
    r_vol, r_ring = (x.crossings[0.143].resolution for x in (volume, rings))
    assert r_ring > 2 * r_vol
    # and for 3D clouds with the same jitter in-plane only, the FRC reads about the same jitter
    jittered = F.cloud_fsc(
        a, a + np.c_[_rng(10).normal(0, 0.02, (len(a), 2)), np.zeros(len(a))], SIGMA, planar=True
    )
    assert jittered.crossings[0.143].resolution < r_ring
