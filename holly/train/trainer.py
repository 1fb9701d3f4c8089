"""The trainer: the amortised CNN phase and the training loop, with exact resume.

The loop (:meth:`Trainer.run`) restores, writes the start files, then runs CNN steps and
refinement steps (:mod:`holly.train.refinement`), logging ``metrics.csv``, writing snapshots and
checkpoints (:mod:`holly.run.checkpoint`), and ends with the final files
(:mod:`holly.train.runfiles`).

One seed drives everything: the initial cloud and CNN weights, the simulated data, and the order
of training items (a fresh permutation per epoch, derived from ``(seed, epoch)``). Since nothing
else is random during training, and the checkpoint holds the batches that the evaluation-time
BatchNorm statistics come from, a run resumed from a checkpoint writes every file exactly as an
uninterrupted run would (on the same device and thread count); a finished run resumed is left
untouched.

The run folder layout is documented in ``docs/architecture.md``; ``points.ply`` is written last
and marks a finished run.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from holly.atomic import refuse_inputs
from holly.config import ExperimentConfig, from_dict
from holly.data.datasets import Data, build_data  # noqa: F401  (Data: re-exported)
from holly.data.halves import training_seed
from holly.data.shapes import is_shape_path
from holly.data.sigmas import SHIPPED, load_sigma_list
from holly.errors import HollyError
from holly.method import refine
from holly.method.curriculum import SigmaSchedule, training_length
from holly.method.loss import hypothesis_losses, min_over_hypotheses, normalise
from holly.method.model import HollyModel
from holly.run import checkpoint
from holly.run.runfolder import METRIC_COLUMNS, RunFolder
from holly.train.heads import HeadWins
from holly.train.precision import StepPrecision
from holly.train.refinement import Refinement
from holly.train.runfiles import RunFiles
from holly.units import run_units

log = logging.getLogger(__name__)

__all__ = ["METRIC_COLUMNS", "Trainer", "train"]
# Training batches that BatchNorm's statistics are recomputed from before the CNN is evaluated
# (HollyModel.recalibrate_batchnorm): at step 44,000 of the improved paper-length run the held-out
# loss with statistics from 1 / 4 / 32 batches was 221 / 213 / 211, against 1,071 with the running
# averages.
CALIBRATION_BATCHES = 4


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HollyError("device 'cuda' requested but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for model initialisation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(model: HollyModel, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """AdamW with two groups: CNN (lr, weight decay) and points (points_lr, no decay by default)."""
    t = cfg.train
    groups = [
        {"params": model.encoder.parameters(), "lr": t.lr, "weight_decay": t.weight_decay},
        {"params": [model.points], "lr": cfg.points_lr, "weight_decay": t.points_weight_decay},
    ]
    return torch.optim.AdamW(groups)


class MetricsLog:
    """``metrics.csv``, one row per log step, each also logged as a line with an ETA; on resume
    (``first_step`` > 0), rows after the checkpoint are dropped. Its clock times the rows'
    throughput from ``first_step`` on, of a run of ``total_steps``."""

    def __init__(self, run: RunFolder, first_step: int, total_steps: int):
        self.run, self.first_step, self.total_steps = run, first_step, total_steps
        run.start_metrics(run.metric_rows(first_step) if first_step else [])
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def append(self, row: dict) -> None:
        self.run.append_metrics(row)
        step = row["step"]
        # the ETA is for log files (Snakemake's), where there is no progress bar
        eta = row["elapsed_s"] / (step - self.first_step) * (self.total_steps - step)
        log.info(
            "step %d/%d loss %.2f test %.2f sigma %.2f (pred %.2f) %.0f img/s, ETA %s",
            step,
            self.total_steps,
            row["train_loss"],
            row["test_loss"],
            row["sigma_in"],
            row["sigma_pred_mean"],
            row["images_per_s"],
            duration_text(eta),
        )


class Trainer:
    """Owns the model, optimiser, data and run folder of one experiment."""

    def __init__(self, cfg: ExperimentConfig, out_dir: Path, device: torch.device):
        self.cfg, self.out, self.device = cfg, out_dir, device
        self.run_folder = RunFolder(out_dir)
        self.seed = training_seed(cfg)  # cfg.seed, or a half-set run's own seed
        generator = seed_everything(self.seed)
        self.data = build_data(cfg, device)
        self.model = HollyModel(cfg, generator).to(device)
        self.initial_points = self.model.points.detach().cpu().numpy().copy()
        self.opt = make_optimizer(self.model, cfg)
        self.precision = StepPrecision(
            cfg.train.precision, device, cfg.train.compile, cfg.train.channels_last
        )
        self.precision.prepare(self.model)
        t = cfg.train
        self.length = training_length(t.epochs, t.steps, len(self.data.train), t.batch_size)
        if self.length.short:
            log.warning("%s", self.length.warning())
        values = tuple(load_sigma_list(cfg.sigma.values))
        self.schedule = SigmaSchedule(
            values, cfg.sigma.schedule, self.length.epochs, self.length.steps_per_epoch
        )
        self.amortised_steps = min(
            self.schedule.total_steps, t.max_steps or self.schedule.total_steps
        )
        self.total_steps = self.amortised_steps + cfg.refine.steps
        self.step = 0
        self.heads = HeadWins(cfg.model.pose_hypotheses, device)
        n_test = min(t.test_images, len(self.data.test))
        self.test_idx = torch.arange(n_test)
        # the normalised inputs of the last training steps, for the BatchNorm statistics
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=CALIBRATION_BATCHES)
        # model units in px, and in nm when the image store knows its pixel size
        self.units = run_units(cfg.render.height, (self.data.scale or {}).get("nm_per_px"))
        self.files = RunFiles(self.run_folder, cfg, self.units)
        self.refinement = Refinement(
            cfg,
            self.model.points,
            self.data.train,
            self.cnn_hypotheses,
            self.final_sigma(),
            self.amortised_steps,
            device,
        )

    # -- batches ---------------------------------------------------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        spe, b = self.schedule.steps_per_epoch, self.cfg.train.batch_size
        epoch, k = divmod(step, spe)
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(len(self.data.train), generator=gen)[k * b : (k + 1) * b]

    def epsilon_at(self, step: int) -> float:
        """Weight of the non-winning hypotheses: decays linearly to 0 over the warm-up."""
        m = self.cfg.model
        warmup = m.hypothesis_warmup * self.amortised_steps
        if m.pose_hypotheses == 1 or warmup <= 0:
            return 0.0
        return m.hypothesis_epsilon * max(0.0, 1.0 - step / warmup)

    def loss_on(self, images: torch.Tensor, sigma: float, epsilon: float = 0.0):
        """Loss (min over hypotheses, relaxed by ``epsilon``), prediction, best hypothesis of
        each image, normalised targets, and the best hypothesis' normalised rendering."""
        lc = self.cfg.loss
        target = normalise(images, lc.normalise)
        with self.precision.autocast():
            pred = self.model(target, sigma)
        losses = hypothesis_losses(pred.images, target, lc.normalise, lc.kind, lc.mask_threshold)
        loss, best = min_over_hypotheses(losses, epsilon)
        rows = torch.arange(len(best), device=best.device)
        output = hypothesis_output(pred.images, lc.normalise)[rows, best]
        return loss, pred, best, target, output

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; returns loss and mean predicted sigma as device tensors (reading
        them on the host would stall a GPU every step; the loop reads them at log steps)."""
        sigma = self.schedule.sigma_at(step)
        images = self.data.train.images(self.batch_indices(step), sigma)
        self.model.train()
        loss, pred, best, target, _ = self.loss_on(images, sigma, self.epsilon_at(step))
        self.opt.zero_grad(set_to_none=True)
        self.precision.backward_step(loss, self.opt)
        self.recent_inputs.append(target.detach())
        self.heads.count(best)
        return loss.detach(), pred.sigma.detach().mean()

    def calibration_batches(self) -> list[torch.Tensor]:
        """Normalised training batches for the BatchNorm statistics: the last training steps'
        inputs (no extra reads: a streaming store keeps its read-ahead plan; checkpoints hold
        them, so a resumed run uses the same), or, when there are none (a run resumed from an
        older checkpoint where no training step is left), fixed seeded training batches at the
        final sigma."""
        if self.recent_inputs:
            return list(self.recent_inputs)
        b, n = self.cfg.train.batch_size, len(self.data.train)
        gen = torch.Generator().manual_seed(self.seed * 7919 + 1)
        idx = torch.randperm(n, generator=gen)[: CALIBRATION_BATCHES * b]
        sigma = self.final_sigma()
        return [
            normalise(self.data.train.images(chunk, sigma), self.cfg.loss.normalise)
            for chunk in idx.split(b)
        ]

    def calibrate_batchnorm(self) -> None:
        """BatchNorm statistics of the current weights, before any evaluation of the CNN."""
        with self.precision.autocast():
            self.model.recalibrate_batchnorm(self.calibration_batches())

    @torch.no_grad()
    def test_loss(self, sigma: float) -> float:
        """Mean loss over the held-out images, in batches of the training batch size."""
        self.calibrate_batchnorm()
        self.model.eval()
        b = self.cfg.train.batch_size
        losses = [
            float(self.loss_on(self.data.test.images(idx, sigma), sigma)[0])
            for idx in self.test_idx.split(b)
            if len(idx) == b or len(self.test_idx) < b
        ]
        return float(np.mean(losses)) if losses else float("nan")

    # -- the CNN's poses, and the refinement stage (holly/train/refinement.py) ---------------
    def final_sigma(self) -> float:
        return self.schedule.sigma_at(max(self.amortised_steps - 1, 0))

    @torch.no_grad()
    def cnn_hypotheses(self, images: torch.Tensor, sigma: float) -> torch.Tensor:
        """The CNN's rotation hypotheses ``[I, K, 3, 3]`` of ``images [I, H, W]``, in batches
        (poses only: nothing is rendered)."""
        self.calibrate_batchnorm()
        self.model.eval()
        out = []
        for chunk in images.split(self.cfg.train.batch_size):
            target = normalise(chunk, self.cfg.loss.normalise)
            with self.precision.autocast():
                out.append(self.model.poses(target, sigma)[0])
        return torch.cat(out)

    def refine_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the refinement stage (:meth:`Refinement.step`)."""
        return self.refinement.step(self.step)

    @torch.no_grad()
    def test_predictions(self, sigma: float) -> tuple[dict, dict]:
        """The CNN's poses of the held-out images at ``sigma`` (``test_poses.npz`` arrays) and
        up to 16 samples of their inputs and best renderings (``samples.npz`` arrays)."""
        self.calibrate_batchnorm()
        self.model.eval()
        test = self.data.test
        preds, ins, outs = [], [], []
        for idx in self.test_idx.split(self.cfg.train.batch_size):
            _, pred, best, target, output = self.loss_on(test.images(idx, sigma), sigma)
            preds.append(
                (
                    pred.rotations(best).cpu(),
                    pred.translations.cpu(),
                    pred.sigma.cpu(),
                    pred.hypotheses.cpu(),
                    best.cpu(),
                )
            )
            ins.append(target.cpu())
            outs.append(output.cpu())
        rot_amortised, trans_pred, sigma_pred, hypotheses, best = (
            torch.cat(x).numpy() for x in zip(*preds, strict=True)
        )
        poses = {
            "rot_pred": rot_amortised,
            "rot_amortised": rot_amortised,
            "hypotheses": hypotheses,
            "best_hypothesis": best,
            "trans_pred": trans_pred,
            "sigma_in": np.full(len(rot_amortised), sigma),
            "sigma_pred": sigma_pred,
        }
        # up to 16 samples spread over the test set, so they show different particles rather
        # than the augmentation copies of the first one
        pick = torch.linspace(0, len(self.test_idx) - 1, min(16, len(self.test_idx))).long()
        samples = {
            "inputs": torch.cat(ins)[pick].numpy(),
            "renderings": torch.cat(outs)[pick].numpy(),
            "sigma": sigma,
        }
        return poses, samples

    # -- checkpoints (holly/run/checkpoint.py) -----------------------------------------------
    def state_dict(self) -> dict:
        """What a checkpoint holds (format :data:`holly.run.checkpoint.FORMAT`)."""
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "grad_scaler": self.precision.state_dict(),
            "head_wins": self.heads.wins,
            "refinement": self.refinement.state_dict(),
            # what the evaluation-time BatchNorm statistics are computed from (a run resumed
            # here then logs the same held-out losses and writes the same held-out poses)
            "calibration": list(self.recent_inputs),
            "holly_checkpoint": checkpoint.FORMAT,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from a checkpoint's ``state`` (not the step); raises on a misfit, leaving
        the calibration batches as they were."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state.get("grad_scaler"))
        self.heads.wins = state.get("head_wins", self.heads.wins).to(self.device)
        calibration = checkpoint.calibration_batches(state, self.device)
        if checkpoint.is_refining(state):
            self.refinement.load_state_dict(state["refinement"])
        self.recent_inputs.clear()
        self.recent_inputs.extend(calibration)

    def save_checkpoint(self) -> None:
        checkpoint.save(self.state_dict(), self.run_folder, self.cfg.train.keep_checkpoints)

    def load_checkpoint(self, path: Path) -> None:
        """Restore model, optimiser and step; the config must match (else nothing changes)."""
        state = checkpoint.load(path, self.device)
        checkpoint.check_resumable(state, self.cfg.to_dict(), self.model, path)
        with checkpoint.all_or_nothing(path, self.model):
            self.load_state_dict(state)
        checkpoint.note_older_format(state, path)
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)

    # -- the loop --------------------------------------------------------------------------
    def run(self, resume: str = "no") -> None:
        t = self.cfg.train
        checkpoint.resume(self.run_folder, resume, self.load_checkpoint)
        if self.step >= self.total_steps and self.run_folder.is_finished():
            # nothing left to do: the finished run's files stay as they are (bit for bit)
            log.info(
                "%s is finished at step %d: nothing to do, no file was changed",
                self.out,
                self.step,
            )
            return
        self.write_start_files()
        self.plan_reads()
        metrics = MetricsLog(self.run_folder, self.step, self.total_steps)
        bar = _progress(self.total_steps, self.step)
        while self.step < self.total_steps:
            amortised = self.step < self.amortised_steps
            if amortised:
                train_loss, sigma_pred = self.train_step(self.step)
            else:
                train_loss, sigma_pred = self.refine_step()
            self.step += 1
            if self.device.type == "cpu" or self.reads_host():
                self.check_finite(float(train_loss))
            if bar:
                bar.update(1)
            phase_end = self.step in (self.amortised_steps, self.total_steps)
            if self.step % t.log_every == 0 or phase_end:
                self.log_step(metrics, float(train_loss), float(sigma_pred), amortised)
            if self.step % t.snapshot_every == 0:
                self.write_snapshot()
            if self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
        if bar:
            bar.close()
        self.save_checkpoint()
        self.write_final_files()

    def reads_host(self) -> bool:
        """Whether the loop reads the host at this step anyway (a log, snapshot or checkpoint
        step, or the last): reading the loss syncs a GPU, so there it is checked only then."""
        t = self.cfg.train
        reads = (t.log_every, t.snapshot_every, t.checkpoint_every)
        return self.step == self.total_steps or any(self.step % n == 0 for n in reads)

    def check_finite(self, train_loss: float) -> None:
        """Stop with a clear error when the loss or the cloud stops being finite."""
        if math.isfinite(train_loss) and bool(torch.isfinite(self.model.points).all()):
            return
        raise HollyError(
            f"training diverged at step {self.step}: the loss is {train_loss} or the point "
            "cloud holds non-finite values; lower train.lr / train.points_lr or check the data "
            f"(the last good checkpoint is kept in {self.run_folder.checkpoints})"
        )

    def log_step(self, metrics: MetricsLog, train_loss: float, sigma_pred: float, amortised: bool):
        """A ``metrics.csv`` row and log line; at amortised log steps, the dead-head guard."""
        sigma = self.schedule.sigma_at(min(self.step, self.amortised_steps) - 1)
        elapsed = metrics.elapsed()
        row = {
            "step": self.step,
            "epoch": (min(self.step, self.amortised_steps) - 1) // self.schedule.steps_per_epoch,
            "train_loss": train_loss,
            # the refinement's loss is per-image normalised: no comparable test loss
            "test_loss": self.test_loss(sigma) if amortised else float("nan"),
            "sigma_in": sigma,
            "sigma_pred_mean": sigma_pred,
            "lr_cnn": self.opt.param_groups[0]["lr"],
            "lr_points": self.opt.param_groups[1]["lr"],
            "images_per_s": (self.step - metrics.first_step) * self.cfg.train.batch_size / elapsed,
            "elapsed_s": elapsed,
            "phase": "amortised" if amortised else "refine",
            "head_usage": self.heads.usage() if amortised else "",
        }
        if amortised:  # the guard runs after the row has read the window's wins
            self.heads.reseed_dead(self.model, self.cfg.seed, self.step, self.amortised_steps)
            self.heads.reset()
        metrics.append(row)

    # -- run files (holly/train/runfiles.py) -------------------------------------------------
    def write_start_files(self) -> None:
        """Config, provenance, initial cloud and ground truth (:meth:`RunFiles.start`)."""
        self.files.start(
            self.step,
            self.data,
            self.initial_points,
            device=self.device,
            seed=self.seed,
            training_length=self.length.record(),  # epochs, steps, short?
        )

    def plan_reads(self) -> None:
        """Streaming data reads the amortised phase's batches ahead, from the current step."""
        if hasattr(self.data.train, "plan"):
            self.data.train.plan(
                lambda k: (self.batch_indices(k), self.schedule.sigma_at(k)),
                min(self.step, self.amortised_steps),
                self.amortised_steps,  # the refinement stage reads its own images
            )

    def write_snapshot(self) -> None:
        self.files.snapshot(self.step, self.points())

    def points(self) -> np.ndarray:
        return self.model.points.detach().cpu().numpy()

    @torch.no_grad()
    def write_final_files(self) -> None:
        """Test-set poses and sample renderings at the final sigma, then ``points.ply``."""
        sigma = self.final_sigma()
        test = self.data.test
        poses, samples = self.test_predictions(sigma)
        test_images = test.images(self.test_idx, sigma)
        # per-image normalised, half precision: for `holly evaluate`'s pose-fit diagnostic
        poses["images"] = refine.normalised(test_images).cpu().numpy().astype(np.float16)
        if self.cfg.refine.steps > 0:
            table = self.refinement.test_poses(lambda s: test.images(self.test_idx, s))
            rot, shift, sig = table.pose(torch.arange(len(table), device=self.device))
            poses |= {
                "rot_pred": rot.cpu().numpy(),
                "shift_refined": shift.cpu().numpy(),
                "sigma_refined": sig.cpu().numpy(),
            }
        truth = {}  # real data: the poses alone, for their view range (holly/results/views.py)
        if hasattr(test, "rotations"):
            truth = {
                "rot_true": test.rotations(self.test_idx).cpu().numpy(),
                "trans_true": test.translations_of(self.test_idx).cpu().numpy(),
            }
        self.files.finish(self.step, self.points(), {**truth, **poses}, samples)


