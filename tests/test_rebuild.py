"""``refine.rebuild_rounds``: the cloud rebuilt from a blob at fixed poses (method/rebuild.py)
and the rounds in the refinement (train/rebuild.py)."""

import logging

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from holly.config import from_dict
from holly.errors import HollyError
from holly.method import refine
from holly.method.cloudsymmetry import project
from holly.method.geometry import random_rotations
from holly.method.rebuild import moment_blob, rebuild_cloud
from holly.method.render import render
from tests.test_poses import TINY_REFINE

SIZE = 32
SPEC = refine.RenderSpec(SIZE, SIZE, "l1", 0.0, 0.0)
MIRROR = torch.tensor([1.0, 1.0, -1.0])


def _chiral_cloud(n: int = 24) -> torch.Tensor:
    """A helix of 1.5 turns: far from its own mirror image."""
    t = torch.linspace(0.0, 3.0 * np.pi, n)
    return torch.stack([0.5 * torch.cos(t), 0.5 * torch.sin(t), 0.12 * t - 0.56], 1)


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2


def _table_at_true_poses(truth: torch.Tensor, n_images: int = 48):
    """A pose table at the images' true rotations (shifts 0, sigma 1 px) and their images."""
    rotations = random_rotations(n_images, torch.Generator().manual_seed(3))
    shifts = torch.zeros(n_images, 2)
    images = render(truth, rotations, shifts, 1.0, SIZE, SIZE, order="latest")
    table = refine.PoseTable(rotations, shifts, torch.ones(n_images))
    return table, refine.normalised(images)


def test_a_rebuild_at_the_true_poses_fits_the_shape_from_its_mirror_image():
    """Started from the helix's mirror image, the rebuild ends on the helix (0.037 from it,
    0.21 from the mirror image; 0.037-0.042 with other generators), and its shifts stay near
    where the poses put them (0)."""
    truth = _chiral_cloud()
    table, target = _table_at_true_poses(truth)
    start = truth * MIRROR
    points = start.clone()
    gen = torch.Generator().manual_seed(0)
    rebuild_cloud(points, table, lambda rows: target[rows], SPEC, 300, 16, gen)
    assert _chamfer(points, truth) < 0.3 * _chamfer(start, truth)
    assert _chamfer(points, truth) < 0.3 * _chamfer(points, truth * MIRROR)
    assert table.x[:, 3:5].abs().max() < 0.1


def test_a_rebuild_keeps_nothing_of_the_start_but_its_mean_and_covariance():
    """The old points are dropped, not moved: a start turned inside out about its centroid
    (the same mean and covariance, every point elsewhere) rebuilds the same cloud. A fit that
    moved the start's points would not."""
    truth = _chiral_cloud()
    start = truth.clone()
    start[::2] *= MIRROR
    inverted = 2 * start.mean(0) - start
    assert _chamfer(start, inverted) > 0.1

    def rebuilt(first: torch.Tensor) -> torch.Tensor:
        table, target = _table_at_true_poses(truth)
        points = first.clone()
        gen = torch.Generator().manual_seed(0)
        rebuild_cloud(points, table, lambda rows: target[rows], SPEC, 20, 16, gen)
        return points

    assert torch.allclose(rebuilt(start), rebuilt(inverted), atol=1e-4)


def test_the_same_generator_rebuilds_the_same_cloud_and_a_symmetry_is_kept():
    truth = _chiral_cloud()

    def rebuilt(seed: int, symmetry: int = 1) -> torch.Tensor:
        table, target = _table_at_true_poses(truth)  # a table of its own: its shifts move
        points = truth.clone()
        gen = torch.Generator().manual_seed(seed)
        rebuild_cloud(points, table, lambda rows: target[rows], SPEC, 5, 16, gen, symmetry)
        return points

    assert torch.equal(rebuilt(1), rebuilt(1)) and not torch.equal(rebuilt(1), rebuilt(2))
    square = rebuilt(1, symmetry=4)
    assert torch.allclose(project(square, 4), square, atol=1e-6)
    assert square[:, :2].norm(dim=1).mean() > 0.2  # the blob's turns, not gathered on the axis


def test_the_blob_has_the_clouds_moments():
    cloud = _chiral_cloud(2000) * torch.tensor([2.0, 1.0, 0.5]) + 0.3
    blob = moment_blob(cloud, torch.Generator().manual_seed(0))
    assert blob.shape == cloud.shape and blob.dtype == cloud.dtype
    assert torch.allclose(blob.mean(0), cloud.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(blob.T), torch.cov(cloud.T), atol=0.05)


def test_config_refuses_rebuild_rounds_without_a_refinement():
    with pytest.raises(HollyError, match=r"refine.rebuild_rounds.*refine.steps"):
        from_dict(
            {**TINY_REFINE, "refine": {**TINY_REFINE["refine"], "steps": 0, "rebuild_rounds": 1}}
        )


def test_a_run_with_rebuild_rounds_rebuilds_before_its_refinement_steps(tmp_path, caplog):
    from holly.data.pointio import read_points
    from holly.train import train

    refine_keys = {**TINY_REFINE["refine"], "rebuild_rounds": 2, "rebuild_steps": 4}
    with caplog.at_level(logging.INFO, logger="holly"):
        run = train(from_dict({**TINY_REFINE, "refine": refine_keys}), tmp_path / "run")
    assert "rebuild round 2 of 2" in caplog.text and "rebuild round 3" not in caplog.text
    plain = train(from_dict(TINY_REFINE), tmp_path / "plain")
    assert not np.allclose(read_points(run / "points.ply"), read_points(plain / "points.ply"))
