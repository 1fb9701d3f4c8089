"""Direct shard reads (holly/shardreader.py) against zarr's own reads, bit for bit."""

import numpy as np
import pytest
import zarr

import holly.imagestore as imagestore
from holly.errors import HollyError
from holly.imagestore import ImageStore, StoreWriter, base_attrs, level_name
from holly.shardreader import shard_reader

H, W, N = 8, 6, 11  # 4 images per shard (fixture): 3 shards, the last one partial


@pytest.fixture
def store_path(tmp_path, monkeypatch):
    monkeypatch.setattr(imagestore, "SHARD_BYTES", 4 * H * W * 4)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((N, H, W)).astype(np.float32)
    images[5] = 0.0  # equal to the fill value: zarr does not write its chunk
    path = tmp_path / "s.zarr"
    with StoreWriter(path, n_images=N, height=H, width=W, sigmas=[2.0]) as w:
        w.write_level(2.0, [images[:7], images[7:]])
        w.write_array("particle_id", np.arange(N, dtype=np.int32))
        w.commit(
            base_attrs(
                n_images=N, height=H, width=W, sigmas=[2.0],
                orientation=imagestore.ORIENTATION, source={}, params={},
            )
        )  # fmt: skip
    return path


def zarr_read(path, indices):
    arr = zarr.open_group(path, mode="r")[level_name(2.0)]
    uniq, inverse = np.unique(indices, return_inverse=True)
    return np.asarray(arr.get_orthogonal_selection((uniq, slice(None), slice(None))))[inverse]


def level_array(path):
    return zarr.open_group(path, mode="r")[level_name(2.0)]


def test_reads_every_image_as_zarr_does(store_path):
    reader = shard_reader(level_array(store_path))
    assert reader is not None and reader.per_shard == 4
    assert reader.index(1)[1, 0] == 2**64 - 1  # image 5's chunk is absent from its shard
    everything = np.arange(N)
    assert np.array_equal(reader.read(everything), zarr_read(store_path, everything))
    rng = np.random.default_rng(1)
    for _ in range(5):  # random order, duplicates, across shards
        idx = rng.integers(0, N, 17)
        got = reader.read(idx)
        assert got.dtype == np.float32 and got.shape == (17, H, W)
        assert np.array_equal(got, zarr_read(store_path, idx))
    assert not reader.read(np.array([5])).any()


def test_iter_batches_uses_it_and_matches_zarr(store_path, monkeypatch):
    store = ImageStore.open(store_path)
    idx = np.array([10, 0, 5, 5, 3, 9, 1])
    fast = np.concatenate(list(store.iter_batches(2.0, idx, batch_size=3)))
    assert store._readers[2.0] is not None
    monkeypatch.setattr(ImageStore, "_reader", lambda self, sigma, arr: None)
    slow = np.concatenate(list(ImageStore.open(store_path).iter_batches(2.0, idx, batch_size=3)))
    assert np.array_equal(fast, slow)
    assert np.array_equal(fast, zarr_read(store_path, idx))


def test_damaged_shard_index_is_an_error_naming_the_file(store_path):
    shard = store_path / level_name(2.0) / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index: its checksum no longer matches
    shard.write_bytes(bytes(data))
    with pytest.raises(HollyError, match="checksum") as err:
        shard_reader(level_array(store_path)).read(np.array([0]))
    assert str(shard) in str(err.value)


def test_truncated_shard_is_an_error_naming_the_file(store_path):
    shard = store_path / level_name(2.0) / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(HollyError, match="truncated") as err:
        shard_reader(level_array(store_path)).read(np.array([1]))
    assert str(shard) in str(err.value)


def test_undecodable_chunk_is_an_error_naming_the_file(store_path):
    reader = shard_reader(level_array(store_path))
    offset, nbytes = (int(x) for x in reader.index(0)[2])
    shard = store_path / level_name(2.0) / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[offset : offset + 16] = bytes(16)  # image 2's Blosc header is gone; index still fine
    shard.write_bytes(bytes(data))
    with pytest.raises(HollyError, match="image 2 cannot be decoded") as err:
        shard_reader(level_array(store_path)).read(np.array([2]))
    assert str(shard) in str(err.value)


def test_other_layouts_are_read_through_zarr(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((6, H, W), dtype=np.float32)
    for name, kwargs in {
        "unsharded": {"chunks": (1, H, W)},
        "two per chunk": {"chunks": (2, H, W), "shards": (4, H, W)},
        "float64": {"chunks": (1, H, W), "shards": (2, H, W), "dtype": "float64"},
    }.items():
        group = zarr.open_group(tmp_path / f"{name}.zarr", mode="w", zarr_format=3)
        arr = group.create_array("a", shape=images.shape, dtype=kwargs.pop("dtype", "float32"),
                                 **kwargs)  # fmt: skip
        arr[:] = images
        assert shard_reader(arr) is None, name
