"""Training data: what a data source gives the training loop (:class:`Data`) and how it is built.

:func:`build_data` turns an experiment config into two splits (train, test) with
``images(idx, sigma) -> Tensor [B, H, W]``: simulated from a shape (:mod:`holly.data.simulate`)
or read from an image store (:mod:`holly.data.realdata`, which knows nothing of this module).
Training (:mod:`holly.train.trainer`) depends on this module, not on either source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from holly.checksums import sha256_array, sha256_file
from holly.config import ExperimentConfig
from holly.data.halves import take_half
from holly.data.realdata import store_splits
from holly.data.shapes import check_in_frame, is_shape_path, load_shape
from holly.data.simulate import simulate


@dataclass
class Data:
    """What training needs of a data source: two splits with ``images(idx, sigma)``."""

    train: object
    test: object
    ground_truth: np.ndarray | None
    inputs: dict[str, str]  # name -> checksum, for provenance
    scale: dict | None = None  # physical scale of the images (provenance "scale"), if known


def build_data(cfg: ExperimentConfig, device: torch.device) -> Data:
    """The data of ``cfg``; with ``validation.half`` only that half of the training particles."""
    data = _build_data(cfg, device)
    if cfg.validation.half is not None:
        data.train = take_half(data.train, cfg.validation.half, cfg.seed)
    return data


def _build_data(cfg: ExperimentConfig, device: torch.device) -> Data:
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
