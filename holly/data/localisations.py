"""SMLM localisation tables -> rendered image stacks in an image store.

Reads particles (2D localisations) with :mod:`holly.data.locformats` (ThunderSTORM, Picasso, SMAP
``_sml.mat``/``_sml.csv``, DECODE, Zeiss Elyra, ONI Nanoimager, rapidSTORM, the CEP152 ``.mat``,
the TU Delft ``particles{i}`` and JRMPC ``Superparticle{i}`` ``.mat``; one file or a folder of
files of one format, kind and pixel size). The images show the xy projection; the store keeps
every localisation of the rendered particles as read, with z, sigma_xy and sigma_z where the
file has them (``localisation_*`` arrays, ``attrs["localisations"]``).

Guards before anything is rendered: particles with fewer than ``min_localisations`` (or no
extent) are dropped with one counted warning; particles reaching farther than
``outlier_factor`` x the median particle's reach are dropped with a warning naming them (robust
scale: one whole field of view would otherwise shrink every particle); particle numbers are the
read order and survive dropped rows and particles. Physical scale: ``nm_per_px`` of the store is
nm per source unit (from the file, or ``pixel_size``) divided by ``pixels_per_unit``.

Then (:func:`localise`): keep the accepted particles (optional index list), drop small ones
(optional size cut at median - 2 sd of the localisation counts), keep at most ``max_points``
random localisations per particle, centre each particle on its bounding-box centre (or, with
``centre="centroid"``, on the mean of its localisations), scale every particle by one global
factor, and render ``perturbations`` randomly in-plane-rotated copies of
each at every sigma with :func:`holly.method.render.render`. Image sums equal the number of
localisations (less the Gaussian tails beyond the frame): no noise, no normalisation, as
CEPrender made the CEP152 images.

Global scale: ``pixels_per_unit = (1 - margin) * (size / 2 - 0.5) / r_max`` where ``r_max`` is
the largest distance of any localisation of any selected particle from its particle's
centre. The renderer's frame centre is pixel ``size / 2`` and the nearest frame edge
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

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from holly.checksums import file_digest
from holly.data.imagestore import ORIENTATION, ImageStore, StoreWriter, base_attrs, guard_output
from holly.data.locformats import FORMATS as READER_FORMATS
from holly.data.locformats import (  # noqa: F401  (re-exported: the readers' public names)
    MAT_MEMBER,
    Particles,
    detect_format,
    read_cep152_mat,
    read_localisations,
    short,
)
from holly.errors import HollyError

log = logging.getLogger(__name__)

FORMATS = ("auto", *READER_FORMATS)
# Renderer working memory per batch. Smaller batches keep the factor matrices in cache: 32 MiB
# rendered ~1.3-1.7x faster than 128 MiB at 500 localisations, 128 px (shared 2-core machine).
RENDER_BUDGET_BYTES = 32 * 2**20
PREFETCH_BLOCKS = 3  # rendered blocks queued ahead of the store writer (memory: ~3 blocks)


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
    nm_per_px: float | None = None  # nm per image pixel; None when the source's unit is unknown


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


def _reach(p: np.ndarray) -> float:
    """Largest distance of a localisation from the particle's bounding-box centre."""
    if not len(p):
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float range: inf (refused later)
        return float(np.sqrt((_centre(p) ** 2).sum(axis=1)).max())


def drop_junk(
    particles: Particles, selected: np.ndarray, min_localisations: int, where
) -> np.ndarray:
    """Drop (with one counted warning) particles with fewer than ``min_localisations``
    localisations or no extent (all localisations at one spot): they would render as blobs."""
    bad = [
        i
        for i in selected
        if len(particles.xy[i]) < min_localisations
        or (len(particles.xy[i]) > 0 and _reach(particles.xy[i]) == 0.0)
    ]
    if not bad:
        return selected
    names = [f"{i} ({particles.labels[i]}, {len(particles.xy[i])} locs)" for i in bad]
    log.warning(
        "%s: dropped %d of %d particles with fewer than %d localisations or no extent: %s",
        where,
        len(bad),
        len(selected),
        min_localisations,
        short(names, 4),
    )
    return np.setdiff1d(selected, bad)


