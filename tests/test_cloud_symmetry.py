"""A declared symmetry kept by the cloud (``refine.symmetry``, holly/method/cloudsymmetry.py).

The projection against its definition (the nearest symmetric cloud: idempotent, exact on a
symmetric cloud, closer than any other symmetric cloud tried), the fold into one sector, the
config's checks, and tiny runs on simulated pores (from their fusion, and from the CNN's cloud)
whose final cloud is symmetric to rounding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import holly.cli
from holly.config import from_dict
from holly.data.pointio import read_points
from holly.errors import HollyError
from holly.method.cloudsymmetry import (
    fold,
    orbit,
    project,
    symmetric_start,
    symmetry_axis,
)
from holly.method.geometry import cyclic_turns


def test_the_projection_is_the_nearest_symmetric_cloud():
    torch.manual_seed(0)
    x = torch.randn(8 * 5, 3, dtype=torch.float64)
    p = project(x, 8)
    assert torch.allclose(project(p, 8), p, atol=1e-12)  # idempotent
    symmetric = orbit(torch.randn(5, 3, dtype=torch.float64), 8)
    assert torch.allclose(project(symmetric, 8), symmetric, atol=1e-12)
    for _ in range(20):  # closer to x than other symmetric clouds of the same layout
        other = orbit(p[:5] + 0.1 * torch.randn(5, 3, dtype=torch.float64), 8)
        assert (x - p).norm() < (x - other).norm()
    turned = p @ cyclic_turns(8)[1].T  # one turn maps the cloud onto itself
    assert torch.allclose(turned.reshape(8, 5, 3).roll(1, 0).reshape(-1, 3), p, atol=1e-12)
    assert project(x, 1) is x


def test_fold_turns_points_into_one_sector_keeping_their_radius():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(200, 3))
    folded = fold(xy, 8)
    angle = np.arctan2(folded[:, 1], folded[:, 0]) % (2 * np.pi)
    assert (angle < 2 * np.pi / 8 + 1e-12).all()
    np.testing.assert_allclose(np.hypot(*folded[:, :2].T), np.hypot(*xy[:, :2].T))
    np.testing.assert_array_equal(folded[:, 2], xy[:, 2])


def test_a_symmetric_start_is_symmetric():
    rng = np.random.default_rng(2)
    start = symmetric_start(rng.normal(size=(48, 3)), 6, seed=0)
    assert start.shape == (48, 3)
    np.testing.assert_allclose(project(torch.from_numpy(start), 6).numpy(), start, atol=1e-12)


def test_the_axis_of_a_turned_ring_of_rods_is_found():
    """Nine rods around an axis (a centriole's wall), turned at random: the rotation found
    puts the axis on z (either way up)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(4)
    angle = np.repeat(2 * np.pi * np.arange(9) / 9, 12)
    height = np.tile(np.linspace(-0.6, 0.6, 12), 9)
    rods = np.stack([np.cos(angle), np.sin(angle), height], 1) + rng.normal(0, 0.03, (108, 3))
    turn = Rotation.random(random_state=5).as_matrix()
    q = symmetry_axis(rods @ turn.T, 9, seed=0)
    assert abs((q @ turn)[2, 2]) > 0.999  # the rods' axis, turned by `turn`, is z after q


def test_the_config_checks_the_symmetry_against_the_cloud_and_the_sites():
    with pytest.raises(HollyError, match=r"model.num_points' \(150\).*e.g. 144 or 152"):
        from_dict({"refine": {"symmetry": 8}, "model": {"num_points": 150}})
    with pytest.raises(
        HollyError, match="'refine.symmetry' must be a whole number dividing the 72"
    ):
        from_dict({"refine": {"symmetry": 7}, "model": {"num_points": 140}})
    with pytest.raises(
        HollyError, match=r"fusion_sites' must be 0 \(a free density\) or a multiple"
    ):
        from_dict({"refine": {"symmetry": 8, "fusion_sites": 12}, "model": {"num_points": 144}})
    with pytest.raises(HollyError, match="acts in the refinement, which 'refine.steps: 0'"):
        from_dict({"refine": {"symmetry": 8}, "model": {"num_points": 144}})
    cfg = from_dict({"refine": {"symmetry": 8, "steps": 300}, "model": {"num_points": 144}})
    assert cfg.refine.symmetry == 8


def _pore_store(tmp_path):
    table, store = tmp_path / "sim.csv", tmp_path / "sim.zarr"
    sim = ["--out", str(table), "--shape", "pore", "--particles", "16", "--labelling", "0.5"]
    sim += ["--views", "inplane", "--sigma-xy-nm", "4", "--blinks", "6", "--seed", "3"]
    assert holly.cli.main(["simulate-localisations", *sim]) == 0
    localise = ["localise", str(table), "--particle-column", "particle", "--out", str(store)]
    localise += ["--sigmas", "2,1", "--size", "32", "--perturbations", "3"]
    assert holly.cli.main(localise) == 0
    return store


@pytest.mark.parametrize("fusion", [True, False], ids=["from-fusion", "from-cnn"])
def test_the_refined_cloud_keeps_the_declared_symmetry(tmp_path, fusion):
    store = _pore_store(tmp_path)
    refine = {"steps": 4, "images": 32, "batch_size": 16, "search_rotations": 16, "symmetry": 8}
    if fusion:
        refine |= {"fusion": True, "fusion_sites": 8, "fusion_rounds": 6, "fusion_starts": 1}
    cfg = {
        "seed": 2,
        "data": {"source": "zarr", "store": str(store), "test_fraction": 0.15},
        "render": {"height": 32, "width": 32},
        "model": {"num_points": 24, "pose_prior": "inplane"},
        "sigma": {"values": [2.0, 1.0]},
        "train": {"steps": 8, "batch_size": 16, "test_images": 8, "threads": 1, "log_every": 4},
        "refine": refine,
    }
    out = tmp_path / "run"
    assert holly.cli.main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 0
    cloud = torch.from_numpy(read_points(out / "points.ply")).double()
    assert torch.allclose(project(cloud, 8), cloud, atol=1e-5)  # float32 on disk
    assert cloud[:, :2].norm(dim=1).min() > 0  # not all on the axis
    if fusion:
        record = json.loads((out / "fusion.json").read_text())
        assert record["params"]["symmetry"] == 8 and len(record["sites"]) == 8
