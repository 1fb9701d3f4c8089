"""The checkpoint format (``checkpoints/last.pt`` and ``step_*.pt``) and the resume rules.

A checkpoint is a ``torch.save`` of one dict (its keys are listed in docs/architecture.md) whose
``holly_checkpoint`` key is the format version:

* format 1 (older holly) lacks ``calibration``, the training batches the evaluation-time
  BatchNorm statistics come from; such a checkpoint still resumes (:func:`calibration_batches`);
* format 2 holds them, so a resumed run writes every file as an uninterrupted one would.

The rules of resuming (:func:`resume`): a checkpoint must have been made with the same config,
apart from :data:`RESUMABLE_KEYS` (and, before the refinement stage started, any ``refine`` key);
a file that cannot be read, or whose tensors do not fit the model, is set aside and the next
candidate (:meth:`RunFolder.resume_candidates`) is tried. The module knows state dicts and
modules, not the trainer: the trainer builds and restores its own state dict.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from holly.atomic import atomic_path
from holly.config import with_defaults
from holly.errors import HollyError
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

# The format version written into every checkpoint (its ``holly_checkpoint`` key).
FORMAT = 2
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
# Errors of loading a read checkpoint's states into the model and optimisers: a misfit.
MISFIT_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, AttributeError)


class UnreadableCheckpoint(HollyError):
    """A checkpoint file that cannot be used (empty, truncated, corrupt, lacking its config, or
    holding tensors that do not fit the model); ``reason`` says which."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot use checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def save(state: dict, run: RunFolder, keep: int | None) -> None:
    """Write ``state`` as ``step_XXXXXXXX.pt`` of its step and as ``last.pt``, each atomically,
    then keep the newest ``keep`` periodic checkpoints (``train.keep_checkpoints``)."""
    step = state["step"]
    for path in (run.checkpoint(step), run.last_checkpoint):
        try:
            with atomic_path(path) as tmp:  # a failed write leaves no partial file
                torch.save(state, tmp)
        except (OSError, RuntimeError) as exc:  # torch's writer raises RuntimeError
            raise HollyError(
                f"cannot write checkpoint {path} at step {step} ({_reason(exc)}); "
                "free disk space (or fix the folder's permissions), then continue with "
                f"`holly train ... --out {run.root} --resume yes`"
            ) from None
    run.prune_checkpoints(keep)


def load(path: Path, device: torch.device) -> dict:
    """The state dict of the checkpoint ``path`` (tensors on ``device``); a file that cannot be
    read, or lacks the config, model, optimiser or step, is an :class:`UnreadableCheckpoint`."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        for key in ("config", "model", "optimizer", "step"):  # a KeyError names the missing one
            state[key]
    except Exception as exc:
        raise UnreadableCheckpoint(path, _reason(exc, path)) from exc
    return state


def is_refining(state: dict) -> bool:
    """Whether the checkpoint was made after the refinement stage started."""
    return state.get("refinement") is not None


def check_resumable(state: dict, config: dict, model: torch.nn.Module, path: Path) -> None:
    """A :class:`HollyError` when the checkpoint was made with another config, an
    :class:`UnreadableCheckpoint` when its model state does not fit ``model``."""
    # before the refinement stage has started, its settings may still change
    _check_same_config(state["config"], config, path, refine_fixed=is_refining(state))
    misfit = _misfit(model.state_dict(), state["model"])
    if misfit:
        raise UnreadableCheckpoint(path, f"it does not fit the model of this config: {misfit}")


@contextlib.contextmanager
def all_or_nothing(path: Path, model: torch.nn.Module):
    """Load a checkpoint's states inside this block: when one does not fit, the model's weights
    are put back and the error becomes an :class:`UnreadableCheckpoint` (the next one is
    tried)."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        yield
    except MISFIT_ERRORS as exc:
        model.load_state_dict(before)  # nothing changes: the next one is tried
        raise UnreadableCheckpoint(
            path, f"it does not fit the model of this config: {_reason(exc)}"
        ) from exc


