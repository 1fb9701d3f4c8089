"""The run folder: the one owner of its layout (docs/architecture.md) and of reading its files.

Every module that reads or writes a run folder (training, evaluation, figures, viewer, report,
the test fixtures) goes through :class:`RunFolder`: the file names live here only, and each file
has one typed reader that turns a missing or corrupt file into a :class:`~holly.errors.HollyError`
naming the file, never a traceback.

Two safety rules live here too:

* :meth:`RunFolder.claim` refuses to start a run in a folder that holds another one, unless the
  caller resumes it or passes ``force``; with ``force`` only the run's own files are replaced.
* :meth:`RunFolder.resume_candidates` lists ``last.pt`` and then the periodic ``step_*.pt``
  newest first, so an unreadable ``last.pt`` falls back to the newest readable checkpoint, and
  :meth:`RunFolder.set_aside` keeps an unreadable file (moved to ``checkpoints/unreadable/``)
  instead of deleting it.
* :meth:`RunFolder.lock` makes one process at a time the folder's writer (``train``,
  ``refine``, ``evaluate``, ``compare``): an advisory ``fcntl.flock`` on ``.holly.lock``, which
  the kernel releases when the holder dies, so a crash never blocks a rerun.
* :meth:`RunFolder.keep_replaced` keeps the newest checkpoint and the config of a run that
  ``--resume auto`` replaces because its config changed (``checkpoints/replaced/``), so that an
  edited config never silently costs the hours of the run it replaced.

Kept free of heavy imports (torch, pandas are imported where used).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from holly.atomic import atomic_path, jsonable, write_json
from holly.errors import HollyError, one_line

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
PROVENANCE = "provenance.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"
SNAPSHOTS = "snapshots"
INITIAL_POINTS = "initial_points.ply"
GROUND_TRUTH = "ground_truth.ply"
TEST_POSES = "test_poses.npz"
SAMPLES = "samples.npz"
POINTS = "points.ply"
EVALUATION = "evaluation.json"
SNAPSHOT_SCORES = "snapshot_scores.csv"  # holly evaluate --snapshots: the learning curve
ALIGNED_POINTS = "aligned_points.ply"
FIGURES = "figures"
VIEWER = "viewer.html"
VS_PUBLISHED = "vs_published.json"
VS_PUBLISHED_ALIGNED = "vs_published_aligned.ply"
UNREADABLE = "unreadable"
REPLACED = "replaced"  # checkpoints/replaced/: the newest checkpoint + config of a replaced run
HALFSETS = "halfsets.json"  # the comparison of the run's two half-set runs (holly compare)
HALVES = "halves"  # halves/half1, halves/half2: the half-set run folders
HALF2_ALIGNED = "half2_aligned.ply"  # halves/half2_aligned.ply: half 2 moved onto half 1
FUSION = "fusion.json"  # refine.fusion: the run's own particle fusion (holly.data.fusionrecord)
LOCK = ".holly.lock"  # the writer's advisory lock (its pid and command); hidden, never a result

METRIC_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "test_loss",
    "sigma_in",
    "sigma_pred_mean",
    "lr_cnn",
    "lr_points",
    "images_per_s",
    "elapsed_s",
    "phase",  # amortised (CNN) or refine (per-image pose refinement)
    "head_usage",  # win fraction of each pose hypothesis head over the log window
)
REQUIRED_METRICS = ("step", "train_loss", "test_loss", "sigma_in")
TEXT_METRICS = ("phase", "head_usage")  # the other columns are numbers
TEST_POSE_KEYS = ("rot_pred",)  # rot_true too in simulated runs
SAMPLE_KEYS = ("inputs", "renderings")

# holly.atomic.atomic_path's temporary files: ".<name>.<mkstemp's 8 characters>.tmp"
_TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_STEP_FILE = re.compile(r"^(?:step|points)_([0-9]{8})\.(?:pt|ply)$")
# Files whose presence means "a run was trained here" (what claim() protects).
_RUN_MARKERS = (CONFIG, METRICS, POINTS, PROVENANCE)
# Files and folders that training writes and later commands read (the run's inputs there).
_TRAINED = (CONFIG, PROVENANCE, METRICS, CHECKPOINTS, SNAPSHOTS, INITIAL_POINTS, GROUND_TRUTH)
_TRAINED += (TEST_POSES, SAMPLES, POINTS, FUSION)


def _step_of(path: Path) -> int | None:
    m = _STEP_FILE.match(path.name)
    return int(m.group(1)) if m else None


def is_holly_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint ``holly train`` wrote: a torch zip archive whose pickle
    holds the ``holly_checkpoint`` key (read without torch and without loading any tensor)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            return bool(pickles) and b"holly_checkpoint" in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return False


@dataclass(frozen=True)
class RunFolder:
    """Paths and readers/writers of one run folder ``root`` (see docs/architecture.md)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # -- paths -----------------------------------------------------------------------------
    def _p(self, name: str) -> Path:
        return self.root / name

    config = property(lambda self: self._p(CONFIG))
    provenance = property(lambda self: self._p(PROVENANCE))
    metrics = property(lambda self: self._p(METRICS))
    checkpoints = property(lambda self: self._p(CHECKPOINTS))
    last_checkpoint = property(lambda self: self._p(CHECKPOINTS) / LAST_CHECKPOINT)
    replaced = property(lambda self: self._p(CHECKPOINTS) / REPLACED)
    snapshots = property(lambda self: self._p(SNAPSHOTS))
    initial_points = property(lambda self: self._p(INITIAL_POINTS))
    ground_truth = property(lambda self: self._p(GROUND_TRUTH))
    test_poses = property(lambda self: self._p(TEST_POSES))
    samples = property(lambda self: self._p(SAMPLES))
    points = property(lambda self: self._p(POINTS))
    evaluation = property(lambda self: self._p(EVALUATION))
    snapshot_scores = property(lambda self: self._p(SNAPSHOT_SCORES))
    aligned_points = property(lambda self: self._p(ALIGNED_POINTS))
    figures = property(lambda self: self._p(FIGURES))
    viewer = property(lambda self: self._p(VIEWER))
    vs_published = property(lambda self: self._p(VS_PUBLISHED))
    halfsets = property(lambda self: self._p(HALFSETS))
    half2_aligned = property(lambda self: self._p(HALVES) / HALF2_ALIGNED)
    fusion = property(lambda self: self._p(FUSION))
    lock_file = property(lambda self: self._p(LOCK))

    def trained_files(self) -> list[Path]:
        """What training wrote here and later commands read (config, provenance, metrics,
        checkpoints/, snapshots/, the point files, the npz files): the inputs that no output of
        ``evaluate`` or ``compare`` may replace (:func:`holly.atomic.refuse_inputs`)."""
        return [self._p(name) for name in _TRAINED]

    def result_files(self) -> list[Path]:
        """:meth:`trained_files` and what the later commands wrote (evaluations, alignments,
        figures, the half-set runs and their comparison): the inputs of the commands that read
        a whole run (``viewer``, ``summarise``, ``report``, ``export``). The viewer page is
        not among them: it is what ``viewer`` writes."""
        names = (EVALUATION, SNAPSHOT_SCORES, ALIGNED_POINTS, VS_PUBLISHED, VS_PUBLISHED_ALIGNED)
        names += (HALFSETS, FIGURES, HALVES)
        return self.trained_files() + [self._p(name) for name in names]

    def half(self, k: int) -> RunFolder:
        """The run folder of half-set run ``k`` (1 or 2): ``halves/half<k>``."""
        return RunFolder(self._p(HALVES) / f"half{int(k)}")

    def checkpoint(self, step: int) -> Path:
        """``checkpoints/step_XXXXXXXX.pt`` of ``step``."""
        return self.checkpoints / f"step_{int(step):08d}.pt"

    def snapshot(self, step: int) -> Path:
        """``snapshots/points_XXXXXXXX.ply`` of ``step``."""
        return self.snapshots / f"points_{int(step):08d}.ply"

    def snapshot_files(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every training snapshot, by step."""
        return self.numbered(self.snapshots, "points_*.ply")

    def checkpoint_files(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every periodic checkpoint ``step_*.pt``, by step."""
        return self.numbered(self.checkpoints, "step_*.pt")

    @staticmethod
    def numbered(folder: Path, pattern: str) -> list[tuple[int, Path]]:
        """``(step, path)`` of the files ``XXX_<8 digits>.pt|ply`` matching ``pattern``, by step."""
        if not folder.is_dir():
            return []
        found = [(_step_of(p), p) for p in folder.glob(pattern)]
        return sorted((s, p) for s, p in found if s is not None)

    def prune_checkpoints(self, keep: int | None) -> list[Path]:
        """Delete all but the newest ``keep`` periodic checkpoints (``train.keep_checkpoints``).

        ``last.pt`` and files of other names are never touched; ``keep`` None keeps all.
        Returns the deleted paths, oldest first.
        """
        if keep is None:
            return []
        found = self.checkpoint_files()
        doomed = [path for _, path in found[: max(0, len(found) - keep)]]
        for path in doomed:
            path.unlink(missing_ok=True)
        return doomed

    def resume_candidates(self) -> list[Path]:
        """Checkpoints to resume from, best first: ``last.pt``, then ``step_*.pt`` newest first."""
        found = [self.last_checkpoint] if self.last_checkpoint.is_file() else []
        return found + [p for _, p in reversed(self.checkpoint_files())]

    def is_finished(self) -> bool:
        """``points.ply`` is written last: its presence marks a finished run."""
        return self.points.is_file()

    def holds_run(self) -> bool:
        """Whether the folder holds (part of) a training run."""
        return any(self._p(n).exists() for n in _RUN_MARKERS) or bool(self.resume_candidates())

    def written_by_holly(self) -> bool:
        """Whether holly's marker is here: a ``provenance.json`` that is holly's record (a JSON
        object with ``created`` and the resolved ``config``), which ``holly train`` writes before
        any checkpoint, metrics row or point file; or, where that file is gone (Snakemake deletes
        a failed job's declared outputs, never ``checkpoints/``), a checkpoint of holly's own.
        Only such a run may be replaced (``--force``) or continued: a folder that merely holds
        files of those names is a user's."""
        try:
            prov = json.loads(self.provenance.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            prov = None
        if isinstance(prov, dict) and "created" in prov and isinstance(prov.get("config"), dict):
            return True
        # a workflow manager deleted a failed job's outputs, provenance.json among them, or a
        # replaced run's last.pt was copied into a folder of its own (docs/architecture.md):
        # holly's checkpoints are its marker too
        return not self.provenance.exists() and any(
            map(is_holly_checkpoint, self.resume_candidates())
        )

    # -- one writer at a time --------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str, shared: bool = False):
        """Hold the folder's advisory writer lock (``.holly.lock``) while the block runs.

        ``fcntl.flock`` on the lock file: exclusive for the commands that rewrite the run
        (``train``, ``refine``), which then write their pid and ``command`` into it; ``shared``
        for those that only add their own result files (``evaluate``, ``compare``), so that the
        workflow's evaluations of one run can run side by side while none of them can run beside
        its training. The last holder removes the lock file; the kernel releases the lock when
        its process ends, however it ends (``kill -9`` included), so the file such a process
        leaves never blocks a rerun. Folders that this call creates are removed again (if empty)
        when the block fails, so a command refused before it wrote anything leaves nothing.

        Raises
        ------
        HollyError
            Another process holds the lock: names its pid (and command, when it is a writer).
        """
        if self.root.exists() and not self.root.is_dir():
            raise HollyError(f"{self.root} is a file, not a folder; choose another path")
        created = [p for p in (self.root, *self.root.parents) if not p.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = self._acquire(shared)
        except PermissionError:
            if not shared:
                raise
            # a read-only run (someone else's, a shared copy) is evaluated elsewhere: no writer
            # can hold it either
            log.warning("%s is not writable: reading it without a lock", self.root)
            yield self
            return
        ok = False
        try:
            if not shared:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} holly {command}\n".encode(), 0)
            yield self
            ok = True
        finally:
            self._release(fd)
            if not ok:
                for folder in created:  # deepest first; rmdir leaves a folder that is not empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    def _acquire(self, shared: bool) -> int:
        """Open ``.holly.lock`` and flock it; the fd. Retries when the file it locked was
        removed meanwhile by a releasing holder (then the lock would guard nothing)."""
        for _ in range(100):
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise HollyError(
                    f"{self.root} is in use by another holly process ({holder}); wait for it "
                    "to finish (or stop it), then rerun"
                ) from None
            if _same_file(fd, self.lock_file):
                return fd
            os.close(fd)
        raise HollyError(f"cannot lock {self.lock_file}: it keeps being replaced")

    def _release(self, fd: int) -> None:
        """Unlock; the last holder removes the lock file (under an exclusive lock, so that a
        process that opened it meanwhile sees it replaced and retries)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held already, or the last holder
        except BlockingIOError:
            pass  # others still hold it (shared): they remove it
        else:
            if _same_file(fd, self.lock_file):
                self.lock_file.unlink(missing_ok=True)
        os.close(fd)  # releases the flock

    # -- claiming the folder for a new run -------------------------------------------------
    def claim(self, resume: bool, force: bool = False) -> None:
        """Make ``root`` ready for training; refuse to overwrite another run.

        Creates nothing: the folder appears with the run's first file, so a run that fails while
        building its data leaves no empty folder behind.

        Parameters
        ----------
        resume : bool
            The caller will continue the run found there (or start one if there is none).
        force : bool
            Replace a run found there: its own files (those of docs/architecture.md) are removed,
            nothing else in the folder is touched.

        Raises
        ------
        HollyError
            ``root`` is a file, holds run files that holly did not write (no holly
            ``provenance.json``: :meth:`written_by_holly`), or holds another run and neither
            ``resume`` nor ``force`` is set.
        """
        if self.root.exists() and not self.root.is_dir():
            raise HollyError(f"--out {self.root} is a file, not a folder; choose another path")
        if self.holds_run() and not self.written_by_holly():
            found = [n for n in _RUN_MARKERS if self._p(n).exists()] or [CHECKPOINTS]
            raise HollyError(
                f"{self.root} holds {', '.join(found)} but no provenance.json of a holly run; "
                "holly replaces or continues only runs it wrote: choose another --out folder "
                "(or move those files away yourself)"
            )
        if self.holds_run() and not resume:
            if not force:
                raise HollyError(
                    f"{self.root} already holds a training run; continue it with --resume, "
                    "replace it with --force, or choose another --out folder"
                )
            log.warning("--force: replacing the run in %s", self.root)
            self.remove_run_files()

    def remove_run_files(self, keep_checkpoints: bool = False) -> None:
        """Delete the files of docs/architecture.md (and only those) from the folder."""
        names = [CONFIG, PROVENANCE, METRICS, INITIAL_POINTS, GROUND_TRUTH, TEST_POSES, SAMPLES]
        names += [POINTS, EVALUATION, SNAPSHOT_SCORES, ALIGNED_POINTS, VIEWER, VS_PUBLISHED]
        names += [VS_PUBLISHED_ALIGNED, FUSION]
        for name in names:
            self._p(name).unlink(missing_ok=True)
        for _, path in self.snapshot_files():
            path.unlink()
        if not keep_checkpoints:
            for _, path in self.checkpoint_files():
                path.unlink()
            self.last_checkpoint.unlink(missing_ok=True)

    def remove_stale_temps(self) -> list[Path]:
        """Delete the temporary files that an interrupted write left (``kill -9`` inside
        :func:`holly.atomic.atomic_path`: ``.last.pt.XXXXXXXX.tmp`` and the like) in the folder,
        ``checkpoints/`` and ``snapshots/``; returns them. Call it only under the exclusive
        :meth:`lock`: then no other holly process is writing one."""
        removed = []
        for folder in (self.root, self.checkpoints, self.snapshots):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if _TEMP_FILE.match(path.name) and path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        if removed:
            log.info(
                "removed %d temporary file(s) of an interrupted write: %s",
                len(removed),
                ", ".join(p.name for p in removed),
            )
        return removed

    def set_aside(self, path: Path) -> Path:
        """Move an unreadable file into ``checkpoints/unreadable/`` (never delete it)."""
        dest_dir = self.checkpoints / UNREADABLE
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, k = dest_dir / path.name, 1
        while dest.exists():
            dest, k = dest_dir / f"{path.name}.{k}", k + 1
        shutil.move(os.fspath(path), dest)
        log.warning("kept the unreadable %s as %s", path, dest)
        return dest

    def keep_replaced(self, checkpoint: Path) -> Path:
        """Move the replaced run's ``checkpoint`` (and copy its ``config.yaml``) into
        ``checkpoints/replaced/``, as ``last.pt`` and ``config.yaml``; returns that folder.

        One run is kept, the one replaced last: a copy per replacement would make every
        config edit in the workflow cost a checkpoint per experiment, for good. The folder is
        a run folder of its own in miniature: ``holly train --config replaced/config.yaml
        --out OTHER --resume yes`` after copying ``last.pt`` into ``OTHER/checkpoints/``
        continues the replaced run.
        """
        dest = self.replaced
        if dest.is_dir():
            log.warning("dropping the run replaced before, kept in %s", dest)
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if self.config.is_file():
            shutil.copy2(self.config, dest / CONFIG)
        shutil.move(os.fspath(checkpoint), dest / LAST_CHECKPOINT)
        return dest

    # -- config and provenance -------------------------------------------------------------
    def read_config(self, required: bool = True) -> dict:
        """The resolved config (``config.yaml``); ``{}`` when absent and not ``required``."""
        import yaml

        path = self.config
        if not path.is_file():
            if required:
                raise HollyError(f"{path} not found; it is written by `holly train`")
            return {}
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise HollyError(
                f"{path} is not valid YAML ({one_line(exc)}); rerun `holly train`"
            ) from None
        if data is None and not required:
            return {}
        if not isinstance(data, dict):
            raise HollyError(f"{path} is not a config mapping; rerun `holly train`")
        return data

    def write_config(self, cfg: dict) -> None:
        import yaml

        with atomic_path(self.config) as tmp:
            tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def read_provenance(self, required: bool = False) -> dict:
        """``provenance.json``; ``{}`` when absent and not ``required``."""
        if not self.provenance.is_file() and not required:
            return {}
        return read_json(self.provenance)

    def write_provenance(self, prov: dict) -> None:
        write_json(self.provenance, prov)

    def read_scale(self) -> dict | None:
        """The physical scale of the run's images (provenance ``scale``), or None.

        ``{"nm_per_px": float, "nm_per_model_unit": float, "from": store}`` for a run trained on
        an image store that records nm per pixel (``holly localise`` of nm, or of pixels of known
        size); None for simulated data, stores without a scale, or no/unreadable provenance.
        Model-unit distances times ``nm_per_model_unit`` are nm.
        """
        try:
            scale = self.read_provenance().get("scale")
        except HollyError:
            return None
        if not isinstance(scale, dict) or not scale.get("nm_per_px"):
            return None
        return {
            "nm_per_px": float(scale["nm_per_px"]),
            "nm_per_model_unit": float(scale["nm_per_model_unit"]),
            "from": scale.get("from"),
        }

    # -- metrics ---------------------------------------------------------------------------
    def read_metrics(self):
        """``metrics.csv`` as a pandas DataFrame of numbers, with a clear error if unusable."""
        return read_metrics_file(self.metrics)

    def metric_rows(self, up_to_step: int) -> list[dict]:
        """The rows of ``metrics.csv`` with ``step <= up_to_step`` (for resuming).

        Rows that cannot be parsed are skipped with a warning rather than failing the resume.
        """
        path = self.metrics
        if not path.is_file():
            return []
        rows, bad = [], 0
        try:
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        step = int(row["step"])
                    except (KeyError, TypeError, ValueError):
                        bad += 1
                        continue
                    if step <= up_to_step:
                        rows.append({k: row.get(k, "") for k in METRIC_COLUMNS})
        except (UnicodeDecodeError, csv.Error) as exc:
            log.warning("%s is unreadable (%s): its rows are not kept", path, exc)
            return []
        if bad:
            log.warning("%s: skipped %d unreadable rows", path, bad)
        return rows

    def start_metrics(self, rows: list[dict]) -> None:
        """(Re)write ``metrics.csv`` with its header and ``rows``, atomically."""
        with atomic_path(self.metrics) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, METRIC_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

    def write_snapshot_scores(self, rows: list[dict]) -> None:
        """``snapshot_scores.csv``: one row per snapshot (columns: the rows' keys), atomically."""
        with atomic_path(self.snapshot_scores) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics, "a", newline="") as fh:
            csv.DictWriter(fh, METRIC_COLUMNS).writerow(row)

    # -- arrays ----------------------------------------------------------------------------
    def write_test_poses(self, **arrays) -> None:
        """``test_poses.npz``: rot_true, rot_pred [T,3,3], trans_true, trans_pred [T,2], ..."""
        _write_npz(self.test_poses, arrays)

    def read_test_poses(self) -> dict | None:
        """``test_poses.npz`` as a dict of arrays; None when the run has none (real data)."""
        if not self.test_poses.is_file():
            return None
        poses = read_npz(self.test_poses, TEST_POSE_KEYS)
        bad = [
            k
            for k in ("rot_true", "rot_pred", "rot_amortised", "hypotheses")
            if k in poses and (poses[k].dtype.kind not in "fiu" or not np.isfinite(poses[k]).all())
        ]
        if bad:
            raise HollyError(
                f"{self.test_poses} holds non-finite poses ({', '.join(bad)}): the training "
                "diverged or the file is damaged; retrain with `holly train --config "
                f"{self.config} --out {self.root} --force`"
            )
        return poses

    def write_samples(self, **arrays) -> None:
        """``samples.npz``: inputs and renderings [K,H,W] (normalised), sigma."""
        _write_npz(self.samples, arrays)

    def read_samples(self) -> dict:
        if not self.samples.is_file():
            raise HollyError(f"{self.samples} not found; it is written by `holly train`")
        return read_npz(self.samples, SAMPLE_KEYS)

    # -- point clouds ----------------------------------------------------------------------
    def read_cloud(self, path: Path, what: str | None = None) -> np.ndarray:
        """A point file of this run, finite, as [N, 3]; a clear error when missing or bad."""
        from holly.data.pointio import read_points

        if not path.is_file():
            hint = (
                "the run has not finished: wait for or resume `holly train`"
                if path == self.points
                else "it is written by `holly train`"
            )
            raise HollyError(f"{path} not found: {hint}")
        xyz = read_points(path)
        if not np.isfinite(xyz).all():
            raise HollyError(f"{path} ({what or path.name}) holds non-finite coordinates")
        return xyz

    # -- scores: evaluation.json, vs_published.json, halfsets.json (writers: below) ----------
    def read_evaluation(self) -> dict:
        """``evaluation.json`` (``holly evaluate``); HollyError when missing or corrupt."""
        return read_json(self.evaluation)

    def read_vs_published(self) -> dict | None:
        """``vs_published.json``: an evaluation against a published cloud (``holly evaluate
        --ground-truth PUBLISHED --out RUN/vs_published.json``); None when the run has none."""
        return read_json(self.vs_published) if self.vs_published.is_file() else None

    def read_halfsets(self) -> dict | None:
        """``halfsets.json``: the comparison of the run's two half-set runs (``holly compare``);
        None when the run has none."""
        return read_json(self.halfsets) if self.halfsets.is_file() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock on ``fd``: the pids that ``/proc/locks`` lists for its file (Linux),
    with the command a writer recorded in it; else what the file records."""
    st = os.fstat(fd)
    pids = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF"
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue  # "->": a waiter, not a holder
            if fields[5].rsplit(":", 1)[-1] == str(st.st_ino) and fields[4] not in pids:
                pids.append(fields[4])
    recorded = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    if recorded and (not pids or recorded[0] in pids):
        what = " ".join(recorded[1:]) or "holly"
        return f"pid {recorded[0]}, {what}"
    return f"pid {', '.join(pids)}" if pids else "pid unknown"


def read_metrics_file(path: str | os.PathLike):
    """A ``metrics.csv`` file as a pandas DataFrame of numbers; HollyError if unusable."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise HollyError(f"{path} not found; it is written by `holly train`")
    try:
        metrics = pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser and decoding errors
        raise HollyError(f"cannot read {path}: {one_line(exc)}") from None
    missing = set(REQUIRED_METRICS) - set(metrics.columns)
    if missing:
        raise HollyError(f"{path} lacks columns {sorted(missing)}; rerun `holly train`")
    text = [c for c in TEXT_METRICS if c in metrics]
    if text:
        metrics[text] = metrics[text].fillna("").astype(str)
    try:
        numeric = [c for c in metrics.columns if c not in TEXT_METRICS]
        metrics[numeric] = metrics[numeric].apply(pd.to_numeric)
    except (ValueError, TypeError) as exc:
        raise HollyError(f"{path} holds a non-number ({exc}); rerun `holly train`") from None
    return metrics


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; HollyError when missing, corrupt or not an object."""
    path = Path(path)
    if not path.is_file():
        raise HollyError(f"{path} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HollyError(f"{path} is not valid JSON: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise HollyError(f"{path} does not hold a JSON object")
    return data


def check_strict_json(result: dict) -> None:
    """Raise ValueError (json's message) when ``result`` holds a NaN or an infinity, which
    :func:`write_evaluation` and :func:`write_halfsets` refuse: a command checks this before it
    writes any of its files, so a result that cannot be written leaves every file untouched."""
    json.dumps(result, default=jsonable, allow_nan=False)


def write_evaluation(path: str | os.PathLike, result: dict) -> None:
    """Write an evaluation (``holly evaluate``): ``RUN/evaluation.json``, or wherever ``--out``
    says (the workflow's ``vs_published.json`` is one). Indented, strict JSON (no NaN), atomic.

    The path is the caller's: the command's ``--out`` may name any file.
    """
    write_json(path, result, allow_nan=False)


def write_halfsets(path: str | os.PathLike, result: dict) -> None:
    """Write a comparison of two runs (``holly compare --out``; in the workflow the experiment's
    ``halfsets.json``). Indented, strict JSON (no NaN), atomic."""
    write_json(path, result, allow_nan=False)


def read_npz(path: Path, required: tuple[str, ...] = ()) -> dict:
    """Arrays of an ``.npz`` file; HollyError when corrupt or lacking ``required`` keys."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, OSError, ...
        raise HollyError(f"cannot read {path}: {one_line(exc)}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise HollyError(f"{path} lacks {missing}; rerun `holly train`")
    return arrays


def _write_npz(path: Path, arrays: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def nm_per_px(run_dir: str | os.PathLike) -> float | None:
    """Nanometres per image pixel of a run folder, or None when unknown
    (:meth:`RunFolder.read_scale`); for scale bars and nm columns of figures and reports."""
    scale = RunFolder(run_dir).read_scale()
    return None if scale is None else scale["nm_per_px"]


def nm_per_model_unit(run_dir: str | os.PathLike) -> float | None:
    """Nanometres per model unit of a run folder (distances in model units times this are nm),
    or None when unknown (:meth:`RunFolder.read_scale`)."""
    scale = RunFolder(run_dir).read_scale()
    return None if scale is None else scale["nm_per_model_unit"]
