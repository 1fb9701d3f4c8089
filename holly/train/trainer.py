"""The training loop: checkpoints, exact resume, metrics CSV, point-cloud snapshots.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from holly import __version__
from holly.atomic import atomic_path, refuse_inputs
from holly.config import ExperimentConfig, from_dict
from holly.data.datasets import Data, build_data  # noqa: F401  (Data: re-exported)
from holly.data.halves import training_seed
from holly.data.pointio import write_points
from holly.data.shapes import is_shape_path
from holly.data.sigmas import SHIPPED, load_sigma_list
from holly.errors import HollyError
from holly.method import refine
from holly.method.curriculum import SigmaSchedule, training_length
from holly.method.geometry import random_rotations
from holly.method.loss import hypothesis_losses, min_over_hypotheses, normalise
from holly.method.model import HollyModel
from holly.run.provenance import provenance
from holly.run.runfolder import METRIC_COLUMNS, RunFolder
from holly.train.precision import StepPrecision
from holly.units import describe_units, run_units

log = logging.getLogger(__name__)

__all__ = ["METRIC_COLUMNS", "Trainer", "train"]
# Config keys that may change between a checkpoint and its resumption (refinement can be
# extended on a finished run; before the refinement stage starts, all its keys may change).
RESUMABLE_KEYS = {
    ("train", "max_steps"),
    ("train", "threads"),
    ("train", "keep_checkpoints"),
    ("device",),
    ("refine", "steps"),
    ("refine", "ladder_steps"),
    ("refine", "search_keep"),
}
# A head that wins less than this fraction of a log window's images is re-seeded (see
# Trainer.reseed_dead_heads), as a fraction of the fair share 1/K.
DEAD_HEAD_SHARE = 0.1
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
    """``metrics.csv``, one row per log step; on resume, rows after the checkpoint are dropped."""

    def __init__(self, run: RunFolder, resume_step: int | None):
        self.run = run
        run.start_metrics(run.metric_rows(resume_step) if resume_step is not None else [])

    def append(self, row: dict) -> None:
        self.run.append_metrics(row)


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
        self.head_wins = torch.zeros(cfg.model.pose_hypotheses, dtype=torch.long, device=device)
        self.refinement: RefinementState | None = None
        n_test = min(t.test_images, len(self.data.test))
        self.test_idx = torch.arange(n_test)
        # the normalised inputs of the last training steps, for the BatchNorm statistics
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=CALIBRATION_BATCHES)
        # model units in px, and in nm when the image store knows its pixel size
        self.units = run_units(cfg.render.height, (self.data.scale or {}).get("nm_per_px"))

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
        self.head_wins += torch.bincount(best, minlength=len(self.head_wins))
        return loss.detach(), pred.sigma.detach().mean()

    def head_usage(self) -> str:
        """Win fraction of each head since the last log step, e.g. ``0.41 0.20 0.21 0.18``."""
        total = max(int(self.head_wins.sum()), 1)
        return " ".join(f"{int(w) / total:.2f}" for w in self.head_wins)

    def reseed_dead_heads(self) -> None:
        """Guard against hypothesis collapse: a head that won (almost) no image in the last log
        window restarts as a copy of the most-used head turned by a seeded random rotation on
        the object side (``offset <- offset_best @ g``), so it proposes a different view of the
        same particle. Not in the last 10 % of the amortised phase, so every head has time to
        settle."""
        k = len(self.head_wins)
        total = int(self.head_wins.sum())
        if k == 1 or total == 0 or self.step > 0.9 * self.amortised_steps:
            return
        share = self.head_wins.double() / total
        dead = torch.nonzero(share < DEAD_HEAD_SHARE / k).flatten().tolist()
        if not dead:
            return
        best = int(share.argmax())
        gen = torch.Generator().manual_seed(self.cfg.seed * 7727 + self.step)
        turns = random_rotations(len(dead), gen)
        fc2, d = self.model.encoder.fc2, self.model.rot_dim
        with torch.no_grad():
            for j, head in enumerate(dead):
                rows_to = slice(head * d, (head + 1) * d)
                rows_from = slice(best * d, (best + 1) * d)
                fc2.weight[rows_to] = fc2.weight[rows_from]
                fc2.bias[rows_to] = fc2.bias[rows_from]
                self.model.offsets[head] = self.model.offsets[best] @ turns[j].to(fc2.weight)
        log.info("re-seeded pose heads %s from head %d (win shares %s)", dead, best, share.tolist())

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

    # -- per-image pose refinement (holly/method/refine.py) ----------------------------------------
    def final_sigma(self) -> float:
        return self.schedule.sigma_at(max(self.amortised_steps - 1, 0))

    def render_spec(self) -> refine.RenderSpec:
        r, lc = self.cfg.render, self.cfg.loss
        return refine.RenderSpec(r.height, r.width, lc.kind, lc.mask_threshold)

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

    def search_spec(self, keep: int, rotations: int) -> refine.SearchSpec:
        rc = self.cfg.refine
        return refine.SearchSpec(
            rotations=rotations,
            sigma=rc.search_sigma,
            keep=keep,
            ladder_steps=rc.ladder_steps,
            lr=rc.pose_lr,
            batch_size=rc.batch_size,
            flips=rc.flips,
            seed=self.cfg.seed,
        )

    def searched_poses(self, images_at, keep: int, rotations: int) -> refine.PoseTable:
        """Poses of a set of images (``images_at(sigma) -> [B, H, W]``) against the current cloud:
        the CNN's hypotheses and a global search (:func:`holly.method.refine.search_poses`)."""
        sigma = self.final_sigma()
        hyps = self.cnn_hypotheses(images_at(sigma), sigma)
        symmetries = refine.cloud_symmetries(
            self.model.points, self.cfg.refine.symmetries, self.cfg.seed
        )
        with torch.enable_grad():
            return refine.search_poses(
                self.model.points,
                hyps,
                images_at,
                sigma,
                self.render_spec(),
                self.search_spec(keep, rotations),
                symmetries,
            )

    def start_refinement(self) -> None:
        rc = self.cfg.refine
        items = refine.table_subset(len(self.data.train), rc.images, self.cfg.seed)
        table = self.searched_poses(
            lambda sigma: self.data.train.images(items, sigma), rc.table_keep, rc.table_rotations
        )
        self.refinement = RefinementState(
            items=items,
            table=table,
            pose_adam=refine.RowAdam(len(table), 6, rc.pose_lr).to(self.device),
            points_opt=torch.optim.Adam([self.model.points], lr=rc.points_lr),
        )
        log.info("refinement: pose table of %d training images", len(table))

    def rescore(self) -> None:
        """Jump every table image to its best candidate around its current pose."""
        st, rc = self.refinement, self.cfg.refine
        symmetries = refine.cloud_symmetries(self.model.points, rc.symmetries, self.cfg.seed)
        rows = torch.arange(len(st.table), device=self.device)
        moved = 0
        for idx in rows.split(256):
            rot, shift, sigma = st.table.pose(idx)
            target = refine.normalised(self.data.train.images(st.items[idx], self.final_sigma()))
            new_rot, new_shift, pick = refine.search_candidates(
                self.model.points,
                rot[:, None],
                shift,
                sigma,
                target,
                self.render_spec(),
                symmetries,
                self.cfg.refine.flips,
            )
            changed = idx[pick != 0]
            st.table.jump(idx, new_rot, new_shift)
            st.pose_adam.reset(changed)
            moved += len(changed)
        log.info(
            "refinement step %d: %d of %d images moved to another candidate",
            self.step,
            moved,
            len(st.table),
        )

    def refine_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose steps on one batch of table rows, then one step on the cloud."""
        if self.refinement is None:
            self.start_refinement()
        st, rc = self.refinement, self.cfg.refine
        k = self.step - self.amortised_steps
        if rc.rescore_every and k > 0 and k % rc.rescore_every == 0:
            self.rescore()
        idx = refine.batch_rows(len(st.table), rc.batch_size, k, self.cfg.seed).to(self.device)
        target = refine.normalised(self.data.train.images(st.items[idx], self.final_sigma()))
        spec = self.render_spec()
        for _ in range(rc.pose_steps):
            refine.pose_step(self.model.points, st.table, st.pose_adam, idx, target, spec)
        rot, shift, sigma = st.table.pose(idx)
        loss = refine.pose_losses(self.model.points, rot, shift, sigma, target, spec).sum()
        st.points_opt.zero_grad(set_to_none=True)
        loss.backward()
        st.points_opt.step()
        return loss.detach(), sigma.detach().mean()

    def refined_test_poses(self) -> refine.PoseTable:
        """Held-out poses against the final cloud (fixed): hypotheses, global search, and
        coarse-to-fine refinement of the best few candidates."""
        rc = self.cfg.refine
        return self.searched_poses(
            lambda sigma: self.data.test.images(self.test_idx, sigma),
            rc.search_keep,
            rc.search_rotations,
        )

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "grad_scaler": self.precision.state_dict(),
            "head_wins": self.head_wins,
            "refinement": self.refinement.state_dict() if self.refinement else None,
            # what the evaluation-time BatchNorm statistics are computed from (a run resumed
            # here then logs the same held-out losses and writes the same held-out poses)
            "calibration": list(self.recent_inputs),
            "holly_checkpoint": 2,
        }
        for path in (self.run_folder.checkpoint(self.step), self.run_folder.last_checkpoint):
            try:
                with atomic_path(path) as tmp:  # a failed write leaves no partial file
                    torch.save(state, tmp)
            except (OSError, RuntimeError) as exc:  # torch's writer raises RuntimeError
                raise HollyError(
                    f"cannot write checkpoint {path} at step {self.step} ({_reason(exc)}); "
                    "free disk space (or fix the folder's permissions), then continue with "
                    f"`holly train ... --out {self.out} --resume yes`"
                ) from None
        self.run_folder.prune_checkpoints(self.cfg.train.keep_checkpoints)

    def load_checkpoint(self, path: Path) -> None:
        """Restore model, optimiser and step; the config must match (else nothing changes)."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            saved_cfg, _, _, _ = state["config"], state["model"], state["optimizer"], state["step"]
        except Exception as exc:
            raise UnreadableCheckpoint(path, _reason(exc, path)) from exc
        # before the refinement stage has started, its settings may still change
        refining = state.get("refinement") is not None
        _check_same_config(saved_cfg, self.cfg.to_dict(), path, refine_fixed=refining)
        misfit = _misfit(self.model.state_dict(), state["model"])
        if misfit:
            raise UnreadableCheckpoint(path, f"it does not fit the model of this config: {misfit}")
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.precision.load_state_dict(state.get("grad_scaler"))
            self.head_wins = state.get("head_wins", self.head_wins).to(self.device)
            calibration = [t.to(self.device) for t in state.get("calibration", [])]
            if refining:
                self.refinement = RefinementState.from_state(
                    state["refinement"], self.model.points, self.cfg.refine, self.device
                )
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.model.load_state_dict(before)  # nothing changes: the next one is tried
            raise UnreadableCheckpoint(
                path, f"it does not fit the model of this config: {_reason(exc)}"
            ) from exc
        self.recent_inputs.clear()
        self.recent_inputs.extend(calibration)
        if "calibration" not in state and int(state["step"]) > 0:
            # an older checkpoint (holly_checkpoint 1): until CALIBRATION_BATCHES more
            # training steps, the BatchNorm statistics come from fewer (or seeded) batches
            log.info(
                "%s holds no BatchNorm calibration batches (an older checkpoint): the next "
                "held-out losses may differ slightly from an uninterrupted run",
                path,
            )
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)

    def restore(self, mode: str) -> None:
        """``mode`` no: start afresh; yes: continue from the newest readable checkpoint if there
        is one (a checkpoint of another config is an error); auto: continue if it matches, else
        start afresh, keeping the replaced run's newest checkpoint and config in
        ``checkpoints/replaced/``.

        ``last.pt`` is tried first, then ``step_*.pt`` newest first: an unreadable file is set
        aside (``checkpoints/unreadable/``), never deleted, and the next one is tried. When none
        can be read, nothing is touched and the run stops with an error.
        """
        if mode == "no":
            return
        unreadable = []
        for path in self.run_folder.resume_candidates():
            try:
                self.load_checkpoint(path)
            except UnreadableCheckpoint as exc:
                log.warning("%s; trying the next checkpoint", exc)
                unreadable.append((path, exc.reason))
                continue
            except HollyError as exc:
                if mode != "auto":
                    raise
                kept = self.run_folder.keep_replaced(path)
                log.warning(
                    "%s; --resume auto replaces that run and starts afresh. Its newest "
                    "checkpoint and its config are kept in %s until a later replacement "
                    "(docs/architecture.md: how to continue it)",
                    exc,
                    kept,
                )
            for bad, _ in unreadable:  # they would be overwritten by the continued run
                self.run_folder.set_aside(bad)
            return
        if unreadable:
            raise HollyError(
                f"no readable checkpoint in {self.run_folder.checkpoints} fits this run (tried "
                f"{'; '.join(f'{p.name}: {why}' for p, why in unreadable)}); nothing was "
                "deleted. Train afresh with --force (the old run is replaced) or into another "
                "--out folder"
            )

    # -- the loop --------------------------------------------------------------------------
    def run(self, resume: str = "no") -> None:
        t = self.cfg.train
        self.restore(resume)
        if self.step >= self.total_steps and self.run_folder.is_finished():
            # nothing left to do: the finished run's files stay as they are (bit for bit)
            log.info(
                "%s is finished at step %d: nothing to do, no file was changed",
                self.out,
                self.step,
            )
            return
        self.write_start_files()
        if hasattr(self.data.train, "plan"):  # streaming data reads the planned batches ahead
            self.data.train.plan(
                lambda k: (self.batch_indices(k), self.schedule.sigma_at(k)),
                min(self.step, self.amortised_steps),
                self.amortised_steps,  # the refinement stage reads its own images
            )
        metrics = MetricsLog(self.run_folder, self.step or None)
        started, done_at_start = time.perf_counter(), self.step
        bar = _progress(self.total_steps, self.step)
        while self.step < self.total_steps:
            amortised = self.step < self.amortised_steps
            if amortised:
                train_loss, sigma_pred = self.train_step(self.step)
            else:
                train_loss, sigma_pred = self.refine_step()
            self.step += 1
            # reading the loss syncs a GPU: there, check only where the loop reads the host anyway
            reads = (t.log_every, t.snapshot_every, t.checkpoint_every)
            if (
                self.device.type == "cpu"
                or self.step == self.total_steps
                or any(self.step % n == 0 for n in reads)
            ):
                self.check_finite(float(train_loss))
            if bar:
                bar.update(1)
            phase_end = self.step in (self.amortised_steps, self.total_steps)
            if self.step % t.log_every == 0 or phase_end:
                train_loss, sigma_pred = float(train_loss), float(sigma_pred)  # host sync here only
                sigma = self.schedule.sigma_at(min(self.step, self.amortised_steps) - 1)
                elapsed = time.perf_counter() - started
                row = {
                    "step": self.step,
                    "epoch": (min(self.step, self.amortised_steps) - 1)
                    // self.schedule.steps_per_epoch,
                    "train_loss": train_loss,
                    # the refinement's loss is per-image normalised: no comparable test loss
                    "test_loss": self.test_loss(sigma) if amortised else float("nan"),
                    "sigma_in": sigma,
                    "sigma_pred_mean": sigma_pred,
                    "lr_cnn": self.opt.param_groups[0]["lr"],
                    "lr_points": self.opt.param_groups[1]["lr"],
                    "images_per_s": (self.step - done_at_start) * t.batch_size / elapsed,
                    "elapsed_s": elapsed,
                    "phase": "amortised" if amortised else "refine",
                    "head_usage": self.head_usage() if amortised else "",
                }
                metrics.append(row)
                if amortised:
                    self.reseed_dead_heads()
                    self.head_wins.zero_()
                # the ETA is for log files (Snakemake's), where there is no progress bar
                eta = elapsed / (self.step - done_at_start) * (self.total_steps - self.step)
                log.info(
                    "step %d/%d loss %.2f test %.2f sigma %.2f (pred %.2f) %.0f img/s, ETA %s",
                    self.step,
                    self.total_steps,
                    train_loss,
                    row["test_loss"],
                    sigma,
                    sigma_pred,
                    row["images_per_s"],
                    duration_text(eta),
                )
            if self.step % t.snapshot_every == 0:
                self.write_snapshot()
            if self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
        if bar:
            bar.close()
        self.save_checkpoint()
        self.write_final_files()

    def write_start_files(self) -> None:
        """Config, provenance, initial cloud and ground truth; stale results are removed.

        Also on resume: a workflow manager may have deleted them (Snakemake removes a failed
        job's outputs), and the initial cloud is recreated exactly from the seed.
        """
        rf = self.run_folder
        rf.root.mkdir(parents=True, exist_ok=True)
        rf.points.unlink(missing_ok=True)  # a restarted run is not finished
        if self.step == 0:  # afresh: snapshots and checkpoints of an earlier run are stale
            rf.remove_run_files()
        rf.write_config(self.cfg.to_dict())
        self.provenance = provenance(self.cfg.to_dict(), self.device, self.data.inputs, self.seed)
        self.provenance["resumed_from_step"] = self.step
        self.provenance["scale"] = self.data.scale  # nm per pixel / model unit (None: unknown)
        self.provenance["training_length"] = self.length.record()  # epochs, steps, short?
        rf.write_provenance(self.provenance)
        write_points(rf.initial_points, self.initial_points, meta=self.ply_meta(0))
        if self.data.ground_truth is not None:
            meta = {**self.ply_meta(None), "cloud": "ground truth (as simulated)"}
            write_points(rf.ground_truth, self.data.ground_truth, meta=meta)

    def ply_meta(self, step: int | None) -> dict:
        """The comment lines of the run's PLY files (pointio ``meta``)."""
        meta = {"holly": __version__, "experiment": self.cfg.name}
        if step is not None:
            meta["step"] = step
        return {**meta, "units": describe_units(self.units)}

    def check_finite(self, train_loss: float) -> None:
        """Stop with a clear error when the loss or the cloud stops being finite."""
        if math.isfinite(train_loss) and bool(torch.isfinite(self.model.points).all()):
            return
        raise HollyError(
            f"training diverged at step {self.step}: the loss is {train_loss} or the point "
            "cloud holds non-finite values; lower train.lr / train.points_lr or check the data "
            f"(the last good checkpoint is kept in {self.run_folder.checkpoints})"
        )

    def write_snapshot(self) -> None:
        write_points(
            self.run_folder.snapshot(self.step), self.points(), meta=self.ply_meta(self.step)
        )

    def points(self) -> np.ndarray:
        return self.model.points.detach().cpu().numpy()

    @torch.no_grad()
    def write_final_files(self) -> None:
        """Test-set poses and sample renderings at the final sigma, then ``points.ply``."""
        self.calibrate_batchnorm()
        self.model.eval()
        sigma = self.final_sigma()
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
        test_images = test.images(self.test_idx, sigma)
        # per-image normalised, half precision: for `holly evaluate`'s pose-fit diagnostic
        poses["images"] = refine.normalised(test_images).cpu().numpy().astype(np.float16)
        if self.cfg.refine.steps > 0:
            table = self.refined_test_poses()
            rot, shift, sig = table.pose(torch.arange(len(table), device=self.device))
            poses |= {
                "rot_pred": rot.cpu().numpy(),
                "shift_refined": shift.cpu().numpy(),
                "sigma_refined": sig.cpu().numpy(),
            }
        if hasattr(test, "rotations"):
            self.run_folder.write_test_poses(
                rot_true=test.rotations(self.test_idx).cpu().numpy(),
                trans_true=test.translations_of(self.test_idx).cpu().numpy(),
                **poses,
            )
        else:  # real data: the poses alone, for their view range (holly/results/views.py)
            self.run_folder.write_test_poses(**poses)
        # up to 16 samples spread over the test set, so they show different particles rather
        # than the augmentation copies of the first one
        pick = torch.linspace(0, len(self.test_idx) - 1, min(16, len(self.test_idx))).long()
        self.run_folder.write_samples(
            inputs=torch.cat(ins)[pick].numpy(),
            renderings=torch.cat(outs)[pick].numpy(),
            sigma=sigma,
        )
        self.provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.provenance["steps"] = self.step
        self.run_folder.write_provenance(self.provenance)
        self.write_snapshot()
        write_points(self.run_folder.points, self.points(), meta=self.ply_meta(self.step))


