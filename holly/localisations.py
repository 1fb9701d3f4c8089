"""SMLM localisation tables -> rendered image stacks in an image store.

Reads particles (2D localisations) from

* **cep152-mat**: the CEP152 MATLAB v7.3 (HDF5) file: the top-level cell array
  ``Cep152_all_filtered`` holds object references into ``#refs#``; every referenced dataset with
  8 rows is one particle, row 0 = x, row 1 = y (other rows ignored). Particles are numbered in
  cell order (``order="cell"``, MATLAB's column-major cell index) or, as CEPrender walked them,
  in the name order of the ``#refs#`` group (``order="refs"``); datasets without 8 rows do not
  count. Files without that member: every ``#refs#`` dataset with at least 2 rows.
* **thunderstorm**: ThunderSTORM CSV (``"x [nm]"``, ``"y [nm]"``; any ``x [unit]``/``y [unit]``
  pair or plain ``x``/``y`` columns). With ``particle_column`` each distinct value of that column
  is one particle (sorted by value); without it the whole file is one particle.
* **picasso**: Picasso HDF5, the ``/locs`` table (``x``, ``y`` in camera pixels); the ``group``
  column (picked localisations) names the particle; without it the whole file is one particle.

``INPUT`` may also be a folder: its files of the format are read in name order and their
particles concatenated (e.g. one ThunderSTORM CSV per particle).

Then (:func:`localise`): keep the accepted particles (optional index list), drop small ones
(optional size cut at median - 2 sd of the localisation counts), keep at most ``max_points``
random localisations per particle, centre each particle on its bounding-box centre, scale every
particle by one global factor, and render ``perturbations`` randomly in-plane-rotated copies of
each at every sigma with :func:`holly.render.render`. Image sums equal the number of
localisations (less the Gaussian tails beyond the frame): no noise, no normalisation, as
CEPrender made the CEP152 images.

Global scale: ``pixels_per_unit = (1 - margin) * (size / 2 - 0.5) / r_max`` where ``r_max`` is
the largest distance of any localisation of any selected particle from its particle's
bounding-box centre. The renderer's frame centre is pixel ``size / 2`` and the nearest frame edge
(pixel ``size - 1`` plus half a pixel) lies ``size / 2 - 0.5`` pixels away, so the particle
reaching farthest reaches ``(1 - margin)`` of the way to the nearest edge *under every rotation*:
no localisation leaves the frame (Gaussian tails still can, by about ``sigma``). (CEPrender
used ``0.95 * 2 * 128 / max_width``, which makes the widest particle ~243 px wide in a 128 px
frame; its intent was evidently the frame width, this is that intent made rotation-safe.)

Orientation: localisation tables use image coordinates, y growing *down* the camera frame. A
localisation with larger y lands on a lower row (row = size/2 + y * pixels_per_unit): the image
looks like the camera view, and like the CEPrender FITS ingested with ``holly ingest``'s default
flip. In the renderer's model units (+y up) that point has ``y_model = -y_pixels / (size / 4)``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from holly.errors import HollyError
from holly.imagestore import ORIENTATION, StoreWriter, base_attrs

log = logging.getLogger(__name__)

FORMATS = ("auto", "thunderstorm", "picasso", "cep152-mat")
MAT_MEMBER = "Cep152_all_filtered"
RENDER_BUDGET_BYTES = 128 * 2**20  # renderer working memory per batch


@dataclass
class Particles:
    """Localisations grouped by particle, in source units, y growing downwards."""

    xy: list[np.ndarray]  # each [n_i, 2] float64
    labels: list  # the source's name for each particle (group value, cell index, file)
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xy)


@dataclass
class LocaliseResult:
    """What :func:`localise` did."""

    store: Path
    n_read: int
    n_selected: int
    n_images: int
    pixels_per_unit: float
    n_localisations: list[int]
    seconds: float


# ---------------------------------------------------------------------------- readers
def detect_format(path: Path) -> str:
    """``thunderstorm``, ``picasso`` or ``cep152-mat`` from a file's suffix and content."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "thunderstorm"
    import h5py

    if not h5py.is_hdf5(path):
        raise HollyError(
            f"{path}: cannot tell the localisation format (not CSV, not HDF5); pass --format"
        )
    with h5py.File(path, "r") as f:
        if "locs" in f:
            return "picasso"
        if MAT_MEMBER in f or "#refs#" in f:
            return "cep152-mat"
    raise HollyError(
        f"{path}: HDF5 file with neither a Picasso /locs table nor a MATLAB "
        f"{MAT_MEMBER} cell array; pass --format"
    )


