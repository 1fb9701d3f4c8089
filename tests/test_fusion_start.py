"""A particle fusion as the start of holly's refinement (``refine.fusion``).

The pose of each image against the fused particle (:func:`holly.method.fusion.image_poses`) is
checked against its definition (every localisation lands where ``holly localise`` drew it), against
the renderer (the same image as ``holly localise``'s), through a real store (every image of it
redrawn from the fused frame), and in a run that fuses its own training particles (the table's
poses agree with the simulation's truth up to one common turn)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import holly.cli
from holly.data.fusionrecord import (
    FORMAT,
    fusion_start,
    model_origin,
    read_fusion,
    write_fusion,
)
from holly.data.imagestore import ImageStore
from holly.data.localisations import read_store_localisations, render_particles
from holly.errors import HollyError
from holly.method.fusion import (
    ImageFrames,
    cloud_start,
    fused_model_points,
    image_poses,
    image_rotations,
    place,
    rotation,
)
from holly.method.render import render

FLIP = np.array([1.0, -1.0])


def _random_transforms(rng, n, mirror=False):
    """Random angles, shifts, centroids and (with ``mirror``) face-down flags of ``n``."""
    flags = rng.random(n) < 0.5 if mirror else np.zeros(n, bool)
    return rng.uniform(0, 2 * np.pi, n), rng.normal(0, 5, (n, 2)), rng.normal(0, 3, (n, 2)), flags


def _fused_at_random(rng, particles, mirror=False):
    """Random transforms of ``particles`` (any will do: the identity holds for all; with
    ``mirror`` about half of them face down), the particles they place and those fused
    points' mean, and each particle's bounding-box centre (what `holly localise` draws around
    by default)."""
    transforms = _random_transforms(rng, len(particles), mirror)
    fused = [place(p, *t) for p, *t in zip(particles, *transforms, strict=True)]
    centres = np.array([(p.min(0) + p.max(0)) / 2 for p in particles])
    return transforms, fused, np.concatenate(fused).mean(axis=0), centres


@pytest.mark.parametrize("mirror", [False, True], ids=["turns", "some-face-down"])
def test_every_localisation_lands_where_localise_drew_it(mirror):
    """For any transforms: the image pose applied to the fused, model-frame points gives the
    localisation exactly where ``holly localise`` draws it (``R(copy) k Y (x - centre)``); a
    particle placed mirrored is shown face down (the model's y, and z, turned over)."""
    rng = np.random.default_rng(0)
    n, k = 6, 0.037
    particles = [rng.normal(0, 20, (7, 2)) + rng.normal(0, 30, 2) for _ in range(n)]
    transforms, fused, origin, centres = _fused_at_random(rng, particles, mirror)
    copies = rng.uniform(-np.pi, np.pi, n)
    down = transforms[3]
    assert down.any() == mirror
    turn, offset = image_poses(*transforms[:3], ImageFrames(centres, copies, k), origin, down)
    for i, p in enumerate(particles):
        drawn = (k * (p - centres[i]) * FLIP) @ rotation(copies[i]).T
        model = fused_model_points(fused[i], k, origin) * (FLIP if down[i] else 1.0)
        np.testing.assert_allclose(model @ rotation(turn[i]).T + offset[i], drawn, atol=1e-12)


@pytest.mark.parametrize("mirror", [False, True], ids=["turns", "some-face-down"])
def test_the_pose_renders_the_image_localise_renders(mirror):
    """The renderer's conventions (its rotation about z, +y up, shifts in model units, the
    face-down half turn) agree with ``holly localise``'s drawing: the fused points at the
    image pose give its image."""
    rng = np.random.default_rng(1)
    n, k, size = 4, 1 / 30, 32
    particles = [rng.normal(0, 12, (9, 2)) for _ in range(n)]
    transforms, fused, origin, centres = _fused_at_random(rng, particles, mirror)
    copies = rng.uniform(-np.pi, np.pi, (n, 1))
    down = transforms[3]
    frames = ImageFrames(centres, copies[:, 0], k)
    turn, offset = image_poses(*transforms[:3], frames, origin, down)
    model = [
        (k * (p - c) * FLIP).astype(np.float32) for p, c in zip(particles, centres, strict=True)
    ]
    expected = np.concatenate(list(render_particles(model, copies, 1.5, size)))
    for i in range(n):
        q = torch.as_tensor(np.c_[fused_model_points(fused[i], k, origin), np.zeros(9)])
        got = render(
            q.float(),
            image_rotations(turn[i : i + 1], down[i : i + 1]).float(),
            torch.as_tensor(offset[i : i + 1]).float(),
            1.5,
            size,
            size,
            order="latest",
        )[0]
        np.testing.assert_allclose(got.numpy(), expected[i], atol=2e-5 * expected[i].max())


def test_the_start_cloud_keeps_to_the_dense_structure_not_the_background():
    """Fused localisations: a ring of 8 dense sites and 20 % uniform background over a field
    four times as wide; the start cloud's points sit on the sites, flat."""
    rng = np.random.default_rng(4)
    phi = np.arange(8) * np.pi / 4
    sites = np.c_[np.cos(phi), np.sin(phi)]
    on_sites = sites[rng.integers(8, size=4000)] + rng.normal(0, 0.03, (4000, 2))
    background = rng.uniform(-4, 4, (1000, 2))
    cloud = cloud_start(np.concatenate([on_sites, background]), 24, seed=0)
    assert cloud.shape == (24, 3) and np.all(cloud[:, 2] == 0)
    nearest = np.linalg.norm(cloud[:, None, :2] - sites[None], axis=2).min(axis=1)
    assert nearest.max() < 0.15, nearest


def _store(tmp_path, particles=10, copies=3, labelling=1.0, centre="bbox"):
    table = tmp_path / "sim.csv"
    sim = ["--out", str(table), "--shape", "logo", "--particles", str(particles)]
    sim += ["--views", "inplane", "--sigma-xy-nm", "2", "--labelling", str(labelling)]
    assert holly.cli.main(["simulate-localisations", *sim, "--seed", "5"]) == 0
    store = tmp_path / "sim.zarr"
    localise = ["localise", str(table), "--particle-column", "particle", "--out", str(store)]
    localise += ["--sigmas", "2,1", "--size", "32", "--perturbations", str(copies)]
    localise += ["--centre", centre]
    assert holly.cli.main(localise) == 0
    return store


def _record(store, rng, mirror=False) -> dict:
    """A record of ``store`` with random transforms (the identity under test holds for any;
    with ``mirror`` about half face down, else without the key, as records before it were)."""
    locs = read_store_localisations(store)
    angles, shifts, centroids, down = _random_transforms(rng, len(locs.particles), mirror)
    transforms = [
        {"particle": int(p), "angle_deg": math.degrees(a), "shift": list(s), "centroid": list(c)}
        | ({"mirrored": bool(m)} if mirror else {})
        for p, a, s, c, m in zip(locs.particles, angles, shifts, centroids, down, strict=True)
    ]
    inputs = {"store": str(store), **locs.sources}
    return {"holly_fusion": FORMAT, "unit": locs.unit, "transforms": transforms,
            "provenance": {"inputs": inputs}}  # fmt: skip


@pytest.mark.parametrize("centre, mirror", [("bbox", False), ("centroid", False), ("bbox", True)])
def test_every_store_image_is_redrawn_from_the_fused_frame(tmp_path, centre, mirror):
    """Through a real ``holly localise`` store (nm scale, either centring, 3 turned copies;
    some particles fused face down, or a record without the key): each particle's own
    localisations, placed by the record and posed by :func:`fusion_start`, render to the
    store's image of it."""
    store = _store(tmp_path, centre=centre)
    record = tmp_path / "fusion.json"
    write_fusion(record, _record(store, np.random.default_rng(2), mirror))
    start = fusion_start(store, record)
    assert start.fused.all() and start.angles.shape == (30,)
    assert start.mirrored.any() == mirror and start.mirrored.shape == (30,)
    counts = [len(p) for p in read_store_localisations(store).xy]
    own = np.split(start.points, np.cumsum(counts)[:-1])  # the record's order: the store's
    s = ImageStore.open(store)
    images = next(s.iter_batches(1.0, np.arange(30), batch_size=30))
    ids = np.asarray(s.particle_ids)
    for j in range(30):
        q = torch.as_tensor(np.c_[own[ids[j]], np.zeros(len(own[ids[j]]))]).float()
        got = render(
            q,
            image_rotations(start.angles[j : j + 1], start.mirrored[j : j + 1]).float(),
            torch.as_tensor(start.shifts[j : j + 1]).float(),
            1.0,
            32,
            32,
            order="latest",
        )[0].numpy()
        np.testing.assert_allclose(got, images[j], atol=1e-4 * images[j].max())


def test_a_record_of_another_store_or_a_damaged_one_is_refused(tmp_path):
    store = _store(tmp_path)
    record = _record(store, np.random.default_rng(3))
    path = tmp_path / "fusion.json"
    write_fusion(path, {**record, "provenance": {"inputs": {"store_created": "yesterday"}}})
    with pytest.raises(HollyError, match="run the fusion again"):
        fusion_start(store, path)
    write_fusion(path, {**record, "transforms": [{"particle": 0, "angle_deg": None}]})
    with pytest.raises(HollyError, match="damaged transform"):
        read_fusion(path)
    flipped = {**record["transforms"][0], "mirrored": "yes"}
    write_fusion(path, {**record, "transforms": [flipped]})
    with pytest.raises(HollyError, match="mirrored is not true or false"):
        read_fusion(path)
    path.write_text("{not json")
    with pytest.raises(HollyError, match="not a readable fusion record"):
        read_fusion(path)
    with pytest.raises(HollyError, match="does not exist; make it with `holly fuse"):
        read_fusion(tmp_path / "none.json")


def test_the_model_origin_is_the_declared_axis_only_where_the_annealing_kept_it():
    """A declared symmetry puts its axis at the fused frame's origin only in the annealing
    (its template averaged about it); pairs ignore the symmetry, so their fusion, and one
    without a symmetry, is centred on the fused localisations' mean."""
    placed = np.array([[1.0, 2.0], [3.0, 6.0]])
    declared = {"params": {"symmetry": 8}, "chosen": "anneal"}
    np.testing.assert_array_equal(model_origin(declared, placed), [0.0, 0.0])
    for record in (
        {**declared, "chosen": "pairs"},
        {"params": {"symmetry": 1}, "chosen": "anneal"},
        {},
    ):
        np.testing.assert_array_equal(model_origin(record, placed), [2.0, 4.0])


TRAIN = {
    "seed": 4,
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 24, "pose_prior": "inplane"},
    "sigma": {"values": [2.0, 1.0]},
    "train": {"steps": 8, "batch_size": 16, "test_images": 8, "threads": 1, "log_every": 4},
    "refine": {"steps": 4, "images": 48, "batch_size": 16, "search_rotations": 16},
}


