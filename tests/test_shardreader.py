"""Direct shard reads (holly/data/shardreader.py) against zarr's own reads, bit for bit."""

import numpy as np
import pytest
import zarr

import holly.data.imagestore as imagestore
from holly.data.imagestore import ImageStore, StoreWriter, base_attrs, level_name
from holly.data.shardreader import shard_reader
from holly.errors import HollyError

H, W, N = 8, 6, 11  # 4 images per shard (fixture): 3 shards, the last one partial


@pytest.fixture
def store_path(tmp_path, monkeypatch):
    monkeypatch.setattr(imagestore, "SHARD_BYTES", 4 * H * W * 4)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((N, H, W)).astype(np.float32)
    images[5] = 0.0  # equal to the fill value: stored all the same (write_empty_chunks)
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
    assert reader.index(1)[1, 0] != 2**64 - 1  # image 5's all-zero chunk is in its shard
    assert reader.strict is False and shard_reader(level_array(store_path), strict=True).strict
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


def blank_chunk(path, shard, k):
    """Mark chunk ``k`` of a shard absent in its index (CRC fixed): what zarr did for an
    all-zero image before stores stored every chunk, or a damaged store now."""
    import google_crc32c

    per_shard = 4
    data = bytearray(path.read_bytes())
    start = len(data) - per_shard * 16 - 4
    index = np.frombuffer(bytes(data[start:-4]), dtype="<u8").copy().reshape(per_shard, 2)
    index[k] = 2**64 - 1
    body = index.tobytes()
    data[start:] = body + np.uint32(google_crc32c.value(body)).tobytes()
    path.write_bytes(bytes(data))


def test_an_absent_chunk_is_an_error_in_stores_that_store_every_chunk(store_path):
    store = ImageStore.open(store_path)
    assert store.attrs["every_chunk_stored"] is True
    blank_chunk(store_path / level_name(2.0) / "c" / "1" / "0" / "0", 1, 1)  # image 5
    with pytest.raises(HollyError, match="image 5 is absent from its shard"):
        next(ImageStore.open(store_path).iter_batches(2.0, [4, 5]))
    # a store written before every chunk was stored: an absent chunk was an all-zero image
    group = zarr.open_group(store_path, mode="r+")
    group.attrs["holly"] = {
        k: v for k, v in group.attrs["holly"].items() if k != "every_chunk_stored"
    }
    block = next(ImageStore.open(store_path).iter_batches(2.0, [4, 5]))
    assert not block[1].any() and block[0].any()


@pytest.mark.parametrize("shard", [0, 2])
def test_a_missing_shard_file_is_an_error_naming_it(store_path, shard):
    store = ImageStore.open(store_path)  # opened before the file goes: reads must still fail
    lost = store_path / level_name(2.0) / "c" / str(shard) / "0" / "0"
    lost.unlink()
    image = 4 * shard
    with pytest.raises(HollyError, match="is missing") as err:  # streaming: direct reads
        next(store.iter_batches(2.0, [image]))
    assert str(lost) in str(err.value)
    with pytest.raises(HollyError, match="is missing") as err:  # whole level, through zarr
        store.load_level(2.0)
    assert str(lost) in str(err.value)
    with pytest.raises(HollyError, match="is missing") as err:  # and on open
        ImageStore.open(store_path)
    assert str(lost) in str(err.value)


@pytest.mark.parametrize("preload", [True, False])
def test_training_reads_never_turn_a_lost_shard_into_zeros(store_path, preload):
    import torch

    from holly.data.realdata import StoreSplit

    split = StoreSplit(ImageStore.open(store_path), np.arange(N), preload, torch.device("cpu"))
    lost = store_path / level_name(2.0) / "c" / "1" / "0" / "0"
    lost.unlink()
    idx = torch.tensor([0, 5, 9])
    if not preload:  # the read-ahead thread's error reaches the training loop
        split.plan(lambda k: (idx, 2.0), 0, 2)
    with pytest.raises(HollyError, match="is missing") as err:
        split.images(idx, 2.0)
    assert str(lost) in str(err.value)
    split.close()


@pytest.mark.parametrize("preload", [True, False])
def test_train_on_a_store_with_a_lost_shard_is_one_error_line(tmp_path, capsys, preload):
    import json

    from test_outputs import write_store

    from holly.cli import main

    store = write_store(tmp_path / "s.zarr", n=8, size=8)
    lost = next((store / level_name(2.0) / "c").rglob("0"))
    while lost.is_dir():
        lost = next(lost.iterdir())
    lost.unlink()
    cfg = {
        "data": {"source": "zarr", "store": str(store), "preload": preload},
        "render": {"height": 8, "width": 8},
        "sigma": {"values": [2.0]},
        "train": {"max_steps": 1, "batch_size": 2, "test_images": 1},
    }
    out = tmp_path / "run"
    assert main(["train", "--config-json", json.dumps(cfg), "--out", str(out)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(lost) in lines[0] and "is missing" in lines[0], lines
    assert not out.exists()
