"""The CNN evaluated: its loss on the held-out images, its rotation hypotheses of any images, and
the held-out poses and sample renderings of the final files.

Every evaluation first recomputes BatchNorm's statistics for the current weights
(:mod:`holly.train.calibration`) and puts the model in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch

from holly.config import ExperimentConfig
from holly.method import refine
from holly.method.loss import normalise
from holly.train.calibration import BatchNormCalibration
from holly.train.cnnstep import CnnStep, best_rendering
from holly.train.refinement import Refinement


class Evaluation:
    """The CNN of ``cnn`` evaluated, in batches of the training batch size; the held-out images
    are the first ``train.test_images`` of ``test_set`` (``test_idx``)."""

    def __init__(
        self, cfg: ExperimentConfig, test_set, cnn: CnnStep, calibration: BatchNormCalibration
    ):
        self.test_set, self.cnn, self.calibration = test_set, cnn, calibration
        self.batch_size, self.normalise = cfg.train.batch_size, cfg.loss.normalise
        self.test_idx = torch.arange(min(cfg.train.test_images, len(test_set)))

    def evaluating(self) -> None:
        """BatchNorm statistics of the current weights, then eval mode."""
        self.calibration.calibrate(self.cnn.model, self.cnn.precision)
        self.cnn.model.eval()

    @torch.no_grad()
    def test_loss(self, sigma: float) -> float:
        """Mean loss over the held-out images (full batches, unless there is only one)."""
        self.evaluating()
        b = self.batch_size
        losses = [
            float(self.cnn.loss_on(self.test_set.images(idx, sigma), sigma)[0])
            for idx in self.test_idx.split(b)
            if len(idx) == b or len(self.test_idx) < b
        ]
        return float(np.mean(losses)) if losses else float("nan")

    @torch.no_grad()
    def hypotheses(self, images: torch.Tensor, sigma: float) -> torch.Tensor:
        """The CNN's rotation hypotheses ``[I, K, 3, 3]`` of ``images [I, H, W]``, in batches
        (poses only: nothing is rendered)."""
        self.evaluating()
        out = []
        for chunk in images.split(self.batch_size):
            target = normalise(chunk, self.normalise)
            with self.cnn.precision.autocast():
                out.append(self.cnn.model.poses(target, sigma)[0])
        return torch.cat(out)

    @torch.no_grad()
    def test_predictions(self, sigma: float) -> tuple[dict, dict]:
        """The CNN's poses of the held-out images at ``sigma`` (``test_poses.npz`` arrays) and
        up to 16 samples of their inputs and best renderings (``samples.npz`` arrays)."""
        self.evaluating()
        preds, ins, outs = [], [], []
        for idx in self.test_idx.split(self.batch_size):
            images = self.test_set.images(idx, sigma)
            _, pred, best, target = self.cnn.loss_on(images, sigma)
            output = best_rendering(pred.images, best, self.normalise)
            moved = (pred.rotations(best), pred.translations, pred.sigma, pred.hypotheses, best)
            preds.append(tuple(x.cpu() for x in moved))
            ins.append(target.cpu())
            outs.append(output.cpu())
        return pose_arrays(preds, sigma), sample_arrays(ins, outs, sigma)


def pose_arrays(preds: list[tuple], sigma: float) -> dict:
    """``test_poses.npz``'s CNN arrays from the batches' (rotation of the best hypothesis,
    translation, sigma, hypotheses, best hypothesis)."""
    rot_amortised, trans_pred, sigma_pred, hypotheses, best = (
        torch.cat(x).numpy() for x in zip(*preds, strict=True)
    )
    return {
        "rot_pred": rot_amortised,
        "rot_amortised": rot_amortised,
        "hypotheses": hypotheses,
        "best_hypothesis": best,
        "trans_pred": trans_pred,
        "sigma_in": np.full(len(rot_amortised), sigma),
        "sigma_pred": sigma_pred,
    }


def sample_arrays(ins: list[torch.Tensor], outs: list[torch.Tensor], sigma: float) -> dict:
    """``samples.npz``: up to 16 inputs and best renderings spread over the test set, so they
    show different particles rather than the augmentation copies of the first one."""
    inputs = torch.cat(ins)
    pick = torch.linspace(0, len(inputs) - 1, min(16, len(inputs))).long()
    return {
        "inputs": inputs[pick].numpy(),
        "renderings": torch.cat(outs)[pick].numpy(),
        "sigma": sigma,
    }


@torch.no_grad()
def final_poses(
    evaluation: Evaluation, refinement: Refinement | None, sigma: float, device
) -> tuple[dict, dict]:
    """The final files' ``test_poses.npz`` and ``samples.npz`` arrays at ``sigma``: the CNN's
    poses, the held-out images, the refined poses when the run has a ``refinement`` stage, and
    the true poses when the data has them."""
    test, idx = evaluation.test_set, evaluation.test_idx
    poses, samples = evaluation.test_predictions(sigma)
    # per-image normalised, half precision: for `holly evaluate`'s pose-fit diagnostic
    poses["images"] = refine.normalised(test.images(idx, sigma)).cpu().numpy().astype(np.float16)
    if refinement is not None:
        table = refinement.test_poses(lambda s: test.images(idx, s))
        rot, shift, sig = table.pose(torch.arange(len(table), device=device))
        poses |= {
            "rot_pred": rot.cpu().numpy(),
            "shift_refined": shift.cpu().numpy(),
            "sigma_refined": sig.cpu().numpy(),
        }
    truth = {}  # real data: the poses alone, for their view range (holly/results/views.py)
    if hasattr(test, "rotations"):
        truth = {
            "rot_true": test.rotations(idx).cpu().numpy(),
            "trans_true": test.translations_of(idx).cpu().numpy(),
        }
    return {**truth, **poses}, samples