def test_training_refines_from_its_own_fusion(tmp_path, caplog):
    """``refine.fusion``: the run fuses its training particles (not the held-out ones) into
    ``fusion.json``, its pose table starts at the fusion's poses, which agree with the
    simulated truth up to one common turn, the cloud is flat, and a resumed run reads the
    fusion back rather than fusing again."""
    store = _store(tmp_path, particles=16, copies=3)
    data = {"source": "zarr", "store": str(store), "test_fraction": 0.15}
    refine = {**TRAIN["refine"], "fusion": True, "fusion_partners": 8, "fusion_bootstrap": 2}
    refine |= {"fusion_rounds": 6, "fusion_starts": 2}  # the default method (both), shortened
    cfg = {**TRAIN, "data": data, "refine": refine}
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert holly.cli.main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 0
    assert (
        "from the particle fusion" in caplog.text and "fusing 14 training particles" in caplog.text
    )
    record = read_fusion(out / "fusion.json")
    table_angles, store_rows, train_particles, faces = _table(out, cfg)
    # the logo is chiral and none lies face down: the fusion places all face up (mostly face
    # down it would turn the whole over: majority_face_up), the table's rows too
    assert record["params"]["mirror"] and set(faces.tolist()) == {1.0}
    assert {t["particle"] for t in record["transforms"]} == set(train_particles)
    s = ImageStore.open(store)
    truth = np.load(tmp_path / "sim.truth.npz")["rotations"]
    ids, copy = np.asarray(s.particle_ids), np.asarray(s.group["rotation_angle"][:])
    true = copy[store_rows] + np.arctan2(truth[ids[store_rows], 1, 0], truth[ids[store_rows], 0, 0])
    gap = np.angle(np.exp(1j * (table_angles - true)))
    spread = np.degrees(np.abs(np.angle(np.exp(1j * (gap - np.angle(np.exp(1j * gap).mean()))))))
    assert spread.max() < 8.0, spread
    from holly.data.pointio import read_points

    assert np.all(read_points(out / "points.ply")[:, 2] == 0)
    # the run's fusion with its cloud, for the report
    figure = ["figures", str(out), "--out", str(out / "figures"), "--only", "fusion"]
    assert holly.cli.main(figure) == 0 and (out / "figures" / "fusion.png").stat().st_size > 0
    # a run stopped before its refinement resumes with its fusion read back, not made again
    part = tmp_path / "part"
    short = {**cfg, "train": {**TRAIN["train"], "max_steps": 8}}  # the CNN phase only
    assert holly.cli.main(["train", "--config-json", json.dumps(short), "--out", str(part)]) == 0
    made = (part / "fusion.json").read_bytes()
    caplog.clear()
    with caplog.at_level("INFO"):
        argv = ["train", "--config-json", json.dumps(cfg), "--out", str(part), "--resume", "yes"]
        assert holly.cli.main(argv) == 0
    assert "fusing" not in caplog.text and (part / "fusion.json").read_bytes() == made
    np.testing.assert_array_equal(read_points(part / "points.ply"), read_points(out / "points.ply"))


