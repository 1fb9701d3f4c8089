"""The image store: stacks of 2D images at several Gaussian sigma levels, as one Zarr v3 group.

Written by ``holly ingest`` (pre-rendered FITS folders) and ``holly localise`` (localisation
tables rendered by holly itself); read by training on real data.

Layout (``format_version`` 1)::

    STORE.zarr/
      zarr.json              group; attributes["holly"] = provenance (below)
      sigma_10.00/           float32 [N, H, W], one level per sigma (sigma in pixels, 2 decimals)
      sigma_9.00/ ...        chunks (1, H, W), shards of ~64 MiB, Blosc zstd-5 bitshuffle,
                             dimension_names ["sample", "y", "x"], attributes {"sigma_px": 10.0}
      particle_id/           int32 [N]: the particle each image shows (its copies share it)
      source_index/          int32 [N], ingest only: number of the FITS file the image came from
      source_md5/            uint8 [L, N, 16], ingest only: md5 of image i's FITS file at level l
      rotation_angle/        float32 [N], localise only: in-plane rotation of the copy, radians

Every level holds the same N images in the same order: image ``i`` of every level shows the same
particle in the same pose, only blurred differently.

Orientation: stored images use the renderer's convention (:mod:`holly.method.render`): row 0 is the
top of the image and model +y points up, so a stored image can be compared with a rendering pixel
for pixel. How the source was mapped onto this is recorded in
``attributes["holly"]["orientation"]``.

Root attributes ``holly``: ``format_version``, ``kind`` ("image-store"), ``n_images``,
``height``, ``width``, ``sigmas`` (descending), ``levels`` (name -> sigma), ``orientation``,
``source`` (what the images came from, with checksums), ``holly_version``, ``created``
(ISO-8601, UTC), ``params`` (the options the store was made with), ``nm_per_px`` (nm per image
pixel, null where the source gives no physical scale; :attr:`ImageStore.nm_per_px`),
``every_chunk_stored`` (true: :class:`StoreWriter` stores every chunk, all-zero images too, so an
absent one is damage; absent in older stores) and, for ingest, ``skipped``.

Opening a store checks its attributes (sizes, positive sigma levels that agree with ``sigmas``
and with the level arrays) and that every chunk file is there: zarr would read a lost shard as
its fill value, zeros that look like data.

Stores are written into a hidden sibling directory and renamed into place only when complete
(:class:`StoreWriter`), so a store at the requested path is always finished.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from holly import __version__
from holly.atomic import refuse_inputs
from holly.errors import HollyError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ATTR_KEY = "holly"
KIND = "image-store"  # attributes["holly"]["kind"] of a store
EXPORT_KIND = "ome-zarr-export"  # ... of an OME-Zarr export (holly.data.ingest.export_ome_zarr)
DIMENSION_NAMES = ("sample", "y", "x")
SHARD_BYTES = 64 * 2**20  # ~64 MiB per shard: few files on HPC file systems, cheap partial reads

ORIENTATION = {
    "row0": "top",
    "y_axis": "up",
    # the stored attribute names the renderer by its module path when stores were first written
    # (now holly.method.render); it is part of the store format, so it stays as written then
    "convention": "holly.render: row 0 is the top row, model +y points up (row = H/2 - H/4 y)",
}


def is_holly_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr group that holly wrote: an image store (``attributes["holly"]``
    of kind ``image-store``) or an OME-Zarr export of one (``attributes["holly"]`` with
    ``exported_from``; exports before the ``kind`` key have it too). This is the marker that
    ``--force`` needs: it replaces only such a store, never a user's own Zarr folder."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {}).get(ATTR_KEY)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False
    if not isinstance(attrs, dict):
        return False
    return attrs.get("kind") in (KIND, EXPORT_KIND) or "exported_from" in attrs


def guard_output(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike], overwrite: bool
) -> Path:
    """Check that writing a store at ``out`` replaces only what ``--force`` promises.

    ``out`` must not exist unless ``overwrite``; even then it must be a store that holly wrote
    (:func:`is_holly_store`) or an empty folder, and never an input, a folder holding one or a
    path inside one (:func:`holly.atomic.refuse_inputs`: ``--out .`` beside the data, ``--out``
    set to the input's parent, or the input file itself), nor the current folder or one above it.

    Raises
    ------
    HollyError
        Naming ``out`` and what it would have destroyed.
    """
    out = Path(out)
    refuse_inputs({"--out": out}, inputs)
    if out.exists() or out.is_symlink():
        cwd = Path.cwd().resolve()
        target = out.resolve()
        if target == cwd or target in cwd.parents:
            raise HollyError(
                f"--out {out} is the current folder or one above it; holly writes a store as "
                "a new folder: give its path, e.g. --out images.zarr"
            )
    if not out.exists() and not out.is_symlink():
        return out
    if not overwrite:
        raise HollyError(f"{out} already exists; remove it or pass --force")
    if out.is_symlink() or not out.is_dir():
        raise HollyError(
            f"{out} exists and is not a folder; --force replaces only a store holly wrote, "
            "never other files: remove it yourself or choose another --out"
        )
    if (out / "zarr.json").is_file() and not is_holly_store(out):
        raise HollyError(
            f"{out} is a Zarr store that holly did not write (its zarr.json has no "
            f"attributes['{ATTR_KEY}'] of a holly store); --force replaces only holly's own "
            "stores: remove it yourself or choose another --out"
        )
    if not (out / "zarr.json").is_file() and any(out.iterdir()):
        raise HollyError(
            f"{out} exists and is not a Zarr store; --force replaces only a store, never other "
            "files or folders: remove it yourself or choose another --out"
        )
    return out


def level_name(sigma: float) -> str:
    """Array name of the level for ``sigma`` pixels, e.g. ``sigma_10.00``."""
    return f"sigma_{float(sigma):.2f}"


def shard_images(height: int, width: int, n_images: int) -> int:
    """Images per shard: ~:data:`SHARD_BYTES` of float32, at most ``n_images``, at least 1."""
    per_image = height * width * 4
    return max(1, min(n_images, SHARD_BYTES // per_image))


def compressor():
    """The codec of every image array holly writes (the store's levels, OME-Zarr exports)."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


class ImageStore:
    """Read access to an image store.

    Use :meth:`open`. Levels are addressed by sigma in pixels; :meth:`level_for` maps any sigma
    to the nearest stored one.
    """

    def __init__(self, path: Path, group: Any, attrs: dict):
        self.path = path
        self.group = group
        self.attrs = attrs
        _check_attrs(path, attrs)
        self._levels = {float(s): name for name, s in attrs["levels"].items()}
        self._warned: set[float] = set()  # levels already reported as far from the request
        self._readers: dict[float, Any] = {}  # level -> ShardReader or None (read through zarr)

    @classmethod
    def open(cls, path: str | os.PathLike) -> ImageStore:
        """Open a store for reading.

        Raises
        ------
        HollyError
            The path is missing, is not a Zarr group, is not a holly image store, was written by
            a newer holly, or its arrays disagree with its attributes.
        """
        import zarr

        path = Path(path)
        if not path.exists():
            raise HollyError(
                f"image store {path} does not exist; make one with holly ingest or holly localise"
            )
        if not (path / "zarr.json").is_file():
            raise HollyError(
                f"{path} is not a Zarr v3 store (no zarr.json); make one with "
                "holly ingest or holly localise"
            )
        try:
            group = zarr.open_group(path, mode="r")
        except Exception as exc:
            raise HollyError(f"cannot open {path} as a Zarr group: {exc}") from exc
        attrs = group.attrs.get(ATTR_KEY)
        if not isinstance(attrs, dict) or attrs.get("kind") != KIND:
            raise HollyError(
                f"{path} is a Zarr group but not a holly image store "
                f"(no attributes['{ATTR_KEY}'] of kind 'image-store')"
            )
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise HollyError(
                f"{path} has image store format_version {version!r}; this holly "
                f"reads version {FORMAT_VERSION}; re-create the store"
            )
        store = cls(path, group, attrs)
        store._check()
        return store

    def _check(self) -> None:
        expected = (self.n_images, self.height, self.width)
        stored = sorted(k for k in self.group.array_keys() if k.startswith("sigma_"))
        if stored != sorted(self._levels.values()):
            raise HollyError(
                f"{self.path / 'zarr.json'}: attributes['{ATTR_KEY}']['levels'] lists "
                f"{len(self._levels)} levels {sorted(self._levels.values())} but the store holds "
                f"{len(stored)} level arrays {stored}; the store is damaged, re-create it"
            )
        for name in [*self._levels.values(), "particle_id"]:
            try:
                arr = self.group[name]
            except KeyError:
                raise HollyError(
                    f"{self.path}: array {name!r} is missing; the store is damaged, re-create it"
                ) from None
            shape = expected if name != "particle_id" else expected[:1]
            if tuple(arr.shape) != shape:
                raise HollyError(
                    f"{self.path}: array {name!r} has shape {tuple(arr.shape)}, "
                    f"expected {shape}; the store is damaged, re-create it"
                )
            sigma_px = arr.attrs.get("sigma_px") if name != "particle_id" else None
            if sigma_px is not None and level_name(sigma_px) != name:
                raise HollyError(
                    f"{self.path}: array {name!r} says sigma_px {sigma_px}, not the sigma of its "
                    "name; the store is damaged, re-create it"
                )
        for name in self.group.array_keys():
            _check_chunk_files(self.path, self.group[name])

    # ------------------------------------------------------------------ properties
    @property
    def n_images(self) -> int:
        return int(self.attrs["n_images"])

    @property
    def height(self) -> int:
        return int(self.attrs["height"])

    @property
    def width(self) -> int:
        return int(self.attrs["width"])

    @property
    def sigmas(self) -> list[float]:
        """Stored sigma levels in pixels, largest first."""
        return sorted(self._levels, reverse=True)

    @property
    def nm_per_px(self) -> float | None:
        """Nanometres per image pixel, or None where the store's source did not give a scale
        (stores written before this attribute existed read as None)."""
        value = self.attrs.get("nm_per_px")
        return None if value is None else float(value)

    @property
    def precision_px(self) -> float | None:
        """Median localisation precision in pixels that ``holly localise`` recorded (from the
        table's sigma_xy), or None: no such column, or a store written before it was recorded."""
        value = (self.attrs.get("precision") or {}).get("median_px")
        return None if value is None else float(value)

    @property
    def nm_per_model_unit(self) -> float | None:
        """Nanometres per model unit (one model unit is ``height / 4`` pixels), or None."""
        nm = self.nm_per_px
        return None if nm is None else nm * self.height / 4

    @property
    def particle_ids(self) -> np.ndarray:
        """``[N] int32``: particle of each image; use with :func:`split_by_particle`."""
        return np.asarray(self.group["particle_id"][:])

    def array(self, name: str) -> np.ndarray:
        """Any per-image array of the store by name (e.g. ``source_index``), read whole."""
        if name not in self.group:
            raise HollyError(f"{self.path} has no array {name!r}")
        return np.asarray(self.group[name][:])

    # ------------------------------------------------------------------ levels
    def level_for(self, sigma: float) -> float:
        """The stored sigma nearest to ``sigma`` (absolute difference; a tie goes to the larger).

        Training schedules ask for sigmas such as ``1.414`` while a store holds ``1.41``; the
        nearest level is used, and a warning is logged when it differs by more than 5 %.
        """
        levels = self.sigmas  # descending, so argmin picks the larger sigma of a tie
        diffs = np.abs(np.asarray(levels) - float(sigma))
        best = levels[int(np.argmin(diffs))]
        # A continuous schedule asks for a new sigma every step: report each level once.
        if abs(best - sigma) > 0.05 * max(abs(sigma), 1e-12) and best not in self._warned:
            self._warned.add(best)
            log.warning(
                "%s: no level near sigma %.3g; using the nearest, %.3g", self.path, sigma, best
            )
        return best

    def _level(self, sigma: float):
        return self.group[self._levels[self.level_for(sigma)]]

    def load_level(self, sigma: float) -> np.ndarray:
        """Read the whole level nearest to ``sigma`` into memory.

        Returns
        -------
        ndarray [N, H, W] float32
            ``N * H * W * 4`` bytes (about 1.9 GB for the CEP152 data, 29 040 images).
        """
        arr = self._level(sigma)
        _check_chunk_files(self.path, arr)  # zarr would read a lost shard as zeros
        return np.asarray(arr[:])

    def iter_batches(
        self, sigma: float, indices: Sequence[int] | np.ndarray | None = None, batch_size: int = 64
    ) -> Iterator[np.ndarray]:
        """Stream images of the level nearest to ``sigma`` from disk, ``batch_size`` at a time.

        Parameters
        ----------
        sigma : float
            Pixels; the nearest stored level is used.
        indices : sequence of int, optional
            Images to read, in the order wanted (duplicates allowed); default all, in order.
        batch_size : int

        Yields
        ------
        ndarray [b, H, W] float32
            Consecutive slices of ``indices``, ``b <= batch_size``. Only one batch is in memory.
        """
        if batch_size < 1:
            raise HollyError(f"batch_size must be >= 1, not {batch_size}")
        arr = self._level(sigma)
        idx = np.arange(self.n_images) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise HollyError("indices must be one-dimensional")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_images):
            raise HollyError(f"image index out of range 0..{self.n_images - 1} in {self.path}")
        reader = self._reader(sigma, arr)
        if reader is None:
            _check_chunk_files(self.path, arr)  # zarr would read a lost shard as zeros
        for start in range(0, idx.size, batch_size):
            part = idx[start : start + batch_size]
            if reader is not None:  # direct shard reads: ~10x less CPU (holly/data/shardreader.py)
                yield reader.read(part)
                continue
            # zarr wants increasing, unique coordinates for an orthogonal selection
            uniq, inverse = np.unique(part, return_inverse=True)
            block = arr.get_orthogonal_selection((uniq, slice(None), slice(None)))
            yield np.asarray(block)[inverse]

    def _reader(self, sigma: float, arr):
        """The level's direct shard reader (None where its layout is not StoreWriter's)."""
        from holly.data.shardreader import shard_reader

        level = self.level_for(sigma)
        if level not in self._readers:
            strict = self.attrs.get("every_chunk_stored") is True
            self._readers[level] = shard_reader(arr, strict=strict)
        return self._readers[level]

    def source_manifest(self) -> list[str]:
        """Ingested stores: ``md5sum -c`` lines (``<md5>  <folder>/<file>``) of the FITS inputs."""
        if "source_md5" not in self.group:
            return []
        arr = self.group["source_md5"]
        folders = arr.attrs["folders"]
        names = arr.attrs["file_names"]
        digests = np.asarray(arr[:])
        return [
            f"{bytes(digests[lv, i]).hex()}  {folder}/{names[i]}"
            for lv, folder in enumerate(folders)
            for i in range(len(names))
        ]

    def __repr__(self) -> str:
        return (
            f"ImageStore({str(self.path)!r}, n_images={self.n_images}, "
            f"size={self.height}x{self.width}, sigmas={self.sigmas})"
        )


def _check_attrs(path: Path, attrs: dict) -> None:
    """The root attributes that reading relies on: sizes, and sigma levels that are positive,
    finite and the same in ``sigmas`` and ``levels``. HollyError naming the key otherwise."""
    where = f"{path / 'zarr.json'}: attributes['{ATTR_KEY}']"
    for key in ("n_images", "height", "width"):
        value = attrs.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HollyError(f"{where}['{key}'] is {value!r}, not a positive integer; re-create it")
    levels, sigmas = attrs.get("levels"), attrs.get("sigmas")
    if not isinstance(levels, dict) or not levels or not isinstance(sigmas, list):
        raise HollyError(f"{where} lacks its 'levels' and 'sigmas'; re-create the store")
    for name, sigma in levels.items():
        ok = isinstance(sigma, int | float) and not isinstance(sigma, bool)
        if not ok or not np.isfinite(sigma) or sigma <= 0:
            raise HollyError(
                f"{where}['levels']['{name}'] is {sigma!r}: every level's sigma must be a "
                "positive number of pixels; re-create the store"
            )
        if level_name(sigma) != name:
            raise HollyError(f"{where}['levels']: {name!r} holds sigma {sigma}; re-create it")
    if len(sigmas) != len(levels) or sorted(map(float, levels.values())) != sorted(
        float(s) for s in sigmas if isinstance(s, int | float)
    ):
        raise HollyError(
            f"{where}: 'sigmas' {sigmas} and 'levels' {list(levels.values())} disagree "
            f"({len(sigmas)} against {len(levels)} levels); re-create the store"
        )


def _check_chunk_files(path: Path, arr) -> None:
    """Every chunk (shard) file of a local zarr array exists: a lost one would read as the fill
    value, silently. HollyError naming the first missing file."""
    from zarr.storage import LocalStore

    if not isinstance(arr.store, LocalStore) or not arr.shape:
        return
    root = Path(arr.store.root) / arr.path
    shape, chunk_shape = arr.shape, arr.metadata.chunk_grid.chunk_shape
    grid = [range(-(-n // c)) for n, c in zip(shape, chunk_shape, strict=True)]
    for coords in itertools.product(*grid):
        chunk = root / arr.metadata.encode_chunk_key(coords)
        if not chunk.is_file():
            raise HollyError(
                f"{chunk} is missing: the image store {path} lost a chunk file (deleted, or "
                "not copied); copy the store again or re-create it"
            )


def split_by_particle(
    particle_ids: Sequence[int] | np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into train and test sets by particle.

    All images of one particle (its augmentation copies) land in the same set, so the test set
    holds only particles the model never saw.

    Parameters
    ----------
    particle_ids : array-like [N] of int
    test_fraction : float in [0, 1)
        Fraction of *particles* held out, rounded to the nearest count; at least one particle
        when ``test_fraction > 0`` and there are two or more particles.
    seed : int
        Same ids, fraction and seed give the same split on every platform.

    Returns
    -------
    train_idx, test_idx : ndarray [N_train], [N_test] of int64
        Sorted image indices.
    """
    ids = np.asarray(particle_ids)
    if ids.ndim != 1:
        raise HollyError("particle_ids must be one-dimensional")
    if not 0.0 <= test_fraction < 1.0:
        raise HollyError(f"test_fraction must be in [0, 1), not {test_fraction}")
    unique = np.unique(ids)  # sorted: the split does not depend on image order
    n_test = int(round(test_fraction * unique.size))
    if test_fraction > 0 and n_test == 0 and unique.size > 1:
        n_test = 1
    n_test = min(n_test, unique.size - 1) if unique.size > 1 else 0
    rng = np.random.default_rng(seed)
    test_particles = rng.permutation(unique)[:n_test]
    is_test = np.isin(ids, test_particles)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def base_attrs(
    *,
    n_images: int,
    height: int,
    width: int,
    sigmas: Iterable[float],
    orientation: dict,
    source: dict,
    params: dict,
    nm_per_px: float | None = None,
) -> dict:
    """The ``holly`` root attributes common to every store (callers add their own keys).

    ``nm_per_px``: physical size of one image pixel in nm, where the source gives it (a
    localisation table in nm, or in camera pixels of known size); None where it is unknown.
    """
    sigmas = sorted((float(s) for s in sigmas), reverse=True)
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "n_images": int(n_images),
        "height": int(height),
        "width": int(width),
        "sigmas": sigmas,
        "levels": {level_name(s): s for s in sigmas},
        "orientation": orientation,
        "source": source,
        "holly_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "params": params,
        "nm_per_px": None if nm_per_px is None else float(nm_per_px),
    }


def _attr_value(value: Any) -> Any:
    """Plain JSON types for Zarr attributes (NumPy scalars and arrays, paths converted).

    Not :func:`holly.atomic.jsonable` on purpose: this converts the whole value up front (tuples
    to lists, keys to str) before Zarr serialises it, which keeps the store's attributes byte for
    byte as they have always been written."""
    if isinstance(value, dict):
        return {str(k): _attr_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_attr_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _attr_value(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class StoreWriter:
    """Write an image store into a temporary sibling directory; rename into place on commit.

    Use as a context manager::

        with StoreWriter(out, n_images=N, height=H, width=W, sigmas=[10, 5]) as w:
            w.write_level(10, blocks)          # iterable of [k, H, W] arrays, N images in all
            w.write_level(5, blocks)
            w.write_array("particle_id", ids)
            w.commit(attrs)

    Leaving the block without :meth:`commit` (or with an exception) deletes the temporary
    directory, so nothing is left at ``out``. A process killed mid-write leaves only a hidden
    ``.<name>.partial-<id>`` directory beside ``out``.

    Parameters
    ----------
    out : path-like
        Final store path.
    n_images, height, width : int
    sigmas : iterable of float
        Levels to create (pixels); names must be distinct at two decimals.
    overwrite : bool
        Replace an existing store at ``out`` on commit (only one that holly wrote:
        :func:`guard_output`); otherwise an existing ``out`` is an error raised before any work
        is done.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        n_images: int,
        height: int,
        width: int,
        sigmas: Iterable[float],
        overwrite: bool = False,
    ):
        import zarr

        self.out = Path(out)
        guard_output(self.out, (), overwrite)  # only a store holly wrote may be replaced
        if n_images < 1:
            raise HollyError("an image store needs at least one image")
        self.overwrite = overwrite
        self.n_images, self.height, self.width = int(n_images), int(height), int(width)
        self.sigmas = sorted((float(s) for s in sigmas), reverse=True)
        names = [level_name(s) for s in self.sigmas]
        if len(set(names)) != len(names):
            raise HollyError(f"sigma levels {self.sigmas} are not distinct at two decimals")
        if not self.sigmas:
            raise HollyError("an image store needs at least one sigma level")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        self.shard = shard_images(self.height, self.width, self.n_images)
        self._done: set[str] = set()
        self._committed = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()

    def abort(self) -> None:
        """Delete the temporary directory (idempotent; nothing to do after a commit)."""
        if self._committed:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def level_array(self, sigma: float):
        """The (possibly partly written) array of a level, for reading back before commit."""
        return self.group[level_name(sigma)]

    def write_level(self, sigma: float, blocks: Iterable[np.ndarray]) -> None:
        """Write one level from consecutive image blocks.

        Blocks are buffered to whole shards, so each shard is encoded and written once whatever
        the block size; memory stays at about one shard plus one block.

        Parameters
        ----------
        sigma : float
            One of the writer's sigmas.
        blocks : iterable of ndarray [k, H, W]
            ``n_images`` images in all, in store order.
        """
        sigma = float(sigma)
        name = level_name(sigma)
        if sigma not in self.sigmas:
            raise ValueError(f"sigma {sigma} is not one of the writer's levels {self.sigmas}")
        if name in self._done:
            raise ValueError(f"level {name} written twice")
        arr = self.group.create_array(
            name,
            shape=(self.n_images, self.height, self.width),
            dtype="float32",
            chunks=(1, self.height, self.width),
            shards=(self.shard, self.height, self.width),
            compressors=compressor(),
            dimension_names=list(DIMENSION_NAMES),
            fill_value=0.0,
            # every image stored, zeros too: an absent chunk is then damage, never "all zero"
            config={"write_empty_chunks": True},
        )
        arr.attrs["sigma_px"] = sigma
        buffer = np.empty((self.shard, self.height, self.width), dtype=np.float32)
        filled = 0  # images in buffer
        written = 0  # images flushed to disk
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 3 or block.shape[1:] != (self.height, self.width):
                raise ValueError(
                    f"block shape {block.shape}, expected [k, {self.height}, {self.width}]"
                )
            pos = 0
            while pos < block.shape[0]:
                if written + filled + (block.shape[0] - pos) > self.n_images:
                    raise ValueError(f"more than {self.n_images} images given for {name}")
                take = min(self.shard - filled, block.shape[0] - pos)
                buffer[filled : filled + take] = block[pos : pos + take]
                filled += take
                pos += take
                if filled == self.shard:
                    arr[written : written + filled] = buffer
                    written += filled
                    filled = 0
        if filled:
            arr[written : written + filled] = buffer[:filled]
            written += filled
        if written != self.n_images:
            raise ValueError(f"{name}: {written} images written, expected {self.n_images}")
        self._done.add(name)

    def write_array(
        self,
        name: str,
        data: np.ndarray,
        attrs: dict | None = None,
        dimension_names: Sequence[str] | None = None,
    ) -> None:
        """Write a small whole array (per-image metadata such as ``particle_id``)."""
        data = np.ascontiguousarray(data)
        arr = self.group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=data.shape or None,
            compressors=compressor(),
            fill_value=0,
            dimension_names=list(dimension_names) if dimension_names else None,
            config={"write_empty_chunks": True},
        )
        arr[...] = data
        if attrs:
            arr.attrs.update(_attr_value(attrs))
        self._done.add(name)

    def commit(self, attrs: dict) -> Path:
        """Check completeness, write the root attributes and rename the store into place.

        Returns
        -------
        Path
            The final store path.
        """
        missing = [level_name(s) for s in self.sigmas if level_name(s) not in self._done]
        if missing or "particle_id" not in self._done:
            raise ValueError(f"store incomplete: missing {missing + ['particle_id']}")
        # every chunk is written (write_empty_chunks): readers may treat an absent one as damage
        self.group.attrs[ATTR_KEY] = _attr_value({**attrs, "every_chunk_stored": True})
        if self.out.exists():
            if not self.overwrite:
                raise HollyError(f"{self.out} appeared while writing; remove it or pass --force")
            trash = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, trash)
            os.replace(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
        self._committed = True
        log.info("wrote %s (%d images x %d levels)", self.out, self.n_images, len(self.sigmas))
        return self.out
