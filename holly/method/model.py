"""The pose CNN, its output heads, and the learnable point cloud.

The network maps a normalised image to a pose (rotation, x/y translation) and an output sigma;
the renderer draws the shared point cloud at that pose, and that rendering is the prediction.
After training the CNN is discarded: the point cloud is the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from holly.config import ExperimentConfig
from holly.method import geometry
from holly.method.render import render, total_blur
from holly.method.viewprior import UNIFORM, PosePrior

# (in, out, kernel, stride, padding) of the PAPER-era encoder (HOLLy d60f6bf ... 2021-12).
PAPER_LAYERS = [
    (1, 16, 5, 2, 2),
    (16, 32, 3, 2, 1),
    (32, 32, 3, 1, 1),
    (32, 64, 3, 2, 1),
    (64, 64, 3, 1, 1),
    (64, 128, 3, 2, 1),
    (128, 128, 3, 1, 1),
    (128, 256, 3, 2, 1),
    (256, 256, 3, 1, 1),
    (256, 256, 3, 2, 1),
]
# HEAD (2022) encoder: conv1, four [k3 s1 widen, k2 s2 p1 downsample] blocks, conv6.
LATEST_LAYERS = [
    (1, 16, 5, 2, 2),
    (16, 32, 3, 1, 1),
    (32, 32, 2, 2, 1),
    (32, 64, 3, 1, 1),
    (64, 64, 2, 2, 1),
    (64, 128, 3, 1, 1),
    (128, 128, 2, 2, 1),
    (128, 256, 3, 1, 1),
    (256, 256, 2, 2, 1),
    (256, 256, 3, 1, 1),
]
HIDDEN = {"paper": 512, "latest": 256}
SIGMA_CLAMP = 14.0


def _conv_out(size: int, layers) -> int:
    for _, _, k, s, p in layers:
        size = (size + 2 * p - k) // s + 1
    return size


class PoseEncoder(nn.Module):
    """Conv stack (each conv + BatchNorm + LeakyReLU) and two fully connected layers.

    Parameters
    ----------
    variant : {"paper", "latest"}
        Layer table.
    height, width : int
        Input size; the first FC layer's width follows from it.
    n_out : int
        Raw outputs per image.
    """

    def __init__(self, variant: str, height: int, width: int, n_out: int):
        super().__init__()
        layers = PAPER_LAYERS if variant == "paper" else LATEST_LAYERS
        blocks = []
        for cin, cout, k, s, p in layers:
            blocks += [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*blocks)
        h, w = _conv_out(height, layers), _conv_out(width, layers)
        if h < 1 or w < 1:
            raise ValueError(f"image {height}x{width} is too small for the {variant} encoder")
        flat = layers[-1][1] * h * w
        self.fc1 = nn.Linear(flat, HIDDEN[variant])
        self.fc2 = nn.Linear(HIDDEN[variant], n_out)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, H, W]`` → raw outputs ``[B, n_out]``."""
        x = self.convs(images[:, None])  # [B, C, h, w]
        return self.fc2(self.act(self.fc1(x.flatten(1))))

    def init_weights(self, generator: torch.Generator | None) -> None:
        """Xavier-uniform weights; each layer's biases share one small constant (as the
        original), drawn from the seeded ``generator`` instead of Python's unseeded ``random``."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                bound = math.sqrt(6.0 / (_fan(m.weight, 1) + _fan(m.weight, 0)))
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 2 - 1)
                    m.weight.mul_(bound)
                    m.bias.fill_(float(torch.rand((), generator=generator)) * 1e-3)


@dataclass
class Prediction:
    """The K pose hypotheses of a batch and their renderings (K = ``model.pose_hypotheses``).

    Translation and sigma are shared by the hypotheses, so that sigma cannot absorb the error
    of a wrong rotation; which hypothesis fits best is decided by the loss
    (:func:`holly.method.loss.hypothesis_losses`).
    """

    hypotheses: torch.Tensor  # [B, K, 3, 3]
    translations: torch.Tensor  # [B, 2], model units
    sigma: torch.Tensor  # [B], pixels
    images: torch.Tensor  # [B, K, H, W], un-normalised renderings

    def rotations(self, best: torch.Tensor | None = None) -> torch.Tensor:
        """Rotations ``[B, 3, 3]``: hypothesis ``best [B]`` of each image (default: the first)."""
        if best is None:
            return self.hypotheses[:, 0]
        return self.hypotheses[torch.arange(len(best), device=best.device), best]


def head_offsets(k: int) -> torch.Tensor:
    """Fixed right-hand offsets ``[k, 3, 3]`` of the rotation heads: hypothesis ``j`` is
    ``R_j = 6D(raw_j) @ offset_j``.

    The heads start from nearly equal raw outputs (small initial weights), so without offsets all
    hypotheses would start at the same pose and stay together. The offsets are the identity and
    the half turns about x, y and z (the Klein four-group), then further half turns about the
    cube's face diagonals: object-side rotations, the kind of confusion near-symmetric shapes
    cause.
    """
    half_turn_axes = [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (1, 1, 0),
        (1, -1, 0),
        (0, 1, 1),
        (0, 1, -1),
        (1, 0, 1),
        (-1, 0, 1),
        (1, 1, 1),
        (1, -1, 1),
        (-1, 1, 1),
        (1, 1, -1),
        (2, 1, 0),
        (0, 2, 1),
    ]
    mats = [torch.eye(3)]
    for axis in half_turn_axes[: k - 1]:
        a = torch.tensor(axis, dtype=torch.float32)
        a = a / a.norm()
        mats.append(2 * torch.outer(a, a) - torch.eye(3))  # rotation by pi about a
    return torch.stack(mats)


@torch.no_grad()
def recompute_batchnorm_statistics(module: nn.Module, batches) -> None:
    """Recompute the running statistics of every BatchNorm layer in ``module`` from ``batches``
    (its inputs, equal-sized) at the current weights; its train/eval mode is left as it was.

    Why: training normalises each batch by its own statistics, but evaluation (held-out loss,
    held-out poses, the refinement's starting hypotheses) uses the running averages, an
    exponential average over the last ~10 training batches, each seen by older weights. That
    lag barely moves the statistics (~1 %) yet more than doubles the held-out loss at small
    sigma, where a slightly wrong pose costs much: at step 44,000 of the improved paper-length
    run, 1,071 with the running averages, 213 recomputed from 4 batches
    (docs/maintainer-notes.md). The result depends only on the weights and the batches, not on
    the training history, so a resumed run logs the same values.
    """
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    layers = [m for m in module.modules() if isinstance(m, norms)]
    was_training, momenta = module.training, [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, each weighted alike
    module.train()
    try:
        for images in batches:
            # the eager forward: a compiled encoder (train.compile) would recompile for the
            # changed momentum
            module.forward(images)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        module.train(was_training)


@dataclass(frozen=True)
class PoseHeads:
    """How the encoder's raw outputs ``[B, n_out]`` read as poses: ``n_hypotheses`` rotations
    of ``rot_dim`` numbers each (axis-angle or 6D), the x/y translation, then the sigma unless
    ``sigma_head`` is "none". The rotations keep to the pose ``prior`` (smoothly, see
    :mod:`holly.method.viewprior`)."""

    rot_dim: int
    n_hypotheses: int
    sigma_head: str
    max_trans: float  # model units
    prior: PosePrior = UNIFORM

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> PoseHeads:
        rot_dim = 3 if cfg.model.rotation == "axis_angle" else 6
        m = cfg.model
        prior = PosePrior.from_config(cfg)
        return cls(rot_dim, m.pose_hypotheses, m.sigma_head, cfg.data.max_trans, prior)

    @property
    def n_out(self) -> int:
        """Raw encoder outputs per image."""
        return self.n_hypotheses * self.rot_dim + 2 + int(self.sigma_head != "none")

    def decode(
        self, raw: torch.Tensor, offsets: torch.Tensor, sigma_in: float
    ) -> tuple[torch.Tensor, ...]:
        """Raw outputs ``[B, n_out]`` → hypotheses ``[B, K, 3, 3]`` (each times its head's
        offset, :func:`head_offsets`), translations ``[B, 2]``, sigma ``[B]`` (``sigma_in``
        without a sigma head)."""
        b, d, n_hyp = raw.shape[0], self.rot_dim, self.n_hypotheses
        k = n_hyp * d
        rot_raw = raw[:, :k].reshape(b * n_hyp, d)  # [B*K, d]
        if d == 3:
            rotations = geometry.axis_angle_to_matrix(rot_raw)
        else:
            rotations = geometry.rotation_6d_to_matrix(rot_raw)
        rotations = rotations.reshape(b, n_hyp, 3, 3)
        if n_hyp > 1:
            rotations = rotations @ offsets
        rotations = self.prior.project(rotations, soft=True)
        translations = 2 * self.max_trans * torch.tanh(raw[:, k : k + 2])
        head = self.sigma_head
        if head == "softplus":
            sigma = nn.functional.softplus(raw[:, k + 2], threshold=20)
        elif head == "clamped":
            sigma = nn.functional.softplus(raw[:, k + 2], threshold=12).clamp(max=SIGMA_CLAMP)
        else:
            sigma = raw.new_full((raw.shape[0],), float(sigma_in))
        return rotations, translations, sigma


class HollyModel(nn.Module):
    """Pose CNN + learnable point cloud ``points [N, 3]`` (x, y, z only; w is implicitly 1)."""

    def __init__(self, cfg: ExperimentConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.heads = PoseHeads.from_config(cfg)
        self.rot_dim, self.n_hypotheses = self.heads.rot_dim, self.heads.n_hypotheses
        r = cfg.render
        self.encoder = PoseEncoder(cfg.model.encoder, r.height, r.width, self.heads.n_out)
        init = torch.rand(cfg.model.num_points, 3, generator=generator) * 2 - 1
        if self.heads.prior.flat:
            # top views never show depth: start flat, and z gets no gradient (viewprior.py)
            init[:, 2] = 0.0
        self.points = nn.Parameter(init)
        # in the state dict (checkpoints), since the dead-head guard may re-seed them
        self.register_buffer("offsets", head_offsets(self.n_hypotheses))
        self.render_fn = render  # swappable for the dense reference (benchmarks)
        self.encoder.init_weights(generator)

    def recalibrate_batchnorm(self, batches) -> None:
        """Recompute the encoder's BatchNorm running statistics from ``batches`` (normalised
        images ``[B, H, W]``, equal-sized) at the current weights; why, in
        :func:`recompute_batchnorm_statistics`."""
        recompute_batchnorm_statistics(self.encoder, batches)

    def poses(self, images: torch.Tensor, sigma_in: float) -> tuple[torch.Tensor, ...]:
        """Poses of normalised ``images [B, H, W]`` (see :meth:`PoseHeads.decode`), nothing
        rendered."""
        # the cloud's precision (float32; float64 in the tests' reference) even under autocast
        raw = self.encoder(images).to(self.points.dtype)
        with torch.autocast(images.device.type, enabled=False):  # poses: float32
            return self.heads.decode(raw, self.offsets, sigma_in)

    def forward(self, images: torch.Tensor, sigma_in: float) -> Prediction:
        """Predict poses of normalised ``images [B, H, W]`` and render the cloud at them.

        All ``B * K`` hypotheses are drawn in one batched renderer call.
        """
        hypotheses, translations, sigma = self.poses(images, sigma_in)
        with torch.autocast(images.device.type, enabled=False):  # the renderer: float32
            b, n_hyp = hypotheses.shape[:2]
            r = self.cfg.render
            # A predicted sigma near 0 makes the Gaussian a delta; keep it a visible blob. The
            # data's own blur (localisation precision) is added to the level's (total_blur).
            rendered = self.render_fn(
                self.points,
                hypotheses.reshape(b * n_hyp, 3, 3),
                translations.repeat_interleave(n_hyp, 0),
                total_blur(sigma, r.data_blur).repeat_interleave(n_hyp, 0),
                r.height,
                r.width,
                order=r.order,
            )
        images_out = rendered.reshape(b, n_hyp, r.height, r.width)  # [B, K, H, W]
        return Prediction(hypotheses, translations, sigma, images_out)


def _fan(weight: torch.Tensor, dim: int) -> int:
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.shape[dim] * receptive
