"""Fast random reads of single images from an image-store level (Zarr v3 shards, read directly).

An image-store level (:mod:`holly.data.imagestore`) is a float32 ``[N, H, W]`` Zarr v3 array with
one image per inner chunk, packed into shard files (``c/<s>/0/0``, ~64 MiB each). Streaming
training reads 32 random images per step. Through zarr 3.1 that costs 0.6–0.8 ms of CPU per
image (measured: the per-chunk machinery of its codec pipeline), of which decoding the chunk
is 0.07 ms. On a 2-core CPU that alone made streaming ~35 % slower than preloading.

:class:`ShardReader` reads those chunks itself, following the Zarr v3 sharding specification
(``sharding_indexed`` codec, index at the end of the shard): the shard index, ``n`` pairs of
little-endian uint64 ``(offset, nbytes)`` followed by its CRC32C, is read and checked once per
shard and cached; each image is then one ``pread`` of its chunk and one Blosc decode. A pair of
``2**64 - 1`` marks a chunk that was never written: zarr skips chunks equal to the fill value
unless told otherwise, which stores written before ``every_chunk_stored`` did for all-zero
images, so there it reads as the fill value; in a store that stores every chunk
(:class:`holly.data.imagestore.StoreWriter` now) it is damage and an error. A missing shard file is
always an error naming it: the fill value never stands in for data that was lost.

It accepts only the exact layout that :class:`holly.data.imagestore.StoreWriter` writes (checked
from the array's metadata by :func:`shard_reader`); for anything else ``shard_reader`` returns
``None`` and the caller reads through zarr. tests/test_shardreader.py checks it against zarr's
own reads, image for image and bit for bit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from holly.errors import HollyError

log = logging.getLogger(__name__)

EMPTY = 2**64 - 1  # offset and nbytes of a chunk absent from its shard
CRC_BYTES = 4


class ShardReader:
    """Random access to the images of one sharded level array on a local disk."""

    def __init__(
        self,
        root: Path,
        shape: tuple,
        per_shard: int,
        fill_value: float,
        codec,
        strict: bool = False,
    ):
        self.root = Path(root)
        self.strict = bool(strict)  # an absent chunk is an error (the store stores every chunk)
        self.n_images, self.height, self.width = (int(x) for x in shape)
        self.per_shard = int(per_shard)
        self.fill_value = np.float32(fill_value)
        self.codec = codec  # numcodecs Blosc: decodes one chunk's bytes
        self._index: dict[int, np.ndarray] = {}  # shard -> [per_shard, 2] uint64

    def shard_path(self, shard: int) -> Path:
        return self.root / "c" / str(shard) / "0" / "0"

    def index(self, shard: int) -> np.ndarray:
        """The ``[per_shard, 2]`` (offset, nbytes) table of a shard, read and verified once."""
        table = self._index.get(shard)
        if table is None:
            table = self._read_index(shard)
            self._index[shard] = table
        return table

    def _read_index(self, shard: int) -> np.ndarray:
        import google_crc32c

        path = self.shard_path(shard)
        size = self.per_shard * 16 + CRC_BYTES
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() < size:
                    raise HollyError(f"{path} is truncated (shorter than its shard index)")
                fh.seek(-size, os.SEEK_END)
                raw = fh.read(size)
        except FileNotFoundError:
            raise HollyError(
                f"{path} is missing: the image store lost a shard file (deleted, or not "
                "copied); copy the store again or re-create it"
            ) from None
        body, crc = raw[:-CRC_BYTES], raw[-CRC_BYTES:]
        if np.uint32(google_crc32c.value(body)).tobytes() != crc:
            raise HollyError(
                f"{path}: the shard index fails its checksum (the file is damaged); "
                "re-create the image store"
            )
        return np.frombuffer(body, dtype="<u8").reshape(self.per_shard, 2)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images ``indices`` (any order, duplicates allowed) → ``[len(indices), H, W]`` float32."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.height, self.width), dtype=np.float32)
        shards = indices // self.per_shard
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            self._read_shard(int(shard), indices[rows], out, rows)
        return out

    def _read_shard(self, shard: int, images: np.ndarray, out: np.ndarray, rows: np.ndarray):
        table = self.index(shard)
        path = self.shard_path(shard)
        expected = self.height * self.width * 4
        fd = os.open(path, os.O_RDONLY) if (table[:, 0] != EMPTY).any() else None
        try:
            for image, row in zip(images, rows, strict=True):
                offset, nbytes = (int(x) for x in table[image - shard * self.per_shard])
                if offset == EMPTY and nbytes == EMPTY:
                    if self.strict:
                        raise HollyError(
                            f"{path}: image {image} is absent from its shard (the file is "
                            "damaged); re-create the image store"
                        )
                    out[row] = self.fill_value  # an all-zero image of an older store
                    continue
                data = os.pread(fd, nbytes, offset)
                if len(data) != nbytes:
                    raise HollyError(f"{path} is truncated (image {image} lies past its end)")
                try:
                    raw = self.codec.decode(data)
                except RuntimeError as exc:  # numcodecs: "error during blosc decompression"
                    raise HollyError(
                        f"{path}: image {image} cannot be decoded ({exc}): the file is "
                        "damaged; re-create the image store"
                    ) from exc
                if len(raw) != expected:
                    raise HollyError(
                        f"{path}: image {image} decodes to {len(raw)} bytes, not "
                        f"{expected}; re-create the image store"
                    )
                out[row] = np.frombuffer(raw, dtype="<f4").reshape(self.height, self.width)
        finally:
            if fd is not None:
                os.close(fd)


def shard_reader(arr, strict: bool = False) -> ShardReader | None:
    """A :class:`ShardReader` for a zarr array in StoreWriter's layout, else ``None``.

    ``strict``: the store stores every chunk, so a chunk absent from its shard is an error.

    The layout: a local store, float32 little-endian ``[N, H, W]``, the default ``/`` chunk
    key encoding, and one ``sharding_indexed`` codec with inner chunks ``(1, H, W)``, inner codecs
    bytes (little-endian) + Blosc, index codecs bytes (little-endian) + crc32c, index at the end.
    """
    try:
        return _shard_reader(arr, strict)
    except (AttributeError, TypeError, ValueError, ImportError) as exc:
        log.debug("no direct shard reads for %s (%s): reading through zarr", arr, exc)
        return None


def _shard_reader(arr, strict: bool) -> ShardReader | None:
    import numcodecs
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.storage import LocalStore

    meta = arr.metadata
    if not isinstance(arr.store, LocalStore) or len(arr.shape) != 3:
        return None
    n, h, w = arr.shape
    encoding = meta.chunk_key_encoding
    if getattr(encoding, "name", None) != "default" or encoding.separator != "/":
        return None
    if np.dtype(arr.dtype) != np.dtype("<f4") or len(meta.codecs) != 1:
        return None
    sharding = meta.codecs[0]
    if not isinstance(sharding, ShardingCodec) or tuple(sharding.chunk_shape) != (1, h, w):
        return None
    if sharding.index_location.value != "end":
        return None
    inner, index = sharding.codecs, sharding.index_codecs
    little = "little"
    if not (
        len(inner) == 2
        and isinstance(inner[0], BytesCodec)
        and getattr(inner[0].endian, "value", None) == little
        and isinstance(inner[1], BloscCodec)
        and len(index) == 2
        and isinstance(index[0], BytesCodec)
        and getattr(index[0].endian, "value", None) == little
        and isinstance(index[1], Crc32cCodec)
    ):
        return None
    shard_shape = tuple(meta.chunk_grid.chunk_shape)
    if shard_shape[1:] != (h, w):
        return None
    root = Path(arr.store.root) / arr.path
    codec = numcodecs.Blosc()
    return ShardReader(root, (n, h, w), shard_shape[0], meta.fill_value, codec, strict)
