import math

import pytest
import torch

from holly.method.geometry import axis_angle_to_matrix, random_rotations
from holly.method.render import (
    BAND_FRACTION,
    _band_width,
    _gaussian_factors,
    project,
    render,
    render_dense,
)


def scene(b, n, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=gen, dtype=dtype) * 2 - 1) * 1.5
    rot = random_rotations(b, gen, dtype)
    trans = (torch.rand(b, 2, generator=gen, dtype=dtype) - 0.5) * 0.4
    sigma = 0.8 + 3 * torch.rand(b, generator=gen, dtype=dtype)
    return points, rot, trans, sigma


@pytest.mark.parametrize("b,n,h,w", [(1, 1, 16, 16), (3, 17, 24, 40), (5, 60, 48, 32)])
@pytest.mark.parametrize("order", ["paper", "latest"])
def test_matches_dense_reference(b, n, h, w, order):
    points, rot, trans, sigma = scene(b, n)
    mask = (torch.rand(n, generator=torch.Generator().manual_seed(3)) > 0.3).double()
    fast = render(points, rot, trans, sigma, h, w, mask=mask, order=order)
    dense = render_dense(points, rot, trans, sigma, h, w, mask=mask, order=order)
    assert fast.shape == (b, h, w)
    assert torch.allclose(fast, dense, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("order", ["paper", "latest"])
def test_gradients_match_dense_reference(order):
    points, rot, trans, sigma = scene(4, 30, seed=5)
    inputs_fast = [t.clone().requires_grad_() for t in (points, rot, trans, sigma)]
    inputs_dense = [t.clone().requires_grad_() for t in (points, rot, trans, sigma)]
    weights = torch.rand(4, 20, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    (render(*inputs_fast, 20, 28, order=order) * weights).sum().backward()
    (render_dense(*inputs_dense, 20, 28, order=order) * weights).sum().backward()
    for f, d in zip(inputs_fast, inputs_dense, strict=True):
        assert torch.allclose(f.grad, d.grad, rtol=1e-6, atol=1e-10)


def test_float32_agrees_with_reference():
    points, rot, trans, sigma = scene(8, 200, dtype=torch.float32)
    fast = render(points, rot, trans, sigma, 64, 64)
    dense = render_dense(points, rot, trans, sigma, 64, 64)
    assert (fast - dense).abs().max() < 1e-5 * dense.max()


def test_gradcheck_float64():
    points, rot, trans, sigma = scene(2, 3)
    mask = torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64)

    def fn(p, t, s):
        return render(p, rot, t, s, 7, 9, mask=mask)

    args = [x.clone().requires_grad_() for x in (points * 0.5, trans, sigma)]
    assert torch.autograd.gradcheck(fn, args)


def test_centred_point_integrates_to_one():
    p = torch.zeros(1, 3, dtype=torch.float64)
    for sigma in (0.7, 1.5, 4.0):
        eye = torch.eye(3, dtype=torch.float64)[None]
        img = render(p, eye, torch.zeros(1, 2, dtype=torch.float64), sigma, 64, 64)
        # the sampled Gaussian sums to 1 up to aliasing (2.5e-4 at sigma 0.7)
        assert img.sum().item() == pytest.approx(1.0, abs=1e-3)


def test_projection_of_known_point():
    # 1 model unit = H/4 px; +y is up (row decreases); x uses the H/2 factor, offset W/2
    p = torch.tensor([[1.0, 0.5, 0.3]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    cols, rows = project(p, eye, torch.zeros(1, 2, dtype=torch.float64), 128, 256)
    assert cols.item() == pytest.approx(128 + 32 * 1.0)
    assert rows.item() == pytest.approx(64 - 32 * 0.5)


def test_narrow_gaussian_peaks_at_projected_pixel():
    p = torch.tensor([[0.25, -0.5, 0.7]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    img = render(p, eye, torch.zeros(1, 2, dtype=torch.float64), 0.5, 32, 48)[0]
    row, col = divmod(int(img.argmax()), 48)
    assert (col, row) == (24 + 8 * 0.25, 16 + 8 * 0.5)


@pytest.mark.parametrize("order", ["paper", "latest"])
def test_translation_shifts_image(order):
    # 0.25 model units at H = 64 is 0.25 * 32 / 2 = 4 px (scale 0.5, viewport H/2)
    points, _, _, _ = scene(1, 20)
    points = points * 0.4
    eye = torch.eye(3, dtype=torch.float64)[None]
    zero = render(points, eye, torch.zeros(1, 2, dtype=torch.float64), 1.0, 64, 64, order=order)[0]
    moved = render(
        points, eye, torch.tensor([[0.25, -0.5]], dtype=torch.float64), 1.0, 64, 64, order=order
    )[0]
    # +x moves right by 4 px, -y moves down by 8 px
    assert torch.allclose(moved[20:50, 20:50], zero[12:42, 16:46], atol=1e-9)


def test_paper_and_latest_orders_differ_only_with_translation():
    points, rot, trans, sigma = scene(3, 10)
    zero = torch.zeros_like(trans)
    a = render(points, rot, zero, sigma, 32, 32, order="paper")
    b = render(points, rot, zero, sigma, 32, 32, order="latest")
    assert torch.allclose(a, b)
    assert not torch.allclose(
        render(points, rot, trans, sigma, 32, 32, order="paper"),
        render(points, rot, trans, sigma, 32, 32, order="latest"),
    )


def test_mask_removes_a_point():
    points = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    zero = torch.zeros(1, 2, dtype=torch.float64)
    both = render(points, eye, zero, 1.0, 32, 32)
    one = render(points, eye, zero, 1.0, 32, 32, mask=torch.tensor([1.0, 0.0], dtype=torch.float64))
    only_first = render(points[:1], eye, zero, 1.0, 32, 32)
    assert torch.allclose(one, only_first)
    assert both.sum() == pytest.approx(2.0, abs=1e-6)


def test_shared_and_per_image_points_agree():
    points, rot, trans, sigma = scene(3, 12)
    shared = render(points, rot, trans, sigma, 16, 16)
    per_image = render(points.expand(3, -1, -1), rot, trans, sigma, 16, 16)
    assert torch.allclose(shared, per_image)


def test_no_denormals_in_far_tails():
    # a point far outside the frame contributes exact zeros, not subnormal floats
    p = torch.tensor([[10.0, 10.0, 0.0]])
    img = render(p, torch.eye(3)[None], torch.zeros(1, 2), 1.0, 32, 32)
    nonzero = img[img != 0]
    assert (nonzero.abs() >= torch.finfo(torch.float32).tiny).all()


def test_rotation_about_z_rotates_image():
    points = torch.tensor([[0.8, 0.0, 0.0]], dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))
    img = render(points, rot, torch.zeros(1, 2, dtype=torch.float64), 0.5, 64, 64)[0]
    row, col = divmod(int(img.argmax()), 64)
    # (0.8, 0, 0) turns into (0, 0.8, 0): column 32, row 32 - 16 * 0.8 = 19.2
    assert (col, row) == (32, 19)


def banded_scene(dtype=torch.float64):
    """A scene where the band (points' support within the exponent cut-off) is well below the
    frame, with points near and beyond the edges so the band's clamping is exercised."""
    points, rot, trans, _ = scene(3, 40, seed=11, dtype=dtype)
    points = points * 1.4  # some points leave the 64 x 80 frame
    sigma = torch.tensor([0.6, 1.1, 1.5], dtype=dtype)
    assert _band_width(1.5, 64) < BAND_FRACTION * 64  # the band path is really taken
    return points, rot, trans, sigma


def test_banded_factors_equal_full_evaluation_bit_for_bit():
    points, rot, trans, sigma = banded_scene(torch.float32)
    mask = (torch.rand(40, generator=torch.Generator().manual_seed(2)) > 0.2).float()
    banded = render(points, rot, trans, sigma, 64, 80, mask=mask, banded=True)
    full = render(points, rot, trans, sigma, 64, 80, mask=mask, banded=False)
    assert torch.equal(banded, full)


@pytest.mark.parametrize("order", ["paper", "latest"])
def test_banded_matches_dense_forward_and_gradients(order):
    points, rot, trans, sigma = banded_scene()
    mask = (torch.rand(40, generator=torch.Generator().manual_seed(4)) > 0.3).double()
    weights = torch.rand(3, 64, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for fn, kw in ((render, {"banded": True}), (render_dense, {})):
        inputs = [t.clone().requires_grad_() for t in (points, rot, trans, sigma)]
        img = fn(*inputs, 64, 80, mask=mask, order=order, **kw)
        (img * weights).sum().backward()
        grads.append((img.detach(), [t.grad for t in inputs]))
    (fast, fast_grads), (dense, dense_grads) = grads
    assert torch.allclose(fast, dense, rtol=1e-6, atol=1e-12)
    for f, d in zip(fast_grads, dense_grads, strict=True):
        assert torch.allclose(f, d, rtol=1e-6, atol=1e-10)


def test_banded_gradcheck_float64_including_mask():
    points, rot, trans, _ = scene(2, 3, seed=6)
    sigma = torch.tensor([0.5, 0.7], dtype=torch.float64)
    assert _band_width(0.7, 24) < BAND_FRACTION * 24

    def fn(p, t, s, m):
        return render(p, rot, t, s, 24, 28, mask=m, banded=True)

    mask = torch.tensor([1.0, 0.5, 0.8], dtype=torch.float64)
    args = [x.clone().requires_grad_() for x in (points * 0.5, trans, sigma, mask)]
    assert torch.autograd.gradcheck(fn, args)


def test_band_width_covers_the_cut_off():
    # a point's factors are non-zero on at most band pixels, for any sub-pixel position
    for sigma in (0.3, 1.0, 2.0, 3.7):
        band = _band_width(sigma, 10_000)
        c = torch.linspace(100, 101, 17, dtype=torch.float64)[None]
        g = _gaussian_factors(c, 300, torch.tensor([sigma], dtype=torch.float64), banded=False)
        assert int((g != 0).sum(-1).max()) <= band