def read_cep152_mat(path: str | os.PathLike, order: str = "cell") -> Particles:
    """Particles of a CEP152 MATLAB v7.3 file (see module docstring).

    Parameters
    ----------
    path : path-like
    order : {"cell", "refs"}
        Particle numbering: MATLAB cell order, or ``#refs#`` name order (CEPrender's walk).
    """
    import h5py

    path = Path(path)
    if order not in ("cell", "refs"):
        raise HollyError(f"--mat-order must be 'cell' or 'refs', not {order!r}")
    xy, labels = [], []
    with h5py.File(path, "r") as f:
        refs = f.get("#refs#")
        if MAT_MEMBER in f and order == "cell":
            cells = f[MAT_MEMBER]
            if cells.dtype != h5py.ref_dtype:
                raise HollyError(
                    f"{path}: {MAT_MEMBER} is not a MATLAB cell array (no object references)"
                )
            # MATLAB stores the cell array transposed: h5py's C order is MATLAB's column order
            for k, ref in enumerate(np.asarray(cells[()]).ravel()):
                if not ref:
                    continue
                data = f[ref]
                if isinstance(data, h5py.Dataset) and data.ndim == 2 and data.shape[0] == 8:
                    xy.append(np.asarray(data[0:2], dtype=np.float64).T)
                    labels.append(k)
        else:
            if not isinstance(refs, h5py.Group):
                raise HollyError(
                    f"{path}: no {MAT_MEMBER} cell array and no #refs# group; "
                    "not a CEP152 MATLAB v7.3 file"
                )
            rows = 8 if MAT_MEMBER in f else None
            for name in sorted(refs):  # HDF5 and CEPrender list members by name
                data = refs[name]
                if not isinstance(data, h5py.Dataset) or data.ndim != 2:
                    continue
                if (rows is not None and data.shape[0] != rows) or data.shape[0] < 2:
                    continue
                if not np.issubdtype(data.dtype, np.number):
                    continue
                xy.append(np.asarray(data[0:2], dtype=np.float64).T)
                labels.append(name)
    if not xy:
        raise HollyError(f"{path}: no particles (datasets with 8 rows) found")
    return Particles(xy, labels, {"format": "cep152-mat", "order": order, "units": "unknown"})


def _xy_columns(columns: list[str], path: Path) -> tuple[str, str, str]:
    for xc, yc in (("x [nm]", "y [nm]"), ("x", "y")):
        if xc in columns and yc in columns:
            return xc, yc, "nm" if "nm" in xc else "unknown"
    for c in columns:
        m = re.fullmatch(r"x \[(.+)\]", c)
        if m and f"y [{m.group(1)}]" in columns:
            return c, f"y [{m.group(1)}]", m.group(1)
    raise HollyError(
        f'{path}: no x/y columns (expected "x [nm]" and "y [nm]" as ThunderSTORM '
        f"writes them); columns are {columns}"
    )


