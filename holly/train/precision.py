"""Numeric precision and compilation of the training step (``train.precision``, ``train.compile``).

* ``fp32`` (default): everything in float32.
* ``bf16`` / ``fp16``: the pose CNN runs under :func:`torch.autocast` (convolutions and linear
  layers in the low precision, reductions in float32). The renderer, the loss and the point
  cloud always stay in float32: the model casts the CNN's outputs back before rendering. fp16
  uses a gradient scaler (:func:`grad_scaler`) against underflow; bf16 needs none, so a bf16
  step checks its own gradients (:class:`FiniteGradients`): oneDNN's AVX-512 bf16
  convolution kernels have returned NaN weight gradients for feature maps of 1x1 pixel (the
  encoder's last layers at 32 px), and an unchecked step would carry them into the weights.
* ``train.compile``: the pose encoder is wrapped with :func:`torch.compile`; the renderer's
  custom autograd function stays eager.
* ``train.channels_last``: the pose encoder's weights in channels-last layout. The input images
  have one channel, so they already are channels-last and every convolution then runs in NHWC,
  which oneDNN on x86 CPUs runs faster (README, Performance: with bf16 the step is ~1.5x
  faster on an AVX-512 BF16 CPU). Same arithmetic, other summation order.
"""

from __future__ import annotations

import contextlib

import torch

from holly.errors import HollyError

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
    # The loss is a sum over pixels (~10^3), so gradients are large: start unscaled (the default
    # 2^16 overflows for many steps, each one skipped) and let the scaler grow it if it can.
    return torch.amp.GradScaler(device.type, init_scale=1.0, enabled=precision == "fp16")


class StepPrecision:
    """The training step's precision and compilation (``train.precision``, ``train.compile``).

    Use ``with sp.autocast(): pred = model(...)`` for the forward pass and
    ``sp.backward_step(loss, opt)`` instead of ``loss.backward(); opt.step()``; the fp16 gradient
    scaler's state goes into checkpoints via :meth:`state_dict` so a resume stays exact.
    """

    def __init__(
        self,
        precision: str,
        device: torch.device,
        compile: bool = False,
        channels_last: bool = False,
    ):
        autocast(precision, device)  # validates
        self.precision, self.device, self.compile = precision, device, compile
        self.channels_last = channels_last
        self.scaler = grad_scaler(precision, device)
        self.gradients = FiniteGradients()

    def prepare(self, model: torch.nn.Module) -> None:
        """Lay out and compile the model's pose encoder in place (keeps its state-dict keys)."""
        self.gradients.name_parameters(model)
        if self.channels_last:
            model.encoder.to(memory_format=torch.channels_last)
        if self.compile:
            model.encoder.compile(dynamic=False)

    def autocast(self):
        return autocast(self.precision, self.device)

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        if self.precision == "bf16":
            # fp16's scaler skips a step whose gradients overflow; bf16 has no scaler, so a
            # non-finite gradient is a defect (not an overflow) and stops the run before the
            # optimiser writes it into the weights. One host read per step, as fp16's scaler.
            self.gradients.check(opt)
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.scaler.load_state_dict(state)


class FiniteGradients:
    """The bf16 step's guard: a non-finite gradient stops the run before the optimiser writes
    it into the weights, naming the parameters (:meth:`name_parameters`) that hold one."""

    def __init__(self):
        self.names: dict[int, str] = {}

    def name_parameters(self, model: torch.nn.Module) -> None:
        self.names = {id(p): name for name, p in model.named_parameters()}

    def check(self, opt: torch.optim.Optimizer) -> None:
        """Raise :class:`HollyError`, naming the parameters, when a gradient is not finite."""
        grads = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if not grads or bool(torch.stack([torch.isfinite(p.grad).all() for p in grads]).all()):
            return
        bad = [
            f"{self.names.get(id(p), 'a parameter')} "
            f"({int((~torch.isfinite(p.grad)).sum())} of {p.grad.numel()})"
            for p in grads
            if not bool(torch.isfinite(p.grad).all())
        ]
        raise HollyError(
            f"train.precision bf16: non-finite gradients in {', '.join(bad)}; the step was not "
            "applied, so the weights and the last checkpoint are intact. oneDNN's AVX-512 bf16 "
            "convolution kernels have produced these on CPUs for feature maps of 1x1 pixel "
            "(32-px images); use train.precision: fp32, images of 64 px or more, or run with "
            "the environment variable ONEDNN_MAX_CPU_ISA=AVX2"
        )
