"""The tetrahedron check's pose error against each particle's posed model
(holly/results/particlepose.py) and its sampling floor (holly/results/structure.py), on synthetic
inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from holly.cli import main
from holly.config import from_dict
from holly.data.imagestore import ImageStore
from holly.data.realdata import store_splits
from holly.errors import HollyError
from holly.method.geometry import random_rotations
from holly.method.render import render
from holly.results import particlepose as pp
from holly.results.structure import REGULAR_TETRAHEDRON, spread_floor, tetrahedron
from holly.run.runfolder import RunFolder

EDGE = 0.7


def posed_tetrahedra(n, seed=0):
    rng = np.random.default_rng(seed)
    rot = random_rotations(n, rng)
    return EDGE * REGULAR_TETRAHEDRON[None] @ np.swapaxes(rot, 1, 2), rot


def small_rotations(n, deg, seed=1):
    axes = np.random.default_rng(seed).normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return Rotation.from_rotvec(axes * np.radians(deg)).as_matrix()


def test_a_perfect_tetrahedron_at_random_poses_has_no_pose_error():
    vertices = EDGE * REGULAR_TETRAHEDRON
    posed, rot = posed_tetrahedra(30)
    errors, rmsd = pp.pose_errors(vertices, posed, rot)
    assert errors.max() < 1e-5 and rmsd.max() < 1e-9


def test_symmetric_twins_depth_flips_and_vertex_order_cost_nothing():
    """A pose that differs by one of the 12 symmetries, a posed model whose vertices are listed
    in another order, or a model given depth-flipped (its mirror image, which projects alike)
    all make the same image: error 0."""
    vertices = EDGE * REGULAR_TETRAHEDRON
    posed, rot = posed_tetrahedra(12, seed=3)
    # a 120-degree turn about the axis through vertex 0 maps the tetrahedron onto itself
    axis = REGULAR_TETRAHEDRON[0] / np.linalg.norm(REGULAR_TETRAHEDRON[0])
    twin = Rotation.from_rotvec(axis * 2 * np.pi / 3).as_matrix()
    assert np.allclose(np.sort(vertices @ twin.T, 0), np.sort(vertices, 0))
    shuffled = posed[:, [2, 0, 3, 1]]
    flipped = posed @ pp.DEPTH_FLIP
    for target, poses in ((posed, rot @ twin), (shuffled, rot), (flipped, rot)):
        errors, _ = pp.pose_errors(vertices, target, poses)
        assert errors.max() < 1e-5


def test_a_known_pose_error_is_measured():
    vertices = EDGE * REGULAR_TETRAHEDRON
    posed, rot = posed_tetrahedra(40, seed=5)
    errors, _ = pp.pose_errors(vertices, posed, small_rotations(40, 12.0) @ rot)
    # never more than the error made; less only where the depth-flipped twin lies nearer
    assert errors.max() < 12.0 + 1e-4 and np.median(errors) == pytest.approx(12.0, abs=1e-4)


def test_the_fit_tolerates_a_slightly_irregular_reconstruction():
    rng = np.random.default_rng(2)
    vertices = EDGE * REGULAR_TETRAHEDRON + rng.normal(0, 0.01, (4, 3))
    posed, rot = posed_tetrahedra(20, seed=7)
    errors, rmsd = pp.pose_errors(vertices, posed, rot)
    assert errors.max() < 3.0 and rmsd.max() < 0.03


def test_the_spread_floor_of_a_tight_cloud_is_small_and_of_a_loose_one_large():
    tight = spread_floor(np.array([40, 40, 40, 40]), 0.01, draws=20)
    loose = spread_floor(np.array([40, 40, 40, 40]), 0.1, draws=20)
    assert tight["median"] < 0.01 < loose["median"] < loose["p90"] < 0.12
    # a regular tetrahedron sampled like that measures near its own floor
    rng = np.random.default_rng(0)
    x = np.concatenate([v + rng.normal(0, 0.1, (40, 3)) for v in REGULAR_TETRAHEDRON])
    out = tetrahedron(x)
    assert out["edge_spread"] < 2 * out["edge_spread_floor_p90"]
    assert np.array(out["vertices"]).shape == (4, 3)


def write_particles(folder, models, per_vertex=6, seed=0):
    """One ThunderSTORM-style CSV per particle (localisations exactly at the posed vertices,
    file units) and the matching model_structure_K.csv files."""
    rng = np.random.default_rng(seed)
    (folder / "aniso").mkdir()
    (folder / "model").mkdir()
    for k, v in enumerate(models):
        shift = rng.uniform(-0.3, 0.3, 3)
        locs = np.repeat(v + shift, per_vertex, axis=0)
        rows = [f"{x},{y},{z},0.01" for x, y, z in locs]
        (folder / "aniso" / f"smlm_sample{k}.csv").write_text(
            "x,y,z,sigma_xy\n" + "\n".join(rows) + "\n"
        )
        rows = [f"{x},{y},{z}" for x, y, z in v + shift]
        (folder / "model" / f"model_structure_{k}.csv").write_text("x,y,z\n" + "\n".join(rows))


def test_image_vertices_are_where_holly_localise_drew_the_particle(tmp_path):
    """The true vertices of each image (y flipped, copy angle, scale) rendered with the
    renderer reproduce the store's image: the frame convention is holly localise's."""
    models, _ = posed_tetrahedra(4, seed=11)
    write_particles(tmp_path, models)
    store_path = tmp_path / "t.zarr"
    args = ["localise", str(tmp_path / "aniso"), "--out", str(store_path), "--size", "32"]
    assert main([*args, "--sigmas", "1.5", "--perturbations", "3"]) == 0
    store = ImageStore.open(store_path)
    labels = store.attrs["source"]["particle_labels"]
    by_particle = pp.read_particle_models(tmp_path / "model", labels)
    ids = store.particle_ids
    angles = store.array("rotation_angle")
    per_unit = (store.height / 4) / float(store.attrs["params"]["pixels_per_unit"])
    posed = pp.image_vertices(np.stack([by_particle[p] for p in ids]), angles, 1 / per_unit)
    # holly localise centres each particle on its bounding-box centre, in the image plane
    xy = np.stack([by_particle[p][:, :2] for p in ids])
    centre = (xy.min(1) + xy.max(1)) / 2 * np.array([1, -1]) / per_unit  # model units, y up
    c = np.cos(angles)[:, None] * centre + np.sin(angles)[:, None] * centre[:, ::-1] * [-1, 1]
    points = posed.copy()
    points[:, :, :2] -= c[:, None]
    points = np.repeat(points, 6, axis=1)  # 6 localisations per vertex
    images = render(
        torch.as_tensor(points, dtype=torch.float32),
        torch.eye(3).expand(len(ids), 3, 3),
        torch.zeros(len(ids), 2),
        1.5,
        32,
        32,
    ).numpy()
    stored = store.load_level(1.5)
    assert np.abs(images - stored).max() < 1e-3 * stored.max()


def test_pose_block_of_a_run_ties_each_held_out_image_to_its_particle(tmp_path):
    """A run folder whose held-out poses are the true ones (up to a known error) gets that error
    back: test_poses.npz rows are matched to store images, particles and copy angles."""
    models, _ = posed_tetrahedra(10, seed=13)
    write_particles(tmp_path, models)
    store_path = tmp_path / "t.zarr"
    args = ["localise", str(tmp_path / "aniso"), "--out", str(store_path), "--size", "32"]
    assert main([*args, "--sigmas", "1.5", "--perturbations", "2"]) == 0
    raw = {
        "seed": 4,
        "data": {"source": "zarr", "store": str(store_path), "test_fraction": 0.3},
        "render": {"height": 32, "width": 32},
    }
    cfg = from_dict(raw)
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    run.write_config(raw)
    test = store_splits(cfg, torch.device("cpu"))[1]
    store = ImageStore.open(store_path)
    idx = test.indices
    per_unit = (store.height / 4) / float(store.attrs["params"]["pixels_per_unit"])
    by_particle = pp.read_particle_models(
        tmp_path / "model", store.attrs["source"]["particle_labels"]
    )
    angles = store.array("rotation_angle")[idx]
    posed = pp.image_vertices(
        np.stack([by_particle[p] for p in store.particle_ids[idx]]), angles, 1 / per_unit
    )
    # the reconstruction: the regular tetrahedron in its own frame, at the store's scale
    cloud = EDGE * REGULAR_TETRAHEDRON @ Rotation.random(random_state=1).as_matrix().T
    vertices = cloud / per_unit
    fits = [pp.true_poses(vertices, w) for w in posed]
    truth = np.stack([rot[np.argmin(rmsd)] for rot, rmsd in fits])
    run.write_test_poses(rot_pred=small_rotations(len(idx), 7.0) @ truth, rot_amortised=truth)
    block = pp.particle_pose_block(run, vertices, tmp_path / "model")
    assert block["images"] == len(idx) and block["particles"] == 3
    assert block["refined"]["median"] == pytest.approx(7.0, abs=1e-3)
    assert block["amortised"]["median"] < 1e-4
    with pytest.raises(HollyError, match="folder of per-particle model files"):
        pp.particle_pose_block(run, vertices, tmp_path / "nothing")
