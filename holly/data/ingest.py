"""Pre-rendered FITS folders -> an image store (Zarr v3); image store level -> OME-Zarr 0.5.

Input layout (the Zenodo CEP152 record, HOLLy's ``run/paper/<sigma>/``)::

    SRC/
      10/  image_000000.fits image_000001.fits ...    one sub-folder per sigma, in pixels:
      9.0/ image_000000.fits ...                      "10", "10.0", "09", "010", "1.41"
      1.41/ ...

Every folder must hold the same file names; file ``image_%06d.fits`` of every folder shows the
same particle copy, so image ``k`` of the store is file number ``k`` (sorted by the number in the
name) at every level. Images are 2D float32 (or 3D cubes, summed over the first axis as HOLLy's
later loader did); all must have one shape.

Orientation: CEPrender wrote its renders vertically flipped (FITS row ``y`` = image row
``H - 1 - y``), so that FITS viewers, which draw row 0 at the bottom, show the camera view. By
default (``flip=True``) the stored image is ``flipud(FITS data)``: row 0 of the store is the top
row as a FITS viewer displays it, which is the renderer's convention (row 0 = top, +y up).
``flip=False`` stores the FITS rows as they are (row 0 = the FITS bottom row). The two choices
give mirror-image reconstructions; the choice is recorded in the store's ``orientation``.

Bad inputs (unreadable or truncated file, not FITS, wrong shape, NaN/inf values, an all-zero
image, a file missing from one sigma folder) stop the ingest with a :class:`HollyError` naming the
file, or with ``skip_bad`` drop that image from *every* level and list it in the report.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from holly.atomic import write_json
from holly.data.imageio import FITS_SUFFIXES, BadFitsFile, read_fits_image
from holly.data.imagestore import (
    DIMENSION_NAMES,
    EXPORT_KIND,
    ORIENTATION,
    ImageStore,
    StoreWriter,
    base_attrs,
    compressor,
    guard_output,
    level_name,
    shard_images,
)
from holly.errors import HollyError

log = logging.getLogger(__name__)

NGFF_VERSION = "0.5"


@dataclass(frozen=True)
class SigmaFolder:
    """One input level: a sub-folder named by its sigma (pixels)."""

    sigma: float
    path: Path


@dataclass
class IngestResult:
    """What :func:`ingest_fits` did."""

    store: Path
    n_images: int
    sigmas: list[float]
    skipped: list[dict] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    files_read: int = 0

    @property
    def files_per_s(self) -> float:
        return self.files_read / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------- scanning
def find_sigma_folders(src: str | os.PathLike) -> list[SigmaFolder]:
    """The sigma sub-folders of ``src``, largest sigma first.

    Sub-folders whose name is not a number are ignored (with a log line). Two folders naming the
    same sigma (``10`` and ``10.0``) are an error.
    """
    src = Path(src)
    if not src.is_dir():
        raise HollyError(f"FITS source folder {src} does not exist or is not a folder")
    folders: dict[float, Path] = {}
    for entry in sorted(src.iterdir()):
        if not entry.is_dir():
            continue
        try:
            sigma = float(entry.name)
        except ValueError:
            log.info("ignoring %s: the name is not a sigma", entry)
            continue
        if not np.isfinite(sigma) or sigma <= 0:
            raise HollyError(f"{entry}: sigma folder name must be a positive number")
        if sigma in folders:
            raise HollyError(
                f"{folders[sigma]} and {entry} both hold sigma {sigma}; keep one of them"
            )
        folders[sigma] = entry
    if not folders:
        raise HollyError(
            f"{src} has no sigma sub-folders (named like 10, 9.0, 1.41) with FITS images"
        )
    names = [level_name(s) for s in folders]
    if len(set(names)) != len(names):
        raise HollyError(f"{src}: sigma folders {sorted(folders)} are not distinct at two decimals")
    return [SigmaFolder(s, folders[s]) for s in sorted(folders, reverse=True)]


def _file_number(name: str) -> int | None:
    match = re.search(r"(\d+)\D*$", name.rsplit(".", 1)[0])
    return int(match.group(1)) if match else None


def list_fits(folder: Path) -> list[str]:
    """FITS file names of a folder, sorted by the number in the name (then by name)."""
    names = [
        e.name
        for e in os.scandir(folder)
        if e.name.lower().endswith(FITS_SUFFIXES) and not e.name.startswith(".")
    ]
    numbered = []
    for name in names:
        number = _file_number(name)
        if number is None:
            raise HollyError(
                f"{folder / name}: no image number in the file name (expected "
                "names like image_000123.fits)"
            )
        numbered.append((number, name))
    numbered.sort()
    for (a, name_a), (b, name_b) in zip(numbered, numbered[1:], strict=False):
        if a == b:
            raise HollyError(
                f"{folder / name_a} and {folder / name_b} have the same image "
                f"number {a}; remove one"
            )
    return [name for _, name in numbered]


def _match_names(folders: list[SigmaFolder], skip_bad: bool) -> tuple[list[str], list[dict]]:
    """File names common to the folders (sorted by number), and names missing from some."""
    per_folder = {f.path: list_fits(f.path) for f in folders}
    for f in folders:
        if not per_folder[f.path]:
            raise HollyError(f"sigma folder {f.path} has no FITS files")
    union = sorted(
        {n for names in per_folder.values() for n in names}, key=lambda n: (_file_number(n), n)
    )
    missing = []
    for f in folders:
        present = set(per_folder[f.path])
        for name in union:
            if name not in present:
                missing.append(
                    {
                        "file": str(f.path / name),
                        "name": name,
                        "reason": f"missing from sigma folder {f.path.name}",
                    }
                )
    if missing and not skip_bad:
        counts = ", ".join(f"{f.path.name}: {len(per_folder[f.path])}" for f in folders)
        raise HollyError(
            f"sigma folders hold different images ({counts}); "
            f"{missing[0]['file']} is missing. Every sigma folder needs the same "
            "image files; pass --skip-bad to drop images missing anywhere"
        )
    return union, missing


def _expected_shape(folder: SigmaFolder, names: list[str]) -> tuple[int, int]:
    """The most common image shape among the first few readable files of a folder."""
    shapes: list[tuple[int, int]] = []
    for name in names[:16]:
        try:
            image, _ = read_fits_image(folder.path / name)
        except BadFitsFile:
            continue
        shapes.append(image.shape)
        if len(shapes) == 5:
            break
    if not shapes:
        raise HollyError(
            f"none of the first FITS files in {folder.path} is readable, e.g. "
            f"{folder.path / names[0]}"
        )
    values, counts = np.unique(np.array(shapes), axis=0, return_counts=True)
    return tuple(int(v) for v in values[int(np.argmax(counts))])


# ---------------------------------------------------------------------------- ingest
@dataclass
class IngestPlan:
    """What an ingest will read, known before any image is (phase 1 of :func:`ingest_fits`)."""

    folders: list  # SigmaFolder, one per sigma level
    names: list[str]  # file names common to (or, with skip_bad, present in some) folders
    missing: list[dict]  # files absent from some folder (skip_bad)
    numbers: np.ndarray  # [n] int64, the particle-image number of each name
    height: int
    width: int
    bad: dict[int, list[dict]]  # name index -> why it is dropped


def plan_ingest(src: Path, skip_bad: bool) -> IngestPlan:
    """Phase 1 of :func:`ingest_fits`: find the sigma folders and match their file names."""
    folders = find_sigma_folders(src)
    names, missing = _match_names(folders, skip_bad)
    height, width = _expected_shape(folders[0], names)
    numbers = np.array([_file_number(n) for n in names], dtype=np.int64)
    if numbers.max() > np.iinfo(np.int32).max:
        raise HollyError(f"{src}: image numbers above {np.iinfo(np.int32).max} are not supported")
    position = {n: i for i, n in enumerate(names)}
    bad: dict[int, list[dict]] = {}
    for entry in missing:
        bad.setdefault(position[entry["name"]], []).append(entry)
    return IngestPlan(folders, names, missing, numbers, height, width, bad)


def _source_record(src, record, folders, names, md5, keep) -> dict:
    """Phase 3 of :func:`ingest_fits`: the inputs' provenance (md5 manifest of kept files)."""
    folder_names = [f.path.name for f in folders]
    manifest = hashlib.sha256()
    for level, folder_name in enumerate(folder_names):
        for i in keep:
            manifest.update(f"{md5[level, i].tobytes().hex()}  {folder_name}/{names[i]}\n".encode())
    return {
        "type": "fits-folders",
        "path": str(src.resolve()),
        "record": record,
        "folders": {name: f.sigma for name, f in zip(folder_names, folders, strict=True)},
        "n_files": int(keep.size * len(folders)),
        "checksums": "array source_md5: md5 of every input file; "
        "ImageStore.source_manifest() gives md5sum -c lines",
        "manifest_sha256": manifest.hexdigest(),
    }


