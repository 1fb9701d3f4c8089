"""The image store format: writer atomicity, reader, nearest level, batches, particle split."""

import numpy as np
import pytest
import zarr

import holly.data.imagestore as imagestore
from holly.data.imagestore import ImageStore, StoreWriter, base_attrs, level_name, split_by_particle
from holly.errors import HollyError

H, W = 8, 6


def write_store(path, n=10, sigmas=(4.0, 2.0, 1.41), block=3, ids=None):
    rng = np.random.default_rng(0)
    levels = {s: rng.random((n, H, W), dtype=np.float32) for s in sigmas}
    ids = np.arange(n) // 2 if ids is None else ids
    with StoreWriter(path, n_images=n, height=H, width=W, sigmas=sigmas) as w:
        for s in sigmas:
            w.write_level(s, (levels[s][i : i + block] for i in range(0, n, block)))
        w.write_array("particle_id", ids.astype(np.int32))
        w.commit(
            base_attrs(
                n_images=n,
                height=H,
                width=W,
                sigmas=sigmas,
                orientation=imagestore.ORIENTATION,
                source={},
                params={},
            )
        )
    return levels


@pytest.fixture
def small_shards(monkeypatch):
    # 4 images per shard, so blocks of 3 straddle shard boundaries
    monkeypatch.setattr(imagestore, "SHARD_BYTES", 4 * H * W * 4)