def hypothesis_output(renderings: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalised renderings ``[B, K, H, W]``, each hypothesis normalised as its own batch."""
    return torch.stack([normalise(renderings[:, k], mode) for k in range(renderings.shape[1])], 1)


def duration_text(seconds: float) -> str:
    """``"45s"``, ``"3m12s"`` or ``"2h05m"``: a short, human duration (rounded down)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _progress(total: int, start: int):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def train(
    cfg: ExperimentConfig | dict,
    out_dir: str | Path,
    resume: bool | str = False,
    force: bool = False,
    command: str = "train",
) -> Path:
    """Train one experiment into ``out_dir`` (see the module docstring); returns ``out_dir``.

    ``resume``: False/"no" starts afresh, and refuses a folder that holds another run unless
    ``force`` (then that run's files are replaced); True/"yes" continues from the folder's newest
    readable checkpoint (an error if it was made with another config); "auto" continues when the
    config matches and starts afresh otherwise (what the workflow uses), keeping the replaced
    run's newest checkpoint and config in ``checkpoints/replaced/``.

    ``out_dir`` must not be, hold or lie inside an input (the image store, shape or sigma file:
    :func:`holly.atomic.refuse_inputs`), and the run folder's writer lock
    (:meth:`RunFolder.lock`, taken as ``command``) is held from the claim to the last file.
    """
    resume = {True: "yes", False: "no"}.get(resume, resume)
    if resume not in ("no", "yes", "auto"):
        raise HollyError(f"resume must be no, yes or auto, not {resume!r}")
    if isinstance(cfg, dict):
        cfg = from_dict(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.device)
    out_dir = Path(out_dir)
    refuse_inputs({"--out": out_dir}, input_paths(cfg))
    run = RunFolder(out_dir)
    with run.lock(command):
        run.claim(resume=resume != "no", force=force)
        run.remove_stale_temps()  # under the lock: no other writer's temporary files
        log.info("training %s on %s into %s", cfg.name, device, out_dir)
        trainer = Trainer(cfg, out_dir, device)
        trainer.run(resume)
    return out_dir


def input_paths(cfg: ExperimentConfig) -> list[Path]:
    """The files and folders training reads: the image store (``data.source: zarr``), a shape
    file (``data.shape`` naming a point file) and a sigma file (``sigma.values`` naming one)."""
    found = []
    if cfg.data.source == "zarr" and cfg.data.store:
        found.append(Path(cfg.data.store))
    if cfg.data.source != "zarr" and is_shape_path(cfg.data.shape):
        found.append(Path(cfg.data.shape))
    if isinstance(cfg.sigma.values, str) and cfg.sigma.values not in SHIPPED:
        found.append(Path(cfg.sigma.values))
    return found
