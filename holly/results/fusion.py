"""The particle-fusion baseline of an image store's localisations (``holly fuse``).

Runs :func:`holly.method.fusion.fuse` on the localisations ``holly localise`` kept in a store
(the particles holly trains on), and describes the result: its record (``--out`` JSON: the
parameters, how far the pairs agree, the fused super-particle's extents against the particles'
own, every particle's transform, provenance) and its figure (the fused density). The JSON's
owner is :mod:`holly.data.fusionrecord`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from holly.data.fusionrecord import FORMAT
from holly.data.localisations import StoreLocalisations
from holly.errors import HollyError
from holly.method.fusion import Fusion, FusionParams, fuse
from holly.results.structure import particle_extents, principal_extents
from holly.run.provenance import provenance

log = logging.getLogger(__name__)

CPU = torch.device("cpu")  # fusion runs on the CPU (numpy and torch's CPU FFT)
MIN_LOCALISATIONS = 3  # particles with fewer are left out: a pair or a point has no rotation


def default_sigma(locs: StoreLocalisations) -> float:
    """The registration kernel: the localisation precision, and at least 3 % of the
    particles' median width (a sharper kernel needs finer images and finer angles)."""
    width = float(np.median([np.ptp(p, axis=0).max() for p in locs.xy]))
    return max(locs.precision or 0.0, 0.03 * width)


def run_fusion(
    locs: StoreLocalisations, params: FusionParams, seed: int, store: str | os.PathLike
) -> tuple[dict, list[np.ndarray]]:
    """Fuse the store's particles; returns the record and the fused localisations."""
    keep = [i for i, p in enumerate(locs.xy) if len(p) >= MIN_LOCALISATIONS]
    if len(keep) < 3:
        raise HollyError(
            f"{store}: {len(keep)} particles with {MIN_LOCALISATIONS} or more localisations; "
            "fusion needs at least 3"
        )
    points = [locs.xy[i] for i in keep]
    started = time.monotonic()
    result = fuse(points, params, seed)
    fused = result.apply(points)
    record = fusion_record(result, params, seed, locs, keep, fused, store)
    record["seconds"] = round(time.monotonic() - started, 1)
    return record, fused


def fusion_record(
    result: Fusion,
    params: FusionParams,
    seed: int,
    locs: StoreLocalisations,
    keep: list[int],
    fused: list[np.ndarray],
    store: str | os.PathLike,
) -> dict:
    every = np.concatenate(fused)
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(fused)])
    own = particle_extents(np.concatenate([locs.xy[i] for i in keep]), owner)
    return {
        "holly_fusion": FORMAT,
        "store": str(store),
        "unit": locs.unit,
        "params": {**asdict(params), "seed": seed},
        "particles": len(keep),
        "particles_left_out": len(locs.xy) - len(keep),
        "localisations": int(len(every)),
        "pairs": result.pairs,
        "pairs_kept": result.pairs_kept,
        "pair_agreement": round(result.pair_agreement, 4),
        "bootstrap_moved": result.moved,
        "fused_extents": [round(float(e), 2) for e in principal_extents(every, 0.95)],
        "particle_extents": None if own is None else [round(float(e), 2) for e in own],
        "transforms": [
            {
                "particle": int(locs.particles[i]),
                "angle_deg": round(float(np.degrees(a)) % 360.0, 3),
                "shift": [round(float(v), 3) for v in s],
                "centroid": [round(float(v), 3) for v in c],
            }
            for i, a, s, c in zip(keep, result.angles, result.shifts, result.centroids, strict=True)
        ],
        "provenance": provenance({}, CPU, {"store": str(store), **locs.sources}, seed),
    }


def fused_density(fused: list[np.ndarray], pixel: float, sigma: float) -> tuple[np.ndarray, list]:
    """The fused localisations as an image (rows: y down, as the camera) and its extent
    ``[left, right, bottom, top]`` for ``imshow``."""
    every = np.concatenate(fused)
    lo = np.quantile(every, 0.005, axis=0) - 3 * sigma
    hi = np.quantile(every, 0.995, axis=0) + 3 * sigma
    nx, ny = (max(int(np.ceil(w / pixel)), 1) for w in hi - lo)
    hist, ye, xe = np.histogram2d(
        every[:, 1], every[:, 0], bins=[ny, nx], range=[(lo[1], hi[1]), (lo[0], hi[0])]
    )
    # blur by the registration kernel: separable Gaussian in pixel units
    s = max(sigma / pixel, 0.5)
    k = np.exp(-0.5 * (np.arange(-int(3 * s) - 1, int(3 * s) + 2) / s) ** 2)
    k /= k.sum()
    hist = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, hist)
    hist = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, hist)
    return hist, [xe[0], xe[-1], ye[-1], ye[0]]
