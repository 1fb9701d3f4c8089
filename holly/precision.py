"""Numeric precision and compilation of the training step (``train.precision``, ``train.compile``).

* ``fp32`` (default): everything in float32.
* ``bf16`` / ``fp16``: the pose CNN runs under :func:`torch.autocast` (convolutions and linear
  layers in the low precision, reductions in float32). The renderer, the loss and the point
  cloud always stay in float32: the model casts the CNN's outputs back before rendering. fp16
  uses a gradient scaler (:func:`grad_scaler`) against underflow; bf16 needs none.
* ``train.compile``: the pose encoder is wrapped with :func:`torch.compile`; the renderer's
  custom autograd function stays eager.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device):
    """Context manager running the enclosed ops in ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (a no-op pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(module)`` when ``enabled``, else ``module`` itself."""
    return torch.compile(module, dynamic=False) if enabled else module
