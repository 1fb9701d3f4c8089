import math

import numpy as np
import pytest
import torch
from scipy import stats

from holly.method import geometry as g


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_axis_angle_matches_closed_form_about_each_axis():
    theta = 0.7
    c, s = math.cos(theta), math.sin(theta)
    rz = g.axis_angle_to_matrix(torch.tensor([0.0, 0.0, theta], dtype=torch.float64))
    expected = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(rz, expected, atol=1e-12)
    # rotating (0.9, 0, 0) by 90 degrees about z gives y = 0.9 (original test)
    r = g.axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(r @ torch.tensor([0.9, 0, 0]), torch.tensor([0.0, 0.9, 0]), atol=1e-6)


def test_round_trips(gen):
    rot = g.random_rotations(500, gen, torch.float64)
    assert torch.allclose(g.axis_angle_to_matrix(g.matrix_to_axis_angle(rot)), rot, atol=1e-9)
    assert torch.allclose(g.quaternion_to_matrix(g.matrix_to_quaternion(rot)), rot, atol=1e-9)
    assert torch.allclose(g.rotation_6d_to_matrix(g.matrix_to_rotation_6d(rot)), rot, atol=1e-9)
    q = g.matrix_to_quaternion(rot)
    assert torch.allclose(g.axis_angle_to_quaternion(g.quaternion_to_axis_angle(q)), q, atol=1e-9)
    # angles near pi survive the round trip (the hardest case for the log map)
    near_pi = torch.tensor(
        [[0.0, math.pi - 1e-6, 0.0], [math.pi - 1e-4, 0, 0]], dtype=torch.float64
    )
    back = g.axis_angle_to_matrix(g.matrix_to_axis_angle(g.axis_angle_to_matrix(near_pi)))
    assert torch.allclose(back, g.axis_angle_to_matrix(near_pi), atol=1e-6)


def test_rotations_are_orthonormal_proper(gen):
    for rot in (
        g.random_rotations(100, gen),
        g.axis_angle_to_matrix(torch.randn(100, 3) * 3),
        g.rotation_6d_to_matrix(torch.randn(100, 6)),
    ):
        eye = torch.eye(3).expand(100, 3, 3)
        assert torch.allclose(rot.transpose(-1, -2) @ rot, eye, atol=1e-5)
        assert torch.allclose(torch.linalg.det(rot), torch.ones(100), atol=1e-5)


def test_rodrigues_gradient_is_finite_at_zero():
    r = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    g.axis_angle_to_matrix(r).sum().backward()
    assert torch.isfinite(r.grad).all()
    assert torch.autograd.gradcheck(
        g.axis_angle_to_matrix, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),)
    )
    tiny = (torch.randn(4, 3, dtype=torch.float64) * 1e-5).requires_grad_()
    assert torch.autograd.gradcheck(g.axis_angle_to_matrix, (tiny,))


def test_geodesic_angle(gen):
    a = g.random_rotations(50, gen, torch.float64)
    angles = torch.rand(50, dtype=torch.float64, generator=gen) * math.pi
    axes = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64, generator=gen))
    b = a @ g.axis_angle_to_matrix(axes * angles[:, None])
    assert torch.allclose(g.geodesic_angle(a, b), angles, atol=1e-6)


def test_random_rotations_are_haar_uniform(gen):
    """Under the Haar measure the rotation angle has density (1 - cos t) / pi on [0, pi], and
    each column of R is uniform on the sphere (z-component uniform on [-1, 1])."""
    rot = g.random_rotations(20000, gen, torch.float64)
    angle = g.matrix_to_axis_angle(rot).norm(dim=-1).numpy()
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(angle, cdf).pvalue > 1e-3
    for col in range(3):
        assert stats.kstest(rot[:, 2, col].numpy(), stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # a biased sampler must fail the same test: angles concentrated near zero
    biased = g.axis_angle_to_matrix(torch.randn(20000, 3, dtype=torch.float64) * 0.8)
    b_angle = g.matrix_to_axis_angle(biased).norm(dim=-1).numpy()
    assert stats.kstest(b_angle, cdf).pvalue < 1e-6


def test_random_rotations_are_seeded():
    a = g.random_rotations(5, torch.Generator().manual_seed(7))
    b = g.random_rotations(5, torch.Generator().manual_seed(7))
    c = g.random_rotations(5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_geodesic_angle_numpy_and_torch_agree(gen):
    """The scores' numpy branch and training's torch branch compute the same angle."""
    a = g.random_rotations(200, gen, torch.float64)
    b = g.random_rotations(200, gen, torch.float64)
    small = a @ g.axis_angle_to_matrix(torch.full((200, 3), 1e-4, dtype=torch.float64))
    for other in (b, small, a):
        want = g.geodesic_angle(a, other).numpy()
        got = g.geodesic_angle(a.numpy(), other.numpy())
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def test_random_rotations_from_numpy_generator():
    """A numpy Generator gives float64 proper rotations, seeded, uniform in their third rows."""
    rot = g.random_rotations(20000, np.random.default_rng(3))
    assert isinstance(rot, np.ndarray) and rot.dtype == np.float64
    np.testing.assert_allclose(
        rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    assert np.abs(rot[:, 2].mean(0)).max() < 0.03  # viewing directions: mean ~0 on the sphere
    np.testing.assert_array_equal(rot[:5], g.random_rotations(5, np.random.default_rng(3))[:5])
