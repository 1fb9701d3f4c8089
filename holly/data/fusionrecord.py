"""The particle-fusion record (``holly fuse --out FILE``): written and read here only.

A record holds every fused particle's transform into the fused frame (``angle_deg``,
``shift``, ``centroid``, in the store's localisation units, and ``mirrored``: face down, its
mirror image placed; records written before it had none and mean false), the parameters, the pairs'
agreement and provenance (:mod:`holly.results.fusion` completes it for ``holly fuse``). A run
with ``refine.fusion`` makes one of its own training particles (:func:`fuse_store`, kept as
its ``fusion.json``; :mod:`holly.train.fusionstart`) and starts its refinement from it
(:func:`fusion_start`): a record must be of the store being trained on, which its provenance
names by the store's creation time.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from holly.atomic import write_json
from holly.data.imagestore import ImageStore
from holly.data.localisations import StoreLocalisations, read_store_localisations
from holly.errors import HollyError
from holly.method.annealedfusion import faces_of
from holly.method.fusion import (
    Fusion,
    FusionParams,
    ImageFrames,
    fuse,
    fused_model_points,
    image_poses,
    place,
)

FORMAT = 1  # the record's layout (``holly_fusion``)
MIN_LOCALISATIONS = 3  # particles with fewer are left out: a pair or a point has no rotation
_KEYS = ("holly_fusion", "unit", "transforms", "provenance")


def write_fusion(path: str | os.PathLike, record: dict) -> None:
    write_json(path, record, allow_nan=False)


def read_fusion(path: str | os.PathLike) -> dict:
    """A fusion record, checked for its layout (HollyError naming the file otherwise)."""
    again = "make it with `holly fuse STORE --out FILE`"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise HollyError(f"fusion record {path} does not exist; {again}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HollyError(f"{path} is not a readable fusion record ({exc}); {again}") from None
    if not isinstance(record, dict) or any(k not in record for k in _KEYS):
        raise HollyError(f"{path} is not a `holly fuse` record (keys {', '.join(_KEYS)}); {again}")
    if record["holly_fusion"] != FORMAT:
        raise HollyError(
            f"{path}: fusion record layout {record['holly_fusion']!r}, this holly reads {FORMAT}; "
            f"{again}"
        )
    for t in record["transforms"]:
        values = [t.get("angle_deg"), *(t.get("shift") or []), *(t.get("centroid") or [])]
        if len(values) != 5 or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in values
        ):
            raise HollyError(f"{path}: a damaged transform {t!r}; {again}")
        if not isinstance(t.get("mirrored", False), bool):
            raise HollyError(f"{path}: a transform's mirrored is not true or false {t!r}; {again}")
    return record


def default_sigma(locs: StoreLocalisations) -> float:
    """The registration kernel: the localisation precision, and at least 3 % of the
    particles' median width (a sharper kernel needs finer images and finer angles)."""
    width = float(np.median([np.ptp(p, axis=0).max() for p in locs.xy]))
    return max(locs.precision or 0.0, 0.03 * width)


def fuse_store(
    locs: StoreLocalisations,
    params: FusionParams,
    seed: int,
    store: str | os.PathLike,
    particles: np.ndarray | None = None,
) -> tuple[dict, list[np.ndarray]]:
    """Fuse the store's particles (those numbered in ``particles``, default all) with at least
    :data:`MIN_LOCALISATIONS` localisations; returns the record's core (what the poses need:
    parameters, pairs, transforms, the store it is of) and the fused localisations."""
    wanted = (
        np.ones(len(locs.xy), bool) if particles is None else np.isin(locs.particles, particles)
    )
    keep = [i for i, p in enumerate(locs.xy) if wanted[i] and len(p) >= MIN_LOCALISATIONS]
    if len(keep) < 3:
        raise HollyError(
            f"{store}: {len(keep)} particles with {MIN_LOCALISATIONS} or more localisations; "
            "fusion needs at least 3"
        )
    points = [locs.xy[i] for i in keep]
    result = fuse(points, params, seed)
    return core_record(result, params, seed, locs, keep, store), result.apply(points)