class UnreadableCheckpoint(HollyError):
    """A checkpoint file that cannot be used (empty, truncated, corrupt, lacking its config, or
    holding tensors that do not fit the model); ``reason`` says which."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot use checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def _reason(exc: BaseException, path: Path | None = None) -> str:
    """Why a checkpoint could not be read or written, never empty (``EOFError()`` of an empty
    file has no message)."""
    if path is not None and path.is_file() and path.stat().st_size == 0:
        return "the file is empty (0 bytes): a write was interrupted"
    if path is not None and isinstance(exc, KeyError):
        return f"not a holly checkpoint (it lacks {exc})"
    if path is not None and not isinstance(exc, OSError):
        return f"truncated, damaged or not a holly checkpoint ({_reason(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _misfit(expected: dict, saved) -> str:
    """What keeps a saved model state from fitting the model (``""`` when it fits): missing or
    unexpected tensors, or tensors of another shape."""
    if not isinstance(saved, dict):
        return "its model state is not a mapping"
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    shapes = []
    for k, v in expected.items():
        if k not in saved:
            continue
        if not isinstance(saved[k], torch.Tensor):
            shapes.append(f"{k} is not a tensor")
        elif saved[k].shape != v.shape:
            shapes.append(f"{k} is {tuple(saved[k].shape)}, not {tuple(v.shape)}")
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if extra:
        parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    parts += shapes[:3]
    return "; ".join(parts)


def hypothesis_output(renderings: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalised renderings ``[B, K, H, W]``, each hypothesis normalised as its own batch."""
    return torch.stack([normalise(renderings[:, k], mode) for k in range(renderings.shape[1])], 1)