def calibration_batches(state: dict, device: torch.device) -> list[torch.Tensor]:
    """The checkpoint's BatchNorm calibration batches on ``device`` (none in format 1)."""
    return [t.to(device) for t in state.get("calibration", [])]


def note_older_format(state: dict, path: Path) -> None:
    """Log that a format-1 checkpoint past step 0 holds no calibration batches."""
    if "calibration" not in state and int(state["step"]) > 0:
        # until the trainer has enough batches from new training steps, the BatchNorm
        # statistics come from fewer (or seeded) batches
        log.info(
            "%s holds no BatchNorm calibration batches (an older checkpoint): the next "
            "held-out losses may differ slightly from an uninterrupted run",
            path,
        )


def restore(
    path: Path,
    device: torch.device,
    config: dict,
    model: torch.nn.Module,
    load_state_dict: Callable[[dict], None],
) -> int:
    """Load the checkpoint ``path`` into the caller (``load_state_dict(state)``, which fills
    ``model`` among others) and return its step; a checkpoint of another ``config``, or one that
    does not fit, raises and changes nothing."""
    state = load(path, device)
    check_resumable(state, config, model, path)
    with all_or_nothing(path, model):
        load_state_dict(state)
    note_older_format(state, path)
    step = int(state["step"])
    log.info("resumed from %s at step %d", path, step)
    return step


def resume(run: RunFolder, mode: str, load_from: Callable[[Path], None]) -> None:
    """``mode`` no: start afresh; yes: continue from the newest readable checkpoint if there is
    one (a checkpoint of another config is an error); auto: continue if it matches, else start
    afresh, keeping the replaced run's newest checkpoint and config in ``checkpoints/replaced/``.

    ``load_from(path)`` restores the caller's state, raising :class:`UnreadableCheckpoint` or, for
    another config, :class:`HollyError`, and then changing nothing. ``last.pt`` is tried first,
    then ``step_*.pt`` newest first: an unreadable file is set aside (``checkpoints/unreadable/``),
    never deleted, and the next one is tried. When none can be read, nothing is touched and the
    run stops with an error.
    """
    if mode == "no":
        return
    unreadable = []
    for path in run.resume_candidates():
        try:
            load_from(path)
        except UnreadableCheckpoint as exc:
            log.warning("%s; trying the next checkpoint", exc)
            unreadable.append((path, exc.reason))
            continue
        except HollyError as exc:
            if mode != "auto":
                raise
            kept = run.keep_replaced(path)
            log.warning(
                "%s; --resume auto replaces that run and starts afresh. Its newest "
                "checkpoint and its config are kept in %s until a later replacement "
                "(docs/architecture.md: how to continue it)",
                exc,
                kept,
            )
        for bad, _ in unreadable:  # they would be overwritten by the continued run
            run.set_aside(bad)
        return
    if unreadable:
        raise HollyError(
            f"no readable checkpoint in {run.checkpoints} fits this run (tried "
            f"{'; '.join(f'{p.name}: {why}' for p, why in unreadable)}); nothing was "
            "deleted. Train afresh with --force (the old run is replaced) or into another "
            "--out folder"
        )


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


def _check_same_config(saved: dict, current: dict, path: Path, refine_fixed: bool = True) -> None:
    # A key missing from the checkpoint's config was added to holly after the checkpoint was
    # made: the run used what is now that key's default (e.g. train.channels_last), so it
    # compares as the default; otherwise every older checkpoint would count as another config
    # and --resume auto would start a finished run afresh.
    filled = with_defaults(saved)
    diffs = []
    for section, value in current.items():
        if isinstance(value, dict):
            saved_section = filled.get(section) or {}
            for key, v in value.items():
                free = (section, key) in RESUMABLE_KEYS or (
                    section == "refine" and not refine_fixed
                )
                was = saved_section.get(key)
                if not free and was != v:
                    diffs.append(f"{section}.{key}")
        elif (section,) not in RESUMABLE_KEYS and saved.get(section) != value:
            diffs.append(section)
    if diffs:
        raise HollyError(
            f"checkpoint {path} was made with a different config ({', '.join(diffs)}); "
            f"resume with the same config or train into a new output folder"
        )