def _table(out, cfg):
    """The run's pose table (final checkpoint): in-plane angles and the store rows."""
    from holly.config import from_dict
    from holly.data.realdata import store_splits
    from holly.method.refine import PoseTable
    from holly.method.viewprior import PosePrior

    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)["refinement"]
    cfg = from_dict(cfg)
    table = PoseTable.from_state(state["table"], PosePrior.from_config(cfg))
    rot = table.pose(torch.arange(len(table)))[0].detach().numpy()
    train, _, _, _ = store_splits(cfg, torch.device("cpu"))
    rows = train.indices[state["items"].numpy()]
    faces = np.sign(rot[:, 2, 2])  # +1 face up, -1 face down (the in-plane prior's half turn)
    return np.arctan2(rot[:, 1, 0], rot[:, 0, 0]), rows, np.unique(train.particle_ids()), faces


def test_training_refuses_a_fusion_without_a_store(tmp_path, capsys):
    cfg = {**TRAIN, "refine": {**TRAIN["refine"], "fusion": True}}
    cfg["data"] = {"shape": "tetrapod", "particles": 32, "test_particles": 4}
    out = tmp_path / "run"
    assert holly.cli.main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 2
    assert "refine.fusion is on, but data.source is not 'zarr'" in capsys.readouterr().err
    assert not (out / "points.ply").exists()