def drop_outliers(
    particles: Particles, selected: np.ndarray, factor: float | None, where
) -> np.ndarray:
    """Drop particles reaching farther than ``factor`` x the median reach (robust scale).

    The global scale is set by the farthest-reaching particle; one whole field of view or a
    mis-grouped particle among picks would shrink all others to a few pixels. With three or more
    particles, those beyond ``factor`` x the median reach are dropped, with a warning naming them.
    """
    if not factor or selected.size < 3:
        return selected
    reach = np.array([_reach(particles.xy[i]) for i in selected])
    median = float(np.median(reach))
    out = reach > factor * median
    if not out.any():
        return selected
    names = [
        f"{i} ({particles.labels[i]}, {r / median:.1f}x)"
        for i, r in zip(selected[out], reach[out], strict=True)
    ]
    log.warning(
        "%s: dropped %d of %d particles reaching more than %.3g x the median particle's "
        "extent (they would shrink every other particle): %s; pass outlier_factor 0 to keep them",
        where,
        int(out.sum()),
        selected.size,
        factor,
        short(names, 4),
    )
    return selected[~out]


def _warn_whole_field(particles: Particles, selected: np.ndarray, where) -> None:
    """Warn when a particle read as a whole file is wider than any SMLM particle (2 um)."""
    if particles.grouped or particles.nm_per_unit is None:
        return
    wide = [i for i in selected if 2 * _reach(particles.xy[i]) * particles.nm_per_unit > 2000]
    if wide:
        log.warning(
            "%s: %d particle(s) read as whole files span more than 2 um (e.g. %s): a whole "
            "field of view is not one particle; pass --particle-column to group localisations",
            where,
            len(wide),
            particles.labels[wide[0]],
        )


def frame_scale(xy: list[np.ndarray], size: int, margin: float) -> float:
    """Global pixels per source unit for particles already centred (:func:`_centre`): the
    localisation farthest from its particle's centre lands ``(1 - margin) * (size / 2 - 0.5)``
    pixels from the frame centre, i.e. that fraction of the way to the nearest frame edge."""
    with np.errstate(over="ignore", invalid="ignore"):
        r_max = max(float(np.sqrt((p**2).sum(axis=1)).max()) for p in xy)
        scale = (1.0 - margin) * (size / 2 - 0.5) / r_max if r_max > 0 else 0.0
    if not np.isfinite(r_max) or (r_max > 0 and not (np.isfinite(scale) and scale > 0)):
        raise HollyError(
            f"localisations reach {r_max:.3g} source units from their particle's centre, "
            "beyond what floating point can scale: check the coordinates (their column and unit)"
        )
    if r_max <= 0:
        raise HollyError("every selected particle is a single point; cannot scale them")
    return scale


def median_precision(
    particles: Particles, selected, scale: float, nm_per_px: float | None
) -> dict | None:
    """The median localisation precision of the rendered particles, in the images' pixels (and
    nm where known), from the table's ``sigma_xy`` column; None without one, or when its unit
    cannot be converted. Training reads it (``render.data_blur: auto`` or ``store``): each
    image is that much wider than its sigma level."""
    if "sigma_xy" not in particles.extra:
        return None
    values = np.concatenate([particles.extra["sigma_xy"][i] for i in selected])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    median = float(np.median(values))
    unit = particles.source.get("extra_units", {}).get("sigma_xy", particles.source.get("units"))
    if unit == particles.source.get("units"):
        px = median * scale  # the unit of x and y: scale is pixels per source unit
        nm = None if particles.nm_per_unit is None else median * particles.nm_per_unit
    elif unit == "nm" and nm_per_px is not None:
        px, nm = median / nm_per_px, median
    else:
        log.warning("sigma_xy is in %r, which holly cannot convert to pixels", unit)
        return None
    return {"median_px": px, "median_nm": nm, "column": "sigma_xy", "n": int(values.size)}


CENTRES = ("bbox", "centroid")