@dataclass
class RefinementState:
    """What the refinement stage adds to a checkpoint: the table's training items, the pose
    table, and both optimisers."""

    items: torch.Tensor
    table: refine.PoseTable
    pose_adam: refine.RowAdam
    points_opt: torch.optim.Optimizer

    def state_dict(self) -> dict:
        return {
            "items": self.items,
            "table": self.table.state_dict(),
            "pose_adam": self.pose_adam.state_dict(),
            "points_opt": self.points_opt.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict, points: torch.Tensor, rc, device) -> RefinementState:
        adam = refine.RowAdam(1, 6, rc.pose_lr)
        adam.load_state_dict(state["pose_adam"])
        opt = torch.optim.Adam([points], lr=rc.points_lr)
        opt.load_state_dict(state["points_opt"])
        return cls(
            state["items"],
            refine.PoseTable.from_state(state["table"]),
            adam.to(device),
            opt,
        )


def _check_same_config(saved: dict, current: dict, path: Path, refine_fixed: bool = True) -> None:
    # A key missing from the checkpoint's config was added to holly after the checkpoint was
    # made: the run used what is now that key's default (e.g. train.channels_last), so it
    # compares as the default; otherwise every older checkpoint would count as another config
    # and --resume auto would start a finished run afresh.
    defaults = from_dict({"variant": saved.get("variant", "paper")}).to_dict()
    diffs = []
    for section, value in current.items():
        if isinstance(value, dict):
            saved_section = saved.get(section, {})
            for key, v in value.items():
                free = (section, key) in RESUMABLE_KEYS or (
                    section == "refine" and not refine_fixed
                )
                was = saved_section.get(key, defaults.get(section, {}).get(key))
                if not free and was != v:
                    diffs.append(f"{section}.{key}")
        elif (section,) not in RESUMABLE_KEYS and saved.get(section) != value:
            diffs.append(section)
    if diffs:
        raise HollyError(
            f"checkpoint {path} was made with a different config ({', '.join(diffs)}); "
            f"resume with the same config or train into a new output folder"
        )


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
