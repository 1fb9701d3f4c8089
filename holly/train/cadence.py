"""What the training loop (:meth:`holly.train.trainer.Trainer.run`) does around its steps: the
start files, the finite check, ``metrics.csv`` rows (with the held-out loss and, in the
amortised phase, the dead-head guard), snapshots and checkpoints on their cadence
(``train.log_every``, ``snapshot_every``, ``checkpoint_every``), and the final files.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from holly.errors import HollyError
from holly.train.evaluation import final_poses
from holly.train.fusionstart import start_fusion
from holly.train.progress import MetricsLog
from holly.train.runfiles import RunFiles
from holly.train.startpoints import give_start_points
from holly.units import run_units


class Cadence:
    """The loop's chores for ``trainer`` (a :class:`~holly.train.trainer.Trainer`), from its
    current step on; making one writes the start files and plans the streaming reads."""

    def __init__(self, trainer):
        self.trainer, self.t = trainer, trainer.cfg.train
        give_start_points(trainer)  # refine.start_points: read now, its checksum in provenance
        self.files = start_files(trainer)
        start_fusion(trainer)  # refine.fusion: before the CNN phase, so a bad store fails early
        trainer.amortised.plan.plan_reads(trainer.step)
        self.metrics = MetricsLog(trainer.run_folder, trainer.step, trainer.total_steps)

    def after_step(self, train_loss: torch.Tensor, sigma_pred: torch.Tensor, amortised: bool):
        """The finite check (on a GPU only where the host is read anyway), the log row, the
        snapshot and the checkpoint that are due after the trainer's step."""
        tr, t, step = self.trainer, self.t, self.trainer.step
        # reading the loss syncs a GPU: there it is checked only at steps that read the host
        every = (t.log_every, t.snapshot_every, t.checkpoint_every)
        reads = step == tr.total_steps or any(step % n == 0 for n in every)
        if tr.device.type == "cpu" or reads:
            check_finite(step, float(train_loss), tr.model.points, tr.run_folder.checkpoints)
        self.metrics.tick()
        if step % t.log_every == 0 or step in (tr.amortised.plan.steps, tr.total_steps):
            self.log_step(float(train_loss), float(sigma_pred), amortised)
        if step % t.snapshot_every == 0:
            self.files.snapshot(step, points_of(tr.model))
        if step % t.checkpoint_every == 0:
            tr.save_checkpoint()

    def log_step(self, train_loss: float, sigma_pred: float, amortised: bool) -> None:
        """A ``metrics.csv`` row and log line; at amortised log steps, the dead-head guard."""
        tr, phase = self.trainer, self.trainer.amortised
        last = min(tr.step, phase.plan.steps) - 1
        sigma, elapsed = phase.plan.schedule.sigma_at(last), self.metrics.elapsed()
        groups = phase.cnn.opt.param_groups
        row = {
            "step": tr.step,
            "epoch": last // phase.plan.schedule.steps_per_epoch,
            "train_loss": train_loss,
            # the refinement's loss is per-image normalised: no comparable test loss
            "test_loss": phase.evaluation.test_loss(sigma) if amortised else float("nan"),
            "sigma_in": sigma,
            "sigma_pred_mean": sigma_pred,
            "lr_cnn": groups[0]["lr"],
            "lr_points": groups[1]["lr"],
            "images_per_s": (tr.step - self.metrics.first_step) * self.t.batch_size / elapsed,
            "elapsed_s": elapsed,
            "phase": "amortised" if amortised else "refine",
            "head_usage": phase.heads.usage() if amortised else "",
        }
        if amortised:  # the guard runs after the row has read the window's wins
            phase.guard_heads(tr.step)
        self.metrics.append(row)

    def finish(self) -> None:
        """The end of the loop (after the last checkpoint): the final files."""
        self.metrics.close()
        write_final_files(self.trainer, self.files)


def start_files(tr) -> RunFiles:
    """The run's files (:class:`RunFiles`), once it has written the start files: config,
    provenance, initial cloud and ground truth."""
    # model units in px, and in nm when the image store knows its pixel size
    units = run_units(tr.cfg.render.height, (tr.data.scale or {}).get("nm_per_px"))
    files = RunFiles(tr.run_folder, tr.cfg, units)
    files.start(
        tr.step,
        tr.data,
        tr.initial_points,
        device=tr.device,
        seed=tr.seed,
        training_length=tr.amortised.plan.length.record(),  # epochs, steps, short?
    )
    return files


@torch.no_grad()
def write_final_files(tr, files: RunFiles) -> None:
    """Test-set poses and sample renderings at the final sigma, then ``points.ply``."""
    refinement = tr.refinement if tr.cfg.refine.steps > 0 else None
    sigma = tr.amortised.plan.final_sigma()
    poses, samples = final_poses(tr.amortised.evaluation, refinement, sigma, tr.device)
    files.finish(tr.step, points_of(tr.model), poses, samples)


def check_finite(step: int, train_loss: float, points: torch.Tensor, checkpoints) -> None:
    """Stop with a clear error when the loss or the cloud stops being finite."""
    if math.isfinite(train_loss) and bool(torch.isfinite(points).all()):
        return
    raise HollyError(
        f"training diverged at step {step}: the loss is {train_loss} or the point "
        "cloud holds non-finite values; lower train.lr / train.points_lr or check the data "
        f"(the last good checkpoint is kept in {checkpoints})"
    )


def points_of(model) -> np.ndarray:
    return model.points.detach().cpu().numpy()