def ingest_fits(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    flip: bool = True,
    skip_bad: bool = False,
    perturbations: int = 10,
    record: str | None = None,
    overwrite: bool = False,
    block_size: int = 256,
) -> IngestResult:
    """Convert sigma folders of FITS images into one image store.

    Reads level by level in blocks of ``block_size`` files and writes whole shards; memory stays
    at a few shards (~250 MiB measured) whatever the number of images. A skipped image costs one
    extra pass that copies the good images of every level into a compacted store.

    Parameters
    ----------
    src : path-like
        Folder with one sub-folder per sigma (see module docstring).
    out : path-like
        Store to create (``.zarr``); written to a temporary sibling and renamed when complete.
    flip : bool
        Store ``flipud`` of each FITS image (default; undoes CEPrender's flip-on-write so the
        store is in the renderer's row-0-is-top convention). ``False`` keeps FITS row order.
    skip_bad : bool
        Drop bad images from every level and report them, instead of stopping.
    perturbations : int
        Augmentation copies per particle in the input: ``particle_id = file number //
        perturbations`` (10 for the CEP152 data).
    record : str, optional
        Where the data came from (e.g. the Zenodo record id), recorded in the attributes.
    overwrite : bool
        Replace an existing store (and its skipped report).
    block_size : int
        Files read per block.

    Returns
    -------
    IngestResult
        With ``skipped`` entries ``{"index", "name", "file", "reason"}``; when ``skip_bad`` the
        same list is written to ``report`` (``<store stem>.skipped.json`` beside the store).

    Raises
    ------
    HollyError
        Missing or malformed input (naming the file), or an existing ``out`` without
        ``overwrite``.
    """
    if perturbations < 1:
        raise HollyError(f"--perturbations must be >= 1, not {perturbations}")
    src, out = Path(src), Path(out)
    guard_output(out, [src], overwrite)
    t0 = time.perf_counter()
    # phase 1: plan (folders, file names, image size, files missing at some sigma)
    plan = plan_ingest(src, skip_bad)
    folders, names, missing, numbers = plan.folders, plan.names, plan.missing, plan.numbers
    height, width, bad = plan.height, plan.width, plan.bad
    n_raw, n_levels = len(names), len(folders)
    md5 = np.zeros((n_levels, n_raw, 16), dtype=np.uint8)
    log.info(
        "ingesting %d images x %d sigma levels %s from %s (%dx%d)",
        n_raw,
        n_levels,
        [f.sigma for f in folders],
        src,
        height,
        width,
    )
    report = (
        out.with_suffix(".skipped.json")
        if out.suffix
        else out.with_name(out.name + ".skipped.json")
    )

    # phase 2: read every level in blocks and write the store
    def blocks(level: int, folder: SigmaFolder) -> Iterator[np.ndarray]:
        present = set(os.listdir(folder.path)) if missing else None
        for start in range(0, n_raw, block_size):
            stop = min(start + block_size, n_raw)
            images = np.zeros((stop - start, height, width), dtype=np.float32)
            for i in range(start, stop):
                name = names[i]
                path = folder.path / name
                if present is not None and name not in present:
                    continue  # already recorded as missing
                try:
                    image, digest = read_fits_image(path, flip=flip)
                    if image.shape != (height, width):
                        raise BadFitsFile(f"image shape {image.shape}, expected {(height, width)}")
                except BadFitsFile as exc:
                    if not skip_bad:
                        raise HollyError(
                            f"{path}: {exc}. Fix or remove the file, or pass "
                            "--skip-bad to drop this image at every sigma"
                        ) from None
                    log.warning("skipping %s: %s", path, exc)
                    bad.setdefault(i, []).append(
                        {"file": str(path), "name": name, "reason": str(exc)}
                    )
                    continue
                md5[level, i] = np.frombuffer(bytes.fromhex(digest), dtype=np.uint8)
                images[i - start] = image
            yield images

    params = {
        "flip": flip,
        "skip_bad": skip_bad,
        "perturbations": perturbations,
        "block_size": block_size,
    }
    with StoreWriter(
        out,
        n_images=n_raw,
        height=height,
        width=width,
        sigmas=[f.sigma for f in folders],
        overwrite=overwrite,
    ) as raw:
        for level, folder in enumerate(folders):
            t_level = time.perf_counter()
            raw.write_level(folder.sigma, blocks(level, folder))
            dt = time.perf_counter() - t_level
            log.info(
                "sigma %g: %d files in %.1f s (%.0f files/s)",
                folder.sigma,
                n_raw,
                dt,
                n_raw / max(dt, 1e-9),
            )
        keep = np.array(sorted(set(range(n_raw)) - set(bad)), dtype=np.int64)
        if keep.size == 0:
            raise HollyError(f"every image in {src} is bad; nothing to ingest")
        skipped = [{"index": int(numbers[i]), **e} for i in sorted(bad) for e in bad[i]]
        # phase 3: provenance of the inputs, then the store's attributes and commit
        source = _source_record(src, record, folders, names, md5, keep)
        orientation = {
            **ORIENTATION,
            "source_format": "FITS",
            "flipped_vertically": flip,
            "note": "flipped_vertically: stored image = flipud(FITS data), undoing "
            "CEPrender's flip-on-write"
            if flip
            else "stored rows = FITS rows (row 0 = FITS bottom row)",
        }
        attrs = base_attrs(
            n_images=int(keep.size),
            height=height,
            width=width,
            sigmas=[f.sigma for f in folders],
            orientation=orientation,
            source=source,
            params=params,
        )
        attrs["skipped"] = skipped
        extra = {
            "particle_id": (numbers // perturbations).astype(np.int32),
            "source_index": numbers.astype(np.int32),
        }
        md5_attrs = {
            "algorithm": "md5",
            "folders": [f.path.name for f in folders],
            "file_names": [names[i] for i in keep],
        }
        if keep.size == n_raw:
            writer = raw
        else:
            log.info("dropping %d bad images from every level", n_raw - keep.size)
            writer = StoreWriter(
                out,
                n_images=int(keep.size),
                height=height,
                width=width,
                sigmas=[f.sigma for f in folders],
                overwrite=overwrite,
            )
        try:
            if writer is not raw:
                for folder in folders:
                    writer.write_level(
                        folder.sigma, _select_blocks(raw.level_array(folder.sigma), keep)
                    )
            for name, values in extra.items():
                writer.write_array(name, values[keep], dimension_names=["sample"])
            writer.write_array(
                "source_md5",
                md5[:, keep],
                attrs=md5_attrs,
                dimension_names=["level", "sample", "byte"],
            )
            if skip_bad:
                write_json(report, {"store": str(out), "skipped": skipped})
            elif overwrite and report.exists():
                report.unlink()  # a stale report from an earlier run would mislead
            writer.commit(attrs)
        finally:
            if writer is not raw:
                writer.abort()  # removes the compacted copy's temporary folder on failure
    seconds = time.perf_counter() - t0
    result = IngestResult(
        store=out,
        n_images=int(keep.size),
        sigmas=[f.sigma for f in folders],
        skipped=skipped,
        report=report if skip_bad else None,
        seconds=seconds,
        files_read=n_raw * n_levels,
    )
    log.info(
        "wrote %s: %d images x %d levels, %d skipped, %.1f s (%.0f files/s)",
        out,
        result.n_images,
        n_levels,
        len({e["index"] for e in skipped}),
        seconds,
        result.files_per_s,
    )
    return result


def _select_blocks(arr, keep: np.ndarray, block: int = 1024) -> Iterator[np.ndarray]:
    """Images ``keep`` (sorted) of a Zarr array, ``block`` at a time."""
    for start in range(0, keep.size, block):
        part = keep[start : start + block]
        yield np.asarray(arr.get_orthogonal_selection((part, slice(None), slice(None))))


# ---------------------------------------------------------------------------- OME-Zarr
def export_ome_zarr(
    store: str | os.PathLike,
    out: str | os.PathLike,
    sigma: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Export one level of an image store as OME-Zarr 0.5 (NGFF on Zarr v3) for viewers.

    One resolution level (path ``"0"``), axes ``sample`` (type ``custom``), ``y``, ``x`` (type
    ``space``, no unit: renders have no physical pixel size), unit scale. The sample axis is not
    made ``z``: the images are independent views, not slices of a volume, and a ``z`` axis would
    invite viewers to show them as one 3D volume. napari (with napari-ome-zarr and ome-zarr-py
    >= 0.12) shows the stack with a slider over ``sample``.

    Parameters
    ----------
    store : path-like
        An image store.
    out : path-like
        OME-Zarr group to create (written to a temporary sibling, renamed when complete).
    sigma : float, optional
        Level to export (nearest available); default the smallest sigma (sharpest images).
    overwrite : bool

    Returns
    -------
    Path
    """
    import shutil

    import zarr

    images = ImageStore.open(store)
    out = guard_output(out, [store], overwrite)
    level = images.level_for(sigma) if sigma is not None else min(images.sigmas)
    n, h, w = images.n_images, images.height, images.width
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        shard = shard_images(h, w, n)
        arr = group.create_array(
            "0",
            shape=(n, h, w),
            dtype="float32",
            chunks=(1, h, w),
            shards=(shard, h, w),
            compressors=compressor(),
            dimension_names=list(DIMENSION_NAMES),
            fill_value=0.0,
        )
        source = images.group[level_name(level)]
        for start in range(0, n, shard):
            arr[start : start + shard] = source[start : start + shard]
        group.attrs["ome"] = {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": level_name(level),
                    "axes": [
                        {"name": "sample", "type": "custom"},
                        {"name": "y", "type": "space"},
                        {"name": "x", "type": "space"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, 1.0, 1.0]}
                            ],
                        }
                    ],
                    "metadata": {
                        "description": "holly image store level; samples are "
                        "independent views, not a volume"
                    },
                }
            ],
        }
        group.attrs["holly"] = {
            "kind": EXPORT_KIND,  # what --force may replace (imagestore.is_holly_store)
            "exported_from": str(Path(store).resolve()),
            "sigma_px": level,
            "orientation": images.attrs["orientation"],
        }
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote OME-Zarr %s (sigma %g, %d images)", out, level, n)
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