def test_the_fusion_figure_of_a_run_without_a_fusion_is_refused(tmp_path, capsys):
    from test_train import TINY

    out = tmp_path / "run"
    assert holly.cli.main(["train", "--config-json", json.dumps(TINY), "--out", str(out)]) == 0
    capsys.readouterr()
    figure = ["figures", str(out), "--out", str(out / "figures"), "--only", "fusion"]
    assert holly.cli.main(figure) == 2
    assert "not trained with refine.fusion" in capsys.readouterr().err


def test_a_record_from_before_either_face_is_fused_again(tmp_path):
    """A run's fusion.json written before ``refine.fusion_mirror`` (its params without
    ``mirror``: turns only) is reused only where the config asks for turns only."""
    from types import SimpleNamespace

    from holly.config import from_dict
    from holly.train.fusionstart import _reusable

    store = _store(tmp_path, particles=4, copies=1)
    record = _record(store, np.random.default_rng(5))
    run = SimpleNamespace(fusion=tmp_path / "fusion.json")
    made = {"sigma": 2.0, "method": "both", "anneal_rounds": 12, "anneal_starts": 3}
    made |= {"n_angles": 72, "partners": 64, "keep_deg": 20.0, "sync_rounds": 4}
    made |= {"bootstrap_rounds": 5, "symmetry": 1, "sites": 0, "seed": 0}
    write_fusion(run.fusion, {**record, "params": made})
    particles = read_store_localisations(store).particles
    for mirror, reused in ((True, False), (False, True)):
        rc = from_dict({"refine": {"fusion_sigma": 2.0, "fusion_mirror": mirror}}).refine
        assert (_reusable(run, rc, 0, particles) is not None) == reused