def read_thunderstorm(path: str | os.PathLike, particle_column: str | None = None) -> Particles:
    """Particles of a ThunderSTORM CSV: by ``particle_column``, or the whole file as one."""
    import pandas as pd

    path = Path(path)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:
        raise HollyError(f"{path}: not a readable CSV file ({exc})") from exc
    xc, yc, unit = _xy_columns(header, path)
    use = [xc, yc]
    if particle_column is not None:
        if particle_column not in header:
            raise HollyError(
                f"{path}: no particle column {particle_column!r}; columns are {header}"
            )
        use.append(particle_column)
    try:
        table = pd.read_csv(path, usecols=use)
    except Exception as exc:
        raise HollyError(f"{path}: cannot read the CSV table ({exc})") from exc
    coords = table[[xc, yc]].to_numpy(dtype=np.float64, na_value=np.nan)
    good = np.isfinite(coords).all(axis=1)
    if not good.all():
        log.warning("%s: ignoring %d rows with missing or non-finite x/y", path, (~good).sum())
    source = {"format": "thunderstorm", "units": unit, "columns": [xc, yc]}
    if particle_column is None:
        return Particles([coords[good]], [path.name], source)
    keys = table[particle_column].to_numpy()[good]
    return _group(coords[good], keys, source | {"particle_column": particle_column}, path)