def centre_of(p: np.ndarray, how: str = "bbox") -> np.ndarray:
    """The point ``[2]`` a particle is drawn around: its bounding-box centre ((min + max) / 2),
    or its localisations' mean.

    The bounding box is set by the two most extreme localisations on each axis, so its centre
    scatters with the precision and with which sites a partial particle shows; the mean of all
    its localisations scatters much less."""
    if how == "centroid":
        return p.mean(axis=0)
    return (p.min(axis=0) + p.max(axis=0)) / 2


def _centre(p: np.ndarray, how: str = "bbox") -> np.ndarray:
    """Localisations relative to their particle's :func:`centre_of`."""
    return p - centre_of(p, how)


# ---------------------------------------------------------------------------- rendering
def _rotations_z(angles: np.ndarray) -> np.ndarray:
    """In-plane rotation matrices ``[B, 3, 3]`` about the viewing axis (float64)."""
    import torch

    from holly.method.geometry import rotation_about_z  # the one rotation about z

    return rotation_about_z(torch.as_tensor(angles, dtype=torch.float64)).numpy()


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

    from holly.method.render import render

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


def prefetched(blocks: Iterator[np.ndarray], depth: int = PREFETCH_BLOCKS) -> Iterator[np.ndarray]:
    """Run a block generator in a background thread, ``depth`` blocks ahead of the consumer.

    Rendering (torch) and writing (Blosc compression in zarr) both release the GIL, so they run
    side by side. An exception in the generator is re-raised in the consumer.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for block in blocks:
                if stop.is_set():
                    return
                q.put(block)
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="localise-render", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def _check_options(
    sigmas, perturbations, min_localisations, outlier_factor, max_points, size, margin, centre
) -> list[float]:
    """Validate :func:`localise`'s options; returns the distinct sigma levels, largest first."""
    # sigma schedule files repeat levels (10,10,10,10,9.0,...): one level per distinct value
    sigmas = sorted({float(s) for s in sigmas}, reverse=True)
    if not sigmas or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
        raise HollyError(f"--sigmas must be positive numbers, not {sigmas}")
    if perturbations < 1:
        raise HollyError(f"--perturbations must be >= 1, not {perturbations}")
    if min_localisations < 1:
        raise HollyError(f"--min-localisations must be >= 1, not {min_localisations}")
    if outlier_factor is not None and outlier_factor < 0:
        raise HollyError(f"--outlier-factor must be >= 0, not {outlier_factor}")
    if max_points is not None and max_points < 1:
        raise HollyError(f"--max-points must be >= 1, not {max_points}")
    if size < 8:
        raise HollyError(f"--size must be >= 8 pixels, not {size}")
    if not 0.0 <= margin < 1.0:
        raise HollyError(f"--margin must be in [0, 1), not {margin}")
    if centre not in CENTRES:
        raise HollyError(f"--centre must be one of {', '.join(CENTRES)}, not {centre!r}")
    return sigmas


def select_particles(
    particles: Particles,
    where,
    accepted,
    size_cut: bool,
    min_localisations: int,
    outlier_factor: float | None,
) -> np.ndarray:
    """Read-order indices of the particles to render: junk dropped (counted), the accepted
    list, the size cut, and outliers (see :func:`localise`)."""
    n_read = len(particles)
    counts = np.array([len(p) for p in particles.xy])
    selected = drop_junk(particles, np.arange(n_read), min_localisations, where)
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
        raise HollyError(f"{where}: no particles left after selection")
    selected = drop_outliers(particles, selected, outlier_factor, where)
    _warn_whole_field(particles, selected, where)
    return selected