def test_round_trip_layout_and_levels(tmp_path, small_shards):
    levels = write_store(tmp_path / "s.zarr")
    store = ImageStore.open(tmp_path / "s.zarr")
    assert store.sigmas == [4.0, 2.0, 1.41]
    assert (store.n_images, store.height, store.width) == (10, H, W)
    for s, data in levels.items():
        assert np.array_equal(store.load_level(s), data)
    arr = store.group[level_name(1.41)]
    assert arr.name.endswith("sigma_1.41")
    assert arr.chunks == (1, H, W) and arr.shards == (4, H, W)
    assert arr.metadata.dimension_names == ("sample", "y", "x")
    assert arr.attrs["sigma_px"] == 1.41
    assert np.array_equal(store.particle_ids, np.arange(10) // 2)
    assert store.attrs["orientation"]["row0"] == "top"
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # no temporary folder left


def test_nearest_level(tmp_path):
    write_store(tmp_path / "s.zarr", sigmas=(4.0, 2.0))
    store = ImageStore.open(tmp_path / "s.zarr")
    assert store.level_for(1.0) == 2.0
    assert store.level_for(2.9) == 2.0
    assert store.level_for(3.0) == 4.0  # a tie goes to the larger sigma
    assert store.level_for(100) == 4.0
    assert np.array_equal(store.load_level(3.9), store.load_level(4.0))


def test_iter_batches_follow_indices(tmp_path, small_shards):
    levels = write_store(tmp_path / "s.zarr")
    store = ImageStore.open(tmp_path / "s.zarr")
    idx = [7, 2, 2, 9, 0]
    batches = list(store.iter_batches(2.0, idx, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert np.array_equal(np.concatenate(batches), levels[2.0][idx])
    assert np.array_equal(np.concatenate(list(store.iter_batches(2.0))), levels[2.0])
    with pytest.raises(HollyError, match="out of range"):
        next(store.iter_batches(2.0, [10]))


def test_open_errors(tmp_path):
    with pytest.raises(HollyError, match="does not exist"):
        ImageStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(HollyError, match="not a Zarr v3 store"):
        ImageStore.open(tmp_path / "plain")
    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    with pytest.raises(HollyError, match="not a holly image store"):
        ImageStore.open(tmp_path / "other.zarr")
    write_store(tmp_path / "s.zarr")
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    g.attrs["holly"] = {**g.attrs["holly"], "format_version": 99}
    with pytest.raises(HollyError, match="format_version 99"):
        ImageStore.open(tmp_path / "s.zarr")


def test_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError):
        with StoreWriter(out, n_images=4, height=H, width=W, sigmas=[1.0]) as w:
            w.write_level(1.0, [np.zeros((4, H, W))])
            raise RuntimeError("interrupted")
    with pytest.raises(ValueError, match="3 images written, expected 4"):
        with StoreWriter(out, n_images=4, height=H, width=W, sigmas=[1.0]) as w:
            w.write_level(1.0, [np.zeros((3, H, W))])
    with StoreWriter(out, n_images=4, height=H, width=W, sigmas=[1.0]) as w:
        w.write_level(1.0, [np.zeros((4, H, W))])  # no commit: abandoned
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_and_overwrites_when_asked(tmp_path):
    write_store(tmp_path / "s.zarr")
    with pytest.raises(HollyError, match="already exists"):
        StoreWriter(tmp_path / "s.zarr", n_images=1, height=H, width=W, sigmas=[1.0])
    with StoreWriter(
        tmp_path / "s.zarr", n_images=2, height=H, width=W, sigmas=[1.0], overwrite=True
    ) as w:
        w.write_level(1.0, [np.ones((2, H, W))])
        w.write_array("particle_id", np.zeros(2, np.int32))
        w.commit(
            base_attrs(
                n_images=2,
                height=H,
                width=W,
                sigmas=[1.0],
                orientation={},
                source={},
                params={"n": np.int64(2)},
            )
        )
    store = ImageStore.open(tmp_path / "s.zarr")
    assert store.sigmas == [1.0] and store.attrs["params"] == {"n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_split_by_particle_no_leakage_and_reproducible():
    ids = np.repeat(np.arange(50), 10)
    np.random.default_rng(3).shuffle(ids)
    train, test = split_by_particle(ids, 0.2, seed=7)
    assert np.intersect1d(ids[train], ids[test]).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(ids.size))
    assert np.unique(ids[test]).size == 10 and test.size == 100
    again = split_by_particle(ids, 0.2, seed=7)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    other = split_by_particle(ids, 0.2, seed=8)
    assert not np.array_equal(other[1], test)


def test_split_by_particle_edges():
    ids = np.repeat(np.arange(3), 4)
    assert split_by_particle(ids, 0.0, 0)[1].size == 0
    assert np.unique(ids[split_by_particle(ids, 0.01, 0)[1]]).size == 1  # at least one
    assert split_by_particle(np.zeros(5), 0.5, 0)[1].size == 0  # one particle: all train
    with pytest.raises(HollyError, match="test_fraction"):
        split_by_particle(ids, 1.0, 0)


def edit_attrs(path, **changes):
    import json

    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["holly"].update(changes)
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"levels": {"sigma_4.00": 4.0, "sigma_2.00": 2.0, "sigma_0.00": 0.0}}, "sigma_0.00"),
        ({"levels": {"sigma_4.00": 4.0, "sigma_2.00": 2.0, "sigma_-1.00": -1.0}}, "positive"),
        ({"levels": {"sigma_4.00": 4.0, "sigma_2.00": "two"}}, "positive"),
        ({"sigmas": [4.0, 2.0]}, "disagree"),
        ({"sigmas": [4.0, 2.0, 0.0]}, "disagree"),
        ({"levels": {"sigma_4.00": 4.0, "sigma_2.00": 2.0}, "sigmas": [4.0, 2.0]}, "level arrays"),
        ({"n_images": 0}, "n_images"),
        ({"height": "8"}, "height"),
        ({"levels": {}}, "levels"),
    ],
)
def test_bad_store_attributes_are_errors_on_open(tmp_path, changes, words):
    write_store(tmp_path / "s.zarr", sigmas=(4.0, 2.0, 1.41))
    edit_attrs(tmp_path / "s.zarr", **changes)
    with pytest.raises(HollyError, match="zarr.json") as err:
        ImageStore.open(tmp_path / "s.zarr")
    assert words in str(err.value)


def test_a_level_array_whose_sigma_disagrees_with_its_name(tmp_path):
    write_store(tmp_path / "s.zarr", sigmas=(4.0, 2.0))
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    g[level_name(2.0)].attrs["sigma_px"] = 0.0
    with pytest.raises(HollyError, match="sigma_px 0.0"):
        ImageStore.open(tmp_path / "s.zarr")


def test_a_missing_particle_id_chunk_is_an_error(tmp_path):
    write_store(tmp_path / "s.zarr", sigmas=(2.0,))
    lost = tmp_path / "s.zarr" / "particle_id" / "c" / "0"
    lost.unlink()
    with pytest.raises(HollyError, match="is missing") as err:
        ImageStore.open(tmp_path / "s.zarr")
    assert str(lost) in str(err.value)
