"""Simulated data written as an image store, and training from a store (real-data mode)."""

import json

import numpy as np
import torch

from holly.cli import main
from holly.data.imagestore import ImageStore
from holly.data.pointio import read_points
from holly.data.realdata import StoreSplit

CFG = {
    "data": {"shape": "spiral", "particles": 24, "test_particles": 4, "augment": 2},
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 16},
    "sigma": {"values": [3.0, 1.5], "schedule": "epoch"},
    "train": {"epochs": 2, "batch_size": 8, "log_every": 3, "test_images": 8, "threads": 1},
}


def make_store(tmp_path):
    store = tmp_path / "sim.zarr"
    assert main(["simulate", "--config-json", json.dumps(CFG), "--out", str(store)]) == 0
    return store


def test_simulate_writes_store_with_true_poses(tmp_path):
    store = ImageStore.open(make_store(tmp_path))
    assert store.n_images == 48 and store.sigmas == [3.0, 1.5]
    assert np.array_equal(store.particle_ids, np.repeat(np.arange(24), 2))
    rot = store.array("rotation")
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    # every image holds the whole particle (no dropout): sums ~ number of vertices
    sums = store.load_level(1.5).sum((1, 2))
    assert np.allclose(sums, sums[0], rtol=1e-3)


def test_simulate_refuses_to_overwrite(tmp_path, capsys):
    store = make_store(tmp_path)
    assert main(["simulate", "--config-json", json.dumps(CFG), "--out", str(store)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_store_split_serves_the_nearest_level(tmp_path):
    store = ImageStore.open(make_store(tmp_path))
    split = StoreSplit(store, np.arange(10, 20), preload=True, device=torch.device("cpu"))
    streamed = StoreSplit(store, np.arange(10, 20), preload=False, device=torch.device("cpu"))
    idx = torch.tensor([3, 0, 7])
    expected = torch.from_numpy(store.load_level(1.5)[[13, 10, 17]])
    assert torch.equal(split.images(idx, 1.6), expected)
    assert torch.equal(streamed.images(idx, 1.6), expected)
    level3 = torch.from_numpy(store.load_level(3.0)[[13, 10, 17]])
    assert torch.equal(split.images(idx, 2.9), level3)


def test_train_from_store(tmp_path):
    store = make_store(tmp_path)
    cfg = {**CFG, "data": {"source": "zarr", "store": str(store), "test_fraction": 0.25}}
    out = tmp_path / "run"
    assert main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 0
    assert read_points(out / "points.ply").shape == (16, 3)
    assert not (out / "ground_truth.ply").exists()  # real data has no ground truth
    prov = json.loads((out / "provenance.json").read_text())
    assert str(store) in prov["inputs"]
    # the held-out poses without true ones: evaluate reports their view range, no pose error
    poses = np.load(out / "test_poses.npz")
    assert "rot_pred" in poses.files and "rot_true" not in poses.files
    assert main(["evaluate", str(out)]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["pose_error_deg"] is None
    assert evaluation["views"]["n_poses"] == len(poses["rot_pred"])


def test_store_size_mismatch_is_a_clear_error(tmp_path, capsys):
    store = make_store(tmp_path)
    cfg = {
        **CFG,
        "data": {"source": "zarr", "store": str(store)},
        "render": {"height": 64, "width": 64},
    }
    assert main(["train", "--config-json", json.dumps(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "32x32 images but render.height/width are 64x64" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--config-json",
                json.dumps({"data": {"source": "zarr"}}),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "names no image store" in capsys.readouterr().err


def test_streaming_read_ahead_serves_planned_and_unplanned_batches(tmp_path):
    store = ImageStore.open(make_store(tmp_path))
    split = StoreSplit(store, np.arange(5, 45), preload=False, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    plan = [(torch.randperm(40, generator=gen)[:8], 3.0 if k < 4 else 1.5) for k in range(9)]
    split.plan(lambda k: plan[k], 2, 9)  # steps 2..8, crossing a level change
    levels = {s: store.load_level(s) for s in (3.0, 1.5)}
    for k in range(2, 9):
        idx, sigma = plan[k]
        expected = torch.from_numpy(levels[sigma][5 + idx.numpy()])
        assert torch.equal(split.images(idx, sigma), expected)
    assert split._ahead is not None and not split._ahead.pending  # all consumed from the plan
    # a request off the plan is read on the spot, and so is everything after it
    split.plan(lambda k: plan[k], 0, 9)
    odd = torch.tensor([1, 1, 39])
    assert torch.equal(split.images(odd, 1.5), torch.from_numpy(levels[1.5][[6, 6, 44]]))
    idx, sigma = plan[1]
    assert torch.equal(split.images(idx, sigma), torch.from_numpy(levels[sigma][5 + idx.numpy()]))
    split.close()


def test_streaming_training_equals_preloaded_training(tmp_path):
    store = make_store(tmp_path)
    points = []
    for preload in (True, False):
        data = {"source": "zarr", "store": str(store), "test_fraction": 0.25, "preload": preload}
        cfg = {**CFG, "data": data}
        out = tmp_path / f"run_{preload}"
        assert main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 0
        points.append(read_points(out / "points.ply"))
    assert np.array_equal(points[0], points[1])