def _group(coords: np.ndarray, keys: np.ndarray, source: dict, path: Path) -> Particles:
    """Split rows into particles by key, sorted by key value."""
    try:
        uniq, inverse = np.unique(keys, return_inverse=True)
    except TypeError as exc:
        raise HollyError(f"{path}: particle column has values of mixed types") from exc
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(uniq.size + 1))
    xy = [coords[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return Particles(xy, [k.item() if hasattr(k, "item") else k for k in uniq], source)


def read_picasso(path: str | os.PathLike) -> Particles:
    """Particles of a Picasso HDF5 file: ``/locs`` rows grouped by ``group`` (or one particle)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "locs" not in f:
                raise HollyError(f"{path}: no /locs table; not a Picasso localisation file")
            locs = f["locs"][()]
    except HollyError:
        raise
    except Exception as exc:
        raise HollyError(f"{path}: not a readable HDF5 file ({exc})") from exc
    fields = locs.dtype.names or ()
    if "x" not in fields or "y" not in fields:
        raise HollyError(f"{path}: /locs has no x and y columns (columns: {list(fields)})")
    coords = np.stack([locs["x"], locs["y"]], axis=1).astype(np.float64)
    good = np.isfinite(coords).all(axis=1)
    if not good.all():
        log.warning("%s: ignoring %d rows with non-finite x/y", path, (~good).sum())
    source = {"format": "picasso", "units": "camera pixels"}
    if "group" not in fields:
        return Particles([coords[good]], [path.name], source)
    return _group(
        coords[good], np.asarray(locs["group"])[good], source | {"particle_column": "group"}, path
    )


def read_localisations(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    particle_column: str | None = None,
    mat_order: str = "cell",
) -> tuple[Particles, list[Path]]:
    """Read particles from a file, or from every file of one format in a folder (name order).

    Returns
    -------
    particles : Particles
    files : list of Path
        The files read.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise HollyError(f"--format must be one of {FORMATS}, not {fmt!r}")
    if not path.exists():
        raise HollyError(f"localisation input {path} does not exist")
    if path.is_dir():
        suffixes = {"thunderstorm": (".csv",), "picasso": (".hdf5", ".h5"), "cep152-mat": (".mat",)}
        wanted = suffixes.get(fmt, (".csv", ".hdf5", ".h5", ".mat"))
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in wanted and not p.name.startswith(".")
        )
        if not files:
            raise HollyError(f"{path}: no localisation files ({', '.join(wanted)}) in folder")
    else:
        files = [path]
    xy, labels, source = [], [], {}
    for file in files:
        kind = detect_format(file) if fmt == "auto" else fmt
        if kind == "thunderstorm":
            part = read_thunderstorm(file, particle_column)
        elif kind == "picasso":
            part = read_picasso(file)
        else:
            try:
                part = read_cep152_mat(file, mat_order)
            except OSError as exc:
                raise HollyError(f"{file}: not a MATLAB v7.3 (HDF5) file ({exc})") from exc
        if source and part.source["format"] != source["format"]:
            raise HollyError(
                f"{file}: format {part.source['format']} differs from the other "
                f"files' {source['format']}"
            )
        source = part.source
        xy.extend(part.xy)
        labels.extend(
            part.labels if len(files) == 1 else [f"{file.name}:{lb}" for lb in part.labels]
        )
    return Particles(xy, labels, source), files


# ---------------------------------------------------------------------------- selection
def read_accepted(path: str | os.PathLike, n_particles: int) -> np.ndarray:
    """Particle indices from a text file (integers separated by spaces, commas or lines;
    ``#`` starts a comment). Returns sorted unique indices; out-of-range ones are an error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise HollyError(f"cannot read accepted-particle list {path}: {exc.strerror}") from exc
    tokens = re.split(r"[\s,;]+", re.sub(r"#.*", "", text).strip())
    try:
        indices = np.array([int(t) for t in tokens if t], dtype=np.int64)
    except ValueError as exc:
        raise HollyError(f"{path}: accepted-particle list must hold integers ({exc})") from exc
    if indices.size == 0:
        raise HollyError(f"{path}: accepted-particle list is empty")
    bad = indices[(indices < 0) | (indices >= n_particles)]
    if bad.size:
        raise HollyError(f"{path}: particle index {bad[0]} out of range 0..{n_particles - 1}")
    unique = np.unique(indices)
    if unique.size != indices.size:
        log.warning("%s: %d duplicate indices ignored", path, indices.size - unique.size)
    return unique


def size_cut_threshold(counts: np.ndarray) -> float:
    """``median - 2 sd`` of localisation counts (sample sd, ddof=1; over all particles given)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size < 2:
        return -math.inf
    return float(np.median(counts) - 2.0 * np.std(counts, ddof=1))


def frame_scale(xy: list[np.ndarray], size: int, margin: float) -> float:
    """Global pixels per source unit: the farthest localisation from its particle's
    bounding-box centre lands ``(1 - margin) * (size / 2 - 0.5)`` pixels from the frame centre,
    i.e. that fraction of the way to the nearest frame edge."""
    r_max = max(float(np.sqrt((_centre(p) ** 2).sum(axis=1)).max()) for p in xy)
    if r_max <= 0:
        raise HollyError("every selected particle is a single point; cannot scale them")
    return (1.0 - margin) * (size / 2 - 0.5) / r_max


def _centre(p: np.ndarray) -> np.ndarray:
    """Localisations relative to the bounding-box centre ((min + max) / 2)."""
    return p - (p.min(axis=0) + p.max(axis=0)) / 2


# ---------------------------------------------------------------------------- rendering
def _rotations_z(angles: np.ndarray) -> np.ndarray:
    """In-plane rotation matrices ``[B, 3, 3]`` about the viewing axis."""
    c, s = np.cos(angles), np.sin(angles)
    rot = np.zeros((angles.size, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return rot


def _batches(counts: list[int], copies: int, size: int) -> list[tuple[int, int]]:
    """Consecutive particle ranges whose padded render fits :data:`RENDER_BUDGET_BYTES`."""
    out, start, widest = [], 0, 0
    per_point = copies * 2 * size * 4 * 3  # two factor matrices, float32, ~3 temporaries
    for i, n in enumerate(counts):
        w = max(widest, n)
        if i > start and (i + 1 - start) * w * per_point > RENDER_BUDGET_BYTES:
            out.append((start, i))
            start, w = i, n
        widest = w
    out.append((start, len(counts)))
    return out


def render_particles(
    points: list[np.ndarray],
    angles: np.ndarray,
    sigma: float,
    size: int,
    device: str = "cpu",
):
    """Render in-plane rotated copies of 2D particles, batched over particles and copies.

    Parameters
    ----------
    points : list of ndarray [n_i, 2]
        Model units, +y up, centred (one model unit is ``size / 4`` pixels).
    angles : ndarray [P, K]
        Rotation of each copy, radians (counter-clockwise as displayed, +y up).
    sigma : float
        Pixels.
    size : int
        Image height and width, pixels.

    Yields
    ------
    ndarray [b * K, size, size] float32
        Images of consecutive particles, copy index fastest.
    """
    import torch

    from holly.render import render

    n_copies = angles.shape[1]
    counts = [len(p) for p in points]
    for start, stop in _batches(counts, n_copies, size):
        width = max(counts[start:stop])
        pts = np.zeros((stop - start, width, 3), dtype=np.float32)
        mask = np.zeros((stop - start, width), dtype=np.float32)
        for j, p in enumerate(points[start:stop]):
            pts[j, : len(p), :2] = p
            mask[j, : len(p)] = 1.0
        rot = _rotations_z(angles[start:stop].ravel())
        batch = rot.shape[0]
        with torch.no_grad():
            pts_t = torch.from_numpy(pts).to(device).repeat_interleave(n_copies, dim=0)
            mask_t = torch.from_numpy(mask).to(device).repeat_interleave(n_copies, dim=0)
            images = render(
                pts_t,
                torch.from_numpy(rot).float().to(device),
                torch.zeros(batch, 2, device=device),
                float(sigma),
                size,
                size,
                mask=mask_t,
            )  # [B, size, size]
        yield images.cpu().numpy()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def localise(
    input_path: str | os.PathLike,
    out: str | os.PathLike,
    sigmas: list[float],
    *,
    fmt: str = "auto",
    accepted: str | os.PathLike | None = None,
    size_cut: bool = False,
    perturbations: int = 10,
    max_points: int | None = None,
    size: int = 128,
    seed: int = 0,
    margin: float = 0.05,
    particle_column: str | None = None,
    mat_order: str = "cell",
    overwrite: bool = False,
    device: str = "cpu",
) -> LocaliseResult:
    """Render localisation particles into an image store.

    Parameters
    ----------
    input_path : path-like
        Localisation file or folder (see module docstring).
    out : path-like
        Store to create.
    sigmas : list of float
        Gaussian sigma of every level, pixels; repeated values make one level.
    fmt : {"auto", "thunderstorm", "picasso", "cep152-mat"}
    accepted : path-like, optional
        Text file of particle indices (read order, from 0) to keep.
    size_cut : bool
        Drop particles with fewer localisations than median - 2 sd (after ``accepted``).
    perturbations : int
        In-plane rotated copies per particle; image ``i`` shows particle ``i // perturbations``
        of the selection, whose read-order index is ``particle_id[i]``.
    max_points : int, optional
        Keep at most this many localisations per particle (uniform random subset, seeded).
    size : int
        Image height and width, pixels.
    seed : int
        Seeds the subsets and the rotation angles: same inputs and seed, same store.
    margin : float
        Fraction of the half-frame kept free around the farthest localisation.
    particle_column : str, optional
        ThunderSTORM: the column naming the particle.
    mat_order : {"cell", "refs"}
        CEP152 .mat: particle numbering (see :func:`read_cep152_mat`).
    overwrite : bool
    device : str
        Torch device for rendering.

    Returns
    -------
    LocaliseResult
    """
    t0 = time.perf_counter()
    # sigma schedule files repeat levels (10,10,10,10,9.0,...): one level per distinct value
    sigmas = sorted({float(s) for s in sigmas}, reverse=True)
    if not sigmas or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
        raise HollyError(f"--sigmas must be positive numbers, not {sigmas}")
    if perturbations < 1:
        raise HollyError(f"--perturbations must be >= 1, not {perturbations}")
    if max_points is not None and max_points < 1:
        raise HollyError(f"--max-points must be >= 1, not {max_points}")
    if size < 8:
        raise HollyError(f"--size must be >= 8 pixels, not {size}")
    if not 0.0 <= margin < 1.0:
        raise HollyError(f"--margin must be in [0, 1), not {margin}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise HollyError(f"{out} already exists; remove it or pass --force")

    particles, files = read_localisations(
        input_path, fmt, particle_column=particle_column, mat_order=mat_order
    )
    n_read = len(particles)
    counts = np.array([len(p) for p in particles.xy])
    selected = np.flatnonzero(counts > 0)
    if selected.size < n_read:
        log.warning("%d particles without localisations ignored", n_read - selected.size)
    if accepted is not None:
        selected = np.intersect1d(selected, read_accepted(accepted, n_read))
    if size_cut and selected.size:
        threshold = size_cut_threshold(counts[selected])
        before = selected.size
        selected = selected[counts[selected] >= threshold]
        log.info(
            "size cut: %d of %d particles have fewer than %.1f localisations; dropped",
            before - selected.size,
            before,
            threshold,
        )
    if selected.size == 0:
        raise HollyError(f"{input_path}: no particles left after selection")

    xy = [_centre(particles.xy[i]) for i in selected]
    scale = frame_scale(xy, size, margin)  # pixels per source unit, from all localisations
    rng = np.random.default_rng(seed)
    if max_points is not None:
        xy = [
            p[np.sort(rng.choice(len(p), max_points, replace=False))] if len(p) > max_points else p
            for p in xy
        ]
    angles = rng.uniform(-np.pi, np.pi, size=(selected.size, perturbations))
    # source units, y down -> model units, y up (1 model unit = size / 4 pixels)
    model = [(p * scale / (size / 4) * np.array([1.0, -1.0])).astype(np.float32) for p in xy]
    n_images = selected.size * perturbations
    log.info(
        "rendering %d particles x %d copies at %d sigmas (%.4g px per unit)",
        selected.size,
        perturbations,
        len(sigmas),
        scale,
    )

    source = {
        "type": "localisations",
        **particles.source,
        "files": [{"name": str(f), "sha256": _sha256(f)} for f in files],
        "n_particles_read": n_read,
    }
    if accepted is not None:
        source["accepted"] = {"name": str(accepted), "sha256": _sha256(Path(accepted))}
    if particles.labels != list(range(n_read)):
        source["particle_labels"] = particles.labels
    orientation = {
        **ORIENTATION,
        "source_format": particles.source["format"],
        "localisation_y": "down: row = size/2 + y * pixels_per_unit (camera view, "
        "as CEPrender FITS after holly ingest's default flip)",
    }
    params = {
        "format": fmt,
        "accepted": str(accepted) if accepted else None,
        "size_cut": size_cut,
        "perturbations": perturbations,
        "max_points": max_points,
        "size": size,
        "seed": seed,
        "margin": margin,
        "particle_column": particle_column,
        "mat_order": mat_order,
        "pixels_per_unit": scale,
        "scale_rule": "(1 - margin) * (size/2 - 0.5) / max distance from bounding-box centre",
    }
    with StoreWriter(
        out, n_images=n_images, height=size, width=size, sigmas=sigmas, overwrite=overwrite
    ) as writer:
        for sigma in writer.sigmas:
            writer.write_level(sigma, render_particles(model, angles, sigma, size, device))
        writer.write_array(
            "particle_id",
            np.repeat(selected, perturbations).astype(np.int32),
            dimension_names=["sample"],
        )
        writer.write_array(
            "rotation_angle",
            angles.ravel().astype(np.float32),
            dimension_names=["sample"],
            attrs={
                "units": "radians",
                "meaning": "in-plane rotation of the copy, counter-clockwise as displayed (+y up)",
            },
        )
        attrs = base_attrs(
            n_images=n_images,
            height=size,
            width=size,
            sigmas=sigmas,
            orientation=orientation,
            source=source,
            params=params,
        )
        attrs["n_localisations"] = [int(len(p)) for p in xy]
        writer.commit(attrs)
    seconds = time.perf_counter() - t0
    log.info("wrote %s: %d images x %d levels in %.1f s", out, n_images, len(sigmas), seconds)
    return LocaliseResult(
        out, n_read, int(selected.size), n_images, scale, [int(len(p)) for p in xy], seconds
    )