def _write_localisation_table(writer: StoreWriter, particles: Particles, selected) -> dict:
    """Every localisation of the rendered particles as read (source units, y down, before
    ``max_points``): ``localisation_particle`` (read-order number), ``localisation_xy`` and
    one ``localisation_<name>`` array per kept column (z, sigma_xy, sigma_z). The images use the
    xy projection only; these keep what the file had. Returns the table's description."""
    units = particles.source.get("units", "unknown")
    extra_units = particles.source.get("extra_units", {})
    counts = [len(particles.xy[i]) for i in selected]
    dims = ["localisation"]
    writer.write_array(
        "localisation_particle",
        np.repeat(np.asarray(selected), counts).astype(np.int32),
        dimension_names=dims,
        attrs={"meaning": "particle (read-order number, as particle_id) of each localisation"},
    )
    writer.write_array(
        "localisation_xy",
        np.concatenate([particles.xy[i] for i in selected]).astype(np.float64),
        dimension_names=[*dims, "axis"],
        attrs={"units": units, "meaning": "x, y as read (y down), before --max-points"},
    )
    columns = {"xy": units}
    for name, values in sorted(particles.extra.items()):
        unit = extra_units.get(name, units)
        writer.write_array(
            f"localisation_{name}",
            np.concatenate([values[i] for i in selected]).astype(np.float64),
            dimension_names=dims,
            attrs={"units": unit, "meaning": f"{name} as read (not used by the rendering)"},
        )
        columns[name] = unit
    return {
        "n": int(sum(counts)),
        "columns": columns,
        "rendered": "xy projection" if "z" in columns else "xy",
    }


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
    pixel_size: float | None = None,
    min_localisations: int = 2,
    outlier_factor: float | None = 3.0,
    centre: str = "bbox",
    overwrite: bool = False,
    device: str = "cpu",
    prefetch: bool = True,
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
    fmt : {"auto", ...}
        ``auto`` or one of :data:`holly.data.locformats.FORMATS`.
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
        The column (SMAP field, DECODE dataset, Picasso ``/locs`` field) naming each row's
        particle; not for the MATLAB cell layouts (one particle per cell).
    mat_order : {"cell", "refs"}
        CEP152 .mat: particle numbering (see :func:`read_cep152_mat`).
    pixel_size : float, optional
        nm per camera pixel, for sources in pixels that do not say (overrides Picasso's .yaml,
        with a warning when they differ); required for ``tud-mat``.
    min_localisations : int
        Particles with fewer localisations, or whose localisations all coincide, are dropped
        with a counted warning (they render as single blobs).
    outlier_factor : float or None
        Particles reaching farther than this many times the median particle's reach from their
        centre are dropped with a warning (a whole field of view among picks would otherwise
        shrink every particle); None or 0 keeps them.
    centre : {"bbox", "centroid"}
        Centre each particle on its bounding-box centre or on its localisations' mean (see
        :func:`_centre`); the frame scale is measured from that centre.
    overwrite : bool
    device : str
        Torch device for rendering.
    prefetch : bool
        Render in a background thread while the store writer compresses and writes the
        previous blocks (the two overlap; same images either way).

    Returns
    -------
    LocaliseResult
    """
    t0 = time.perf_counter()
    sigmas = _check_options(
        sigmas, perturbations, min_localisations, outlier_factor, max_points, size, margin, centre
    )
    out = guard_output(out, [input_path, *([accepted] if accepted else [])], overwrite)
    # phase 1: read; phase 2: select; phase 3: scale to the frame; phase 4: render and write
    particles, files = read_localisations(
        input_path, fmt, particle_column=particle_column, mat_order=mat_order, pixel_size=pixel_size
    )
    n_read = len(particles)
    selected = select_particles(
        particles, input_path, accepted, size_cut, min_localisations, outlier_factor
    )

    xy = [_centre(particles.xy[i], centre) for i in selected]
    try:
        scale = frame_scale(xy, size, margin)  # pixels per source unit, from all localisations
    except HollyError as exc:
        raise HollyError(f"{input_path}: {exc}") from None
    nm_per_px = None if particles.nm_per_unit is None else particles.nm_per_unit / scale
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
        "pixel_size": pixel_size,
        "min_localisations": min_localisations,
        "outlier_factor": outlier_factor,
        "centre": centre,
        "pixels_per_unit": scale,
        "nm_per_unit": particles.nm_per_unit,
        "scale_rule": f"(1 - margin) * (size/2 - 0.5) / max distance from the {centre} centre",
    }
    with StoreWriter(
        out, n_images=n_images, height=size, width=size, sigmas=sigmas, overwrite=overwrite
    ) as writer:
        for sigma in writer.sigmas:
            blocks = render_particles(model, angles, sigma, size, device)
            writer.write_level(sigma, prefetched(blocks) if prefetch else blocks)
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
        columns = _write_localisation_table(writer, particles, selected)
        attrs = base_attrs(
            n_images=n_images,
            height=size,
            width=size,
            sigmas=sigmas,
            orientation=orientation,
            source=source,
            params=params,
            nm_per_px=nm_per_px,
        )
        attrs["n_localisations"] = [int(len(p)) for p in xy]
        attrs["precision"] = median_precision(particles, selected, scale, nm_per_px)
        if attrs["precision"]:
            log.info(
                "median localisation precision %.3g px: training renders the cloud that much wider "
                "(render.data_blur: auto, the default)",
                attrs["precision"]["median_px"],
            )
        attrs["localisations"] = columns
        writer.commit(attrs)
    seconds = time.perf_counter() - t0
    log.info("wrote %s: %d images x %d levels in %.1f s", out, n_images, len(sigmas), seconds)
    return LocaliseResult(
        out,
        n_read,
        int(selected.size),
        n_images,
        scale,
        [int(len(p)) for p in xy],
        seconds,
        nm_per_px,
    )


@dataclass
class StoreLocalisations:
    """The localisations of the particles an image store rendered, one array per particle.

    ``xy``: ``[n_i, 2]`` per particle, in nm where the store records the scale (else in the
    source's units, ``unit``), y down as read; ``particles``: each one's read-order number (the
    store's ``particle_id``); ``precision``: the median localisation precision ``holly
    localise`` recorded, in ``unit`` (None without one); ``sources``: the files the store was
    made from, with their sha256, and when it was written (for provenance)."""

    xy: list[np.ndarray]
    particles: np.ndarray
    unit: str
    nm_per_unit: float | None
    precision: float | None
    sources: dict
    centre: str = "bbox"  # how `holly localise` centred each particle's images (CENTRES)

    def centres(self) -> np.ndarray:
        """``[P, 2]``: the point each particle's images are drawn around (:func:`centre_of`), in
        the localisations' units (scaling commutes with both centres)."""
        return np.array([centre_of(p, self.centre) for p in self.xy]).reshape(-1, 2)


def read_store_localisations(path: str | os.PathLike) -> StoreLocalisations:
    """The localisation table that ``holly localise`` keeps in its store (``localisation_xy``,
    ``localisation_particle``), grouped by particle; a store without one is an error."""
    store = ImageStore.open(path)
    if "localisation_xy" not in store.group or "localisation_particle" not in store.group:
        raise HollyError(
            f"{path} has no localisation table: it was not made by `holly localise` (FITS "
            "stores hold images only). Make the store from the localisation file with "
            "`holly localise FILE --out STORE`."
        )
    xy = np.asarray(store.group["localisation_xy"][:], dtype=np.float64)
    owner = np.asarray(store.group["localisation_particle"][:])
    if xy.ndim != 2 or xy.shape[1] != 2 or len(owner) != len(xy) or not np.isfinite(xy).all():
        raise HollyError(f"{path}: localisation_xy / localisation_particle are damaged")
    params = store.attrs.get("params") or {}
    order = np.argsort(owner, kind="stable")
    particles, starts = np.unique(owner[order], return_index=True)
    groups = np.split(xy[order], starts[1:])
    source = store.attrs.get("source") or {}
    created = store.attrs.get("created")
    sources = {"source_files": source.get("files") or [], "store_created": created}
    centre = str(params.get("centre", "bbox"))  # stores made before --centre: the bounding box
    precision_px, per_unit = store.precision_px, params.get("pixels_per_unit")
    precision = precision_px / float(per_unit) if precision_px and per_unit else None
    if params.get("nm_per_unit"):
        scale = float(params["nm_per_unit"])
        precision = None if precision is None else precision * scale
        groups = [g * scale for g in groups]
        return StoreLocalisations(groups, particles, "nm", scale, precision, sources, centre)
    unit = str(source.get("units", "source units"))
    return StoreLocalisations(groups, particles, unit, None, precision, sources, centre)
