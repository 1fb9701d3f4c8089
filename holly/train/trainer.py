"""The trainer: one experiment's training loop, with exact resume.

The loop (:meth:`Trainer.run`) restores (:mod:`holly.run.checkpoint`), then runs the steps of
the amortised CNN phase (:mod:`holly.train.amortised`) and of the refinement stage
(:mod:`holly.train.refinement`); around them (:mod:`holly.train.cadence`) it writes the start
files, logs ``metrics.csv``, writes snapshots and checkpoints, and ends with the final files
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
import random
from pathlib import Path

import numpy as np
import torch

from holly.atomic import refuse_inputs
from holly.config import ExperimentConfig, from_dict
from holly.data.datasets import Data, build_data, resolve_data_blur  # noqa: F401  (Data: re-exported)
from holly.data.halves import training_seed
from holly.data.shapes import is_shape_path
from holly.data.sigmas import SHIPPED
from holly.errors import HollyError
from holly.method.model import HollyModel
from holly.run import checkpoint
from holly.run.runfolder import METRIC_COLUMNS, RunFolder
from holly.train.amortised import AmortisedPhase
from holly.train.cadence import Cadence

log = logging.getLogger(__name__)

__all__ = ["METRIC_COLUMNS", "Trainer", "train"]


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


class Trainer:
    """One experiment's training: step counter, phases, checkpoint state and the loop."""

    def __init__(self, cfg: ExperimentConfig, out_dir: Path, device: torch.device):
        self.cfg, self.out, self.device, self.run_folder = cfg, out_dir, device, RunFolder(out_dir)
        self.seed = training_seed(cfg)  # cfg.seed, or a half-set run's own seed
        generator = seed_everything(self.seed)
        self.data = build_data(cfg, device)
        self.model = HollyModel(cfg, generator).to(device)
        self.initial_points = self.model.points.detach().cpu().numpy().copy()
        self.amortised = AmortisedPhase(cfg, self.model, self.data, self.seed, device)
        self.refinement = self.amortised.refinement_stage()
        self.step, self.total_steps = 0, self.amortised.plan.steps + cfg.refine.steps

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One CNN step (:meth:`AmortisedPhase.step`): loss and mean predicted sigma."""
        return self.amortised.step(step)

    def refine_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the refinement stage (:meth:`Refinement.step`)."""
        return self.refinement.step(self.step)

    def state_dict(self) -> dict:
        """What a checkpoint holds (format :data:`holly.run.checkpoint.FORMAT`)."""
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            **self.amortised.state_dict(),  # model, optimizer, grad_scaler, head_wins
            "refinement": self.refinement.state_dict(),
            "calibration": list(self.amortised.calibration.recent_inputs),
            "holly_checkpoint": checkpoint.FORMAT,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint's ``state`` but the step; a misfit raises, calibration intact."""
        self.amortised.load_state_dict(state, self.device)
        calibration = checkpoint.calibration_batches(state, self.device)
        self.refinement.load_state_dict(state.get("refinement"))
        self.amortised.calibration.restore(calibration)

    def save_checkpoint(self) -> None:
        checkpoint.save(self.state_dict(), self.run_folder, self.cfg.train.keep_checkpoints)

    def load_checkpoint(self, path: Path) -> None:
        """Restore state and step; the config must match (else nothing changes)."""
        config, model = self.cfg.to_dict(), self.model
        self.step = checkpoint.restore(path, self.device, config, model, self.load_state_dict)

    def run(self, resume: str = "no") -> None:
        """Restore (:func:`holly.run.checkpoint.resume`), train, write the final files."""
        checkpoint.resume(self.run_folder, resume, self.load_checkpoint)
        if is_finished(self):
            return
        cadence = Cadence(self)  # writes the start files
        while self.step < self.total_steps:
            amortised = self.step < self.amortised.plan.steps
            loss, sigma_pred = self.train_step(self.step) if amortised else self.refine_step()
            self.step += 1
            cadence.after_step(loss, sigma_pred, amortised)  # log, snapshot, checkpoint
        self.save_checkpoint()
        cadence.finish()


def is_finished(trainer: Trainer) -> bool:
    """Whether the restored run has nothing left to do: then its files stay as they are (bit
    for bit)."""
    if trainer.step < trainer.total_steps or not trainer.run_folder.is_finished():
        return False
    log.info(
        "%s is finished at step %d: nothing to do, no file was changed", trainer.out, trainer.step
    )
    return True


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
    cfg = resolve_data_blur(cfg)  # before the resume check: the run records the number
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
    file (``data.shape`` naming a point file), a sigma file (``sigma.values`` naming one) and
    the refinement's first cloud (``refine.start_points``)."""
    found = []
    if cfg.data.source == "zarr" and cfg.data.store:
        found.append(Path(cfg.data.store))
    if cfg.data.source != "zarr" and is_shape_path(cfg.data.shape):
        found.append(Path(cfg.data.shape))
    if isinstance(cfg.sigma.values, str) and cfg.sigma.values not in SHIPPED:
        found.append(Path(cfg.sigma.values))
    if cfg.refine.start_points is not None:
        found.append(Path(cfg.refine.start_points))
    return found
