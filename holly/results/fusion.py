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

import numpy as np
import torch

from holly.data.fusionrecord import fuse_store
from holly.data.localisations import StoreLocalisations
from holly.method.fusion import FusionParams
from holly.results.structure import particle_extents, principal_extents
from holly.run.provenance import provenance

log = logging.getLogger(__name__)

CPU = torch.device("cpu")  # fusion runs on the CPU (numpy and torch's CPU FFT)


def run_fusion(
    locs: StoreLocalisations, params: FusionParams, seed: int, store: str | os.PathLike
) -> tuple[dict, list[np.ndarray]]:
    """Fuse the store's particles; returns the record and the fused localisations."""
    started = time.monotonic()
    record, fused = fuse_store(locs, params, seed, store)
    every = np.concatenate(fused)
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(fused)])
    kept = {t["particle"] for t in record["transforms"]}
    own = particle_extents(
        np.concatenate([xy for p, xy in zip(locs.particles, locs.xy, strict=True) if p in kept]),
        owner,
    )
    record["fused_extents"] = [round(float(e), 2) for e in principal_extents(every, 0.95)]
    record["particle_extents"] = None if own is None else [round(float(e), 2) for e in own]
    inputs = record["provenance"]["inputs"]
    record["provenance"] = provenance({}, CPU, inputs, seed)
    record["seconds"] = round(time.monotonic() - started, 1)
    return record, fused


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