def core_record(
    result: Fusion,
    params: FusionParams,
    seed: int,
    locs: StoreLocalisations,
    keep: list[int],
    store: str | os.PathLike,
) -> dict:
    """The record of a fusion of the store's particles ``keep`` (indices into ``locs``)."""
    return {
        "holly_fusion": FORMAT,
        "store": str(store),
        "unit": locs.unit,
        "params": {**asdict(params), "seed": seed},
        "particles": len(keep),
        "particles_left_out": len(locs.xy) - len(keep),
        "localisations": int(sum(len(locs.xy[i]) for i in keep)),
        "method": params.method,
        "chosen": result.chosen,
        "fits": {m: round(v, 5) for m, v in result.fits.items()},
        "pairs": result.pairs,
        "pairs_kept": result.pairs_kept,
        "pair_agreement": _rounded(result.pair_agreement),
        "posterior_peak": _rounded(result.posterior_peak),
        # a site template's sites in the fused frame (params.sites of them), else null
        "sites": None if result.sites is None else np.round(result.sites, 3).tolist(),
        "bootstrap_moved": result.moved,
        # particles placed face down, where the kept fusion tried both faces; else null
        "mirrored": None if result.mirrored is None else int(np.sum(result.mirrored)),
        "transforms": [
            {
                "particle": int(locs.particles[i]),
                "angle_deg": round(float(np.degrees(a)) % 360.0, 3),
                "shift": [round(float(v), 3) for v in s],
                "centroid": [round(float(v), 3) for v in c],
                "mirrored": bool(m),
            }
            for i, a, s, c, m in zip(
                keep,
                result.angles,
                result.shifts,
                result.centroids,
                faces_of(result.mirrored, len(keep)),
                strict=True,
            )
        ],
        "provenance": {"inputs": {"store": str(store), **locs.sources}},
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def fusion_quality(record: dict) -> str:
    """How the fusion went, in words: the pairs' agreement (by pairs, and records made before
    the annealed method) or the median posterior peak (by annealing), and which method was
    kept where both ran."""
    if record.get("pair_agreement") is not None:
        words = f"pairs agreeing {100 * record['pair_agreement']:.0f} %"
    else:
        peak = record.get("posterior_peak")
        words = "annealed" + ("" if peak is None else f", median posterior peak {peak:.2f}")
    params = record.get("params") or {}
    if params.get("sites"):
        words += f" on a template of {params['sites']} sites"
        if params.get("symmetry", 1) > 1:
            words += f" in {params['symmetry']}-fold orbits"
    elif params.get("symmetry", 1) > 1:
        words += f", {params['symmetry']}-fold symmetry declared"
    if record.get("mirrored") is not None:  # the kept fusion tried both faces
        words += f", either face ({record['mirrored']} face down)"
    if record.get("method") == "both" and len(record.get("fits") or {}) > 1:
        words += f" (kept over {'pairs' if record.get('chosen') == 'anneal' else 'annealing'})"
    return words


def fused_from_record(locs: StoreLocalisations, record: dict) -> list[np.ndarray]:
    """The store's localisations placed by a record's transforms (the fused particles)."""
    by_particle = {int(p): xy for p, xy in zip(locs.particles, locs.xy, strict=True)}
    placed = []
    for t in record["transforms"]:
        if t["particle"] not in by_particle:
            raise HollyError(f"the fusion record names particle {t['particle']}, not in the store")
        placed.append(
            place(
                by_particle[t["particle"]],
                np.radians(t["angle_deg"]),
                np.asarray(t["shift"]),
                np.asarray(t["centroid"]),
                t.get("mirrored", False),
            )
        )
    return placed


@dataclass
class FusionStart:
    """A fusion as a start for training on its store (model units, holly's frame)."""

    angles: np.ndarray  # [I] per store image: rotation about the viewing axis, radians
    shifts: np.ndarray  # [I, 2] per store image: image-plane shift
    fused: np.ndarray  # [I] bool: the image's particle was fused (else angles/shifts are 0)
    points: np.ndarray  # [N, 2] the fused localisations, centred on their mean
    # [I] bool: the image shows the fused particle face down (image_rotations)
    mirrored: np.ndarray

    def for_images(self, store_indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """Angles ``[B]``, shifts ``[B, 2]``, the fused mask ``[B]`` and the face-down mask
        ``[B]`` of store images."""
        i = np.asarray(store_indices, dtype=np.int64)
        return self.angles[i], self.shifts[i], self.fused[i], self.mirrored[i]


def fusion_start(
    store_path: str | os.PathLike,
    record: dict | str | os.PathLike,
    locs: StoreLocalisations | None = None,
) -> FusionStart:
    """Every image's pose against the fused particle, and the fused localisations, in the
    model frame of ``store_path``'s images (:func:`holly.method.fusion.image_poses`).

    The record (or its file) must come from this store (its provenance's ``store_created``): a
    record of another store, or of this store made again, would pair transforms with other
    particles. ``locs``: the store's localisations if the caller has read them already.
    """
    named = record if not isinstance(record, dict) else record.get("store", "the fusion record")
    record = record if isinstance(record, dict) else read_fusion(record)
    store = ImageStore.open(store_path)
    locs = locs if locs is not None else read_store_localisations(store_path)
    made_from = (record["provenance"].get("inputs") or {}).get("store_created")
    if made_from != locs.sources["store_created"]:
        raise HollyError(
            f"the fusion of {named} was made from a store created {made_from}, but "
            f"{store_path} was created {locs.sources['store_created']}; run the fusion again "
            "(`holly fuse`; a run's own fusion.json is made again when it starts afresh)"
        )
    if record["unit"] != locs.unit:
        raise HollyError(
            f"the fusion of {named} is in {record['unit']}, {store_path} in {locs.unit}"
        )
    placed = np.concatenate(fused_from_record(locs, record))
    origin = model_origin(record, placed)
    # model units per localisation unit: holly localise's pixels per source unit, per nm if the
    # localisations were read in nm, over the model unit's size / 4 pixels
    per_source = float(store.attrs["params"]["pixels_per_unit"]) / (store.height / 4)
    per_length = per_source / (locs.nm_per_unit or 1.0)
    angles, shifts, fused, down = _image_poses(store, locs, record, origin, per_length)
    return FusionStart(angles, shifts, fused, fused_model_points(placed, per_length, origin), down)


def model_origin(record: dict, placed: np.ndarray) -> np.ndarray:
    """Where the model's origin sits in the fused frame: the declared symmetry's axis, the
    fused frame's origin, when the annealing that averaged its template about it was kept;
    else (no symmetry, or the pairs kept: they ignore it) the fused localisations' mean."""
    declared = (record.get("params") or {}).get("symmetry", 1) > 1
    return np.zeros(2) if declared and record.get("chosen") == "anneal" else placed.mean(axis=0)


def _image_poses(store, locs, record, origin, per_length):
    """Poses of every store image whose particle the record transforms."""
    ids = np.asarray(store.particle_ids)
    copy = np.asarray(store.group["rotation_angle"][:], dtype=np.float64)
    centres = dict(zip(locs.particles.tolist(), locs.centres(), strict=True))
    by_particle = {int(t["particle"]): t for t in record["transforms"]}
    fused = np.array([int(p) in by_particle for p in ids])
    rows = [by_particle[int(p)] for p in ids[fused]]
    frames = ImageFrames(
        np.array([centres[int(p)] for p in ids[fused]]).reshape(-1, 2), copy[fused], per_length
    )
    angles, shifts = np.zeros(len(ids)), np.zeros((len(ids), 2))
    down = np.zeros(len(ids), bool)
    down[fused] = [t.get("mirrored", False) for t in rows]
    angles[fused], shifts[fused] = image_poses(
        np.radians([t["angle_deg"] for t in rows]),
        np.array([t["shift"] for t in rows]).reshape(-1, 2),
        np.array([t["centroid"] for t in rows]).reshape(-1, 2),
        frames,
        origin,
        down[fused],
    )
    return angles, shifts, fused, down
