"""The files a training writes into its run folder, besides ``metrics.csv`` and the checkpoints:
config, provenance, the initial cloud and ground truth at the start, point-cloud snapshots, and
at the end the held-out poses, sample renderings and ``points.ply`` (written last: it marks a
finished run). The file names are :class:`~holly.run.runfolder.RunFolder`'s.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from holly import __version__
from holly.config import ExperimentConfig
from holly.data.datasets import Data
from holly.data.pointio import write_points
from holly.run.provenance import provenance
from holly.run.runfolder import RunFolder
from holly.units import describe_units


class RunFiles:
    """Writes one training's files into ``run``; ``units`` are the run's model units
    (:func:`holly.units.run_units`), named in every PLY file's comments."""

    def __init__(self, run: RunFolder, cfg: ExperimentConfig, units: dict):
        self.run, self.cfg, self.units = run, cfg, units
        self.provenance: dict = {}

    def ply_meta(self, step: int | None) -> dict:
        """The comment lines of the run's PLY files (pointio ``meta``)."""
        meta = {"holly": __version__, "experiment": self.cfg.name}
        if step is not None:
            meta["step"] = step
        return {**meta, "units": describe_units(self.units)}

    def start(
        self,
        step: int,
        data: Data,
        initial_points: np.ndarray,
        *,
        device: torch.device,
        seed: int,
        training_length: dict,
    ) -> None:
        """Config, provenance, initial cloud and ground truth; stale results are removed.

        Also on resume (``step`` > 0): a workflow manager may have deleted them (Snakemake
        removes a failed job's outputs), and the initial cloud is recreated exactly from the
        seed. ``device``, ``seed`` and ``training_length`` go into the provenance.
        """
        rf = self.run
        rf.root.mkdir(parents=True, exist_ok=True)
        rf.points.unlink(missing_ok=True)  # a restarted run is not finished
        if step == 0:  # afresh: snapshots and checkpoints of an earlier run are stale
            rf.remove_run_files()
        rf.write_config(self.cfg.to_dict())
        self.provenance = provenance(self.cfg.to_dict(), device, data.inputs, seed)
        self.provenance["resumed_from_step"] = step
        self.provenance["scale"] = data.scale  # nm per pixel / model unit (None: unknown)
        self.provenance["training_length"] = training_length  # epochs, steps, short?
        rf.write_provenance(self.provenance)
        write_points(rf.initial_points, initial_points, meta=self.ply_meta(0))
        if data.ground_truth is not None:
            meta = {**self.ply_meta(None), "cloud": "ground truth (as simulated)"}
            write_points(rf.ground_truth, data.ground_truth, meta=meta)

    def snapshot(self, step: int, points: np.ndarray) -> None:
        write_points(self.run.snapshot(step), points, meta=self.ply_meta(step))

    def finish(self, step: int, points: np.ndarray, poses: dict, samples: dict) -> None:
        """``test_poses.npz`` (``poses``), ``samples.npz`` (``samples``: inputs, renderings,
        sigma), the finished provenance, the last snapshot, and then ``points.ply``."""
        self.run.write_test_poses(**poses)
        self.run.write_samples(**samples)
        self.provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.provenance["steps"] = step
        self.run.write_provenance(self.provenance)
        self.snapshot(step, points)
        write_points(self.run.points, points, meta=self.ply_meta(step))
