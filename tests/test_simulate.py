import numpy as np
import pytest
import torch

from holly.config import from_dict
from holly.data.shapes import (
    BUILTIN_SHAPES,
    SPARSE_SHAPES,
    SYMMETRY_ORDER,
    builtin_shape,
    load_shape,
)
from holly.data.simulate import realise, simulate
from holly.method.geometry import geodesic_angle
from holly.method.render import render


def cfg(**data):
    base = {"particles": 40, "test_particles": 10, "augment": 3}
    return from_dict({"data": {**base, **data}, "render": {"height": 32, "width": 32}, "seed": 5})


def test_same_seed_same_data_and_different_seed_differs():
    verts = builtin_shape("tetrapod")
    a, _ = simulate(verts, cfg(wobble=0.05, dropout=0.2))
    b, _ = simulate(verts, cfg(wobble=0.05, dropout=0.2))
    idx = torch.arange(len(a))
    assert torch.equal(a.images(idx, 2.0), b.images(idx, 2.0))
    other = from_dict({**cfg(wobble=0.05, dropout=0.2).to_dict(), "seed": 6})
    c, _ = simulate(verts, other)
    assert not torch.equal(a.images(idx, 2.0), c.images(idx, 2.0))


def test_split_by_particle_has_no_leakage():
    verts = builtin_shape("spiral")
    train, test = simulate(verts, cfg(augment=5, wobble=0.03))
    assert len(train) == 40 * 5 and len(test) == 10 * 5
    # copies of one particle share points, translation and base rotation ...
    assert torch.equal(train.item_particle, torch.arange(40).repeat_interleave(5))
    # ... and no training realisation appears in the test set
    for p in test.points:
        assert not any(torch.allclose(p, q) for q in train.points)


def test_augmentation_copies_differ_only_by_in_plane_rotation():
    train, _ = simulate(builtin_shape("tetrapod"), cfg(augment=4, max_trans=0.0))
    idx = torch.arange(4)  # the copies of particle 0
    rots = train.rotations(idx)
    rel = rots @ rots[0].T  # in-plane rotations: z axis fixed
    assert torch.allclose(rel[:, 2], torch.tensor([0.0, 0, 1]).expand(4, 3), atol=1e-5)
    images = train.images(idx, 1.5)
    totals = images.sum((1, 2))  # same realisation, same total (up to tails beyond the frame)
    assert totals.std() / totals.mean() < 1e-4


def test_images_equal_render_of_ground_truth_pose():
    """Without translation, an image is the ground truth rendered at the item's full rotation
    (the base rotation followed by the in-plane augmentation rotation)."""
    verts = builtin_shape("cep152")
    idx = torch.arange(6)
    no_shift, _ = simulate(verts, cfg(max_trans=0.0))
    direct = render(
        torch.as_tensor(verts, dtype=torch.float32),
        no_shift.rotations(idx),
        torch.zeros(6, 2),
        2.0,
        32,
        32,
    )
    assert torch.allclose(no_shift.images(idx, 2.0), direct, atol=1e-5)


def test_dropout_rate_and_wobble_spread():
    gen = torch.Generator().manual_seed(0)
    verts = torch.zeros(500, 3)
    pts, masks = realise(
        verts, 40, wobble=0.05, dropout=0.3, spawn_copies=1, spawn_rate=1.0, generator=gen
    )
    assert masks.mean().item() == pytest.approx(0.7, abs=0.01)
    assert pts.std().item() == pytest.approx(0.05, rel=0.02)


def test_spawn_copies_and_rate():
    gen = torch.Generator().manual_seed(1)
    pts, masks = realise(
        torch.zeros(300, 3),
        50,
        wobble=0.0,
        dropout=0.0,
        spawn_copies=4,
        spawn_rate=0.3,
        generator=gen,
    )
    assert pts.shape == (50, 1200, 3)
    assert masks.mean().item() == pytest.approx(0.3, abs=0.01)
    # the original's noise condition: a vertex is empty with probability 0.7^4 = 24 %
    empty = (masks.reshape(50, 300, 4).sum(-1) == 0).float().mean().item()
    assert empty == pytest.approx(0.7**4, abs=0.015)


def test_translations_within_range():
    train, _ = simulate(builtin_shape("tetrapod"), cfg(max_trans=0.2))
    assert train.translations.abs().max() <= 0.2
    assert train.translations.abs().max() > 0.1


def test_base_rotations_are_uniformly_spread():
    train, _ = simulate(builtin_shape("tetrapod"), from_dict({"data": {"particles": 2000}}))
    # mean rotation of Haar-random rotations tends to zero
    assert train.base_rotations.mean(0).abs().max() < 0.06
    angle = geodesic_angle(train.base_rotations[:1000], train.base_rotations[1000:])
    assert angle.mean().item() == pytest.approx(np.pi / 2 + 2 / np.pi, abs=0.05)


@pytest.mark.parametrize("name", sorted(BUILTIN_SHAPES))
def test_builtin_shapes_fit_the_frame(name):
    verts = builtin_shape(name)
    assert verts.shape[1] == 3 and len(verts) >= (8 if name in SPARSE_SHAPES else 100)
    assert np.linalg.norm(verts, axis=1).max() <= 1.6


def test_sparse_flat_shapes():
    logo, pore = builtin_shape("logo"), builtin_shape("pore")
    assert len(logo) == 38 and len(pore) == 8
    assert np.all(logo[:, 2] == 0) and np.all(pore[:, 2] == 0)  # flat, in the z = 0 plane
    assert SYMMETRY_ORDER["pore"] == 8
    # the pore's corners are all one radius apart from the centre, 45 degrees apart
    assert np.allclose(np.linalg.norm(pore, axis=1), 1.5)


def test_user_shape_is_fitted(tmp_path):
    obj = tmp_path / "m.obj"
    obj.write_text("# model\nv 10 0 0\nv 0 20 0\nv 0 0 30\nv 5 5 5\nf 1 2 3\n")
    xyz = load_shape(str(obj), fit_radius=1.5)
    assert np.linalg.norm(xyz, axis=1).max() == pytest.approx(1.5)
    assert np.allclose(xyz.mean(0), 0)
