"""Training data: what a data source gives the training loop (:class:`Data`) and how it is built.

:func:`build_data` turns an experiment config into two splits (train, test) with
``images(idx, sigma) -> Tensor [B, H, W]``: simulated from a shape (:mod:`holly.data.simulate`)
or read from an image store (:mod:`holly.data.realdata`, which knows nothing of this module).
Training (:mod:`holly.train.trainer`) depends on this module, not on either source.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from holly.checksums import sha256_array, sha256_file
from holly.config import ExperimentConfig
from holly.data.halves import take_half
from holly.data.realdata import store_splits
from holly.data.shapes import check_in_frame, is_shape_path, load_shape
from holly.data.simulate import simulate
from holly.errors import HollyError

log = logging.getLogger(__name__)


@dataclass
class Data:
    """What training needs of a data source: two splits with ``images(idx, sigma)``."""

    train: object
    test: object
    ground_truth: np.ndarray | None
    inputs: dict[str, str]  # name -> checksum, for provenance
    scale: dict | None = None  # physical scale of the images (provenance "scale"), if known


def resolve_data_blur(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``render.data_blur`` ``store`` or ``auto`` replaced by the number of pixels
    it stands for (the median localisation precision ``holly localise`` recorded in
    ``data.store``; ``auto`` without one: 0), so the run's config records the value it trained
    with; a number stays as given."""
    mode = cfg.render.data_blur
    if not isinstance(mode, str):
        return cfg
    from holly.data.imagestore import ImageStore

    on_store = cfg.data.source == "zarr" and bool(cfg.data.store)
    if mode == "store" and not on_store:
        raise HollyError(
            "render.data_blur is 'store' but data.source is not 'zarr' with a data.store: "
            "give it as a number of pixels (0 for holly's own renders)"
        )
    blur = ImageStore.open(cfg.data.store).precision_px if on_store else None
    if blur is None and mode == "store":
        raise HollyError(
            f"render.data_blur is 'store' but {cfg.data.store} records no localisation "
            "precision (its table had no sigma_xy column, or it was made before holly "
            "recorded one): set render.data_blur to the precision in pixels, or 0"
        )
    if blur is None:
        log.info("render.data_blur: 0 (%s records no localisation precision)", cfg.data.store)
        blur = 0.0
    else:
        log.info(
            "render.data_blur: %.3g px, the localisation precision of %s", blur, cfg.data.store
        )
    return dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, data_blur=blur))


def build_data(cfg: ExperimentConfig, device: torch.device) -> Data:
    """The data of ``cfg``; with ``validation.half`` only that half of the training particles."""
    data = _build_data(cfg, device)
    if cfg.validation.half is not None:
        data.train = take_half(data.train, cfg.validation.half, cfg.seed)
    return data


def _build_data(cfg: ExperimentConfig, device: torch.device) -> Data:
    if cfg.refine.fusion and cfg.data.source != "zarr":
        raise HollyError(
            "refine.fusion is on, but data.source is not 'zarr': a particle fusion is of the "
            "localisations in a `holly localise` store (data.store)"
        )
    if cfg.data.source == "zarr":
        train, test, inputs, scale = store_splits(cfg, device)
        return Data(train, test, None, inputs, scale)
    vertices = load_shape(cfg.data.shape, cfg.data.fit_radius)
    check_in_frame(
        vertices, cfg.data.shape, cfg.render.height, cfg.render.width, cfg.data.max_trans
    )
    checksum = (
        sha256_file(cfg.data.shape) if is_shape_path(cfg.data.shape) else sha256_array(vertices)
    )
    train, test = simulate(vertices, cfg)
    return Data(train.to(device), test.to(device), vertices, {cfg.data.shape: checksum})
