"""``refine.start_points``: a known cloud where the refinement starts, in place of the CNN's.

The refinement searches every table image's pose afresh against the cloud it starts from, so it
can start from any cloud in the model's units: an earlier run's ``points.ply``, a reference
model, or (in simulations) the true sites, which asks whether holly's refinement keeps the truth
once it has it. The file is read when training starts (a bad file fails before the CNN phase has
spent minutes) and its checksum goes into the run's provenance with the data's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from holly.checksums import sha256_file
from holly.data.pointio import read_points
from holly.data.shapes import check_in_frame, frame_radius
from holly.errors import HollyError

log = logging.getLogger(__name__)

KEY = "refine.start_points"


@dataclass(frozen=True)
class StartPoints:
    """The cloud the refinement starts from: ``points`` [num_points, 3] (model units), read
    from ``path`` (``sha256`` its checksum)."""

    path: Path
    sha256: str
    points: np.ndarray


def read_start_points(
    path: str | Path, num_points: int, seed: int, frame: tuple[int, int]
) -> StartPoints:
    """``num_points`` points of the point file ``path``: all of them, or a seeded subset (drawn
    without replacement, order kept) when it holds more. Fewer is an error naming the key: a
    cloud cannot be made up from points that are not there. ``frame`` is the rendered image's
    (height, width): a cloud that does not fit it is in other units (:func:`check_units`)."""
    path = Path(path)
    try:
        xyz = read_points(path)
    except HollyError as exc:
        raise HollyError(f"key '{KEY}': {exc}") from exc
    if len(xyz) < num_points:
        raise HollyError(
            f"key '{KEY}': {path} holds {len(xyz)} points, fewer than model.num_points "
            f"({num_points}); set model.num_points to at most {len(xyz)}, or give a file "
            "with more points"
        )
    check_units(xyz, path, *frame)
    if len(xyz) > num_points:
        log.info("%s: %d of the %d points of %s (seeded)", KEY, num_points, len(xyz), path)
        keep = np.random.default_rng(seed).choice(len(xyz), num_points, replace=False)
        xyz = xyz[np.sort(keep)]
    return StartPoints(path, sha256_file(path), np.ascontiguousarray(xyz, dtype=np.float32))


# A cloud of next to nothing was written in other units (e.g. micrometres); one beyond the
# frame (e.g. nm) is :func:`check_in_frame`'s to refuse.
SMALLEST_RMS_RADIUS = 1e-3
UNITS_FIX = (
    "give the points in model units (holly's points.ply are; nm divided by the store's nm per "
    "model unit)"
)


def check_units(xyz: np.ndarray, path: Path, height: int, width: int) -> None:
    """Refuse a cloud in other units than the model's: most of it outside the rendered frame
    (:func:`holly.data.shapes.check_in_frame`), or collapsed to a point."""
    name = f"'{KEY}' {path}"
    check_in_frame(xyz, name, height, width, fix=UNITS_FIX)
    radius = float(np.sqrt(((xyz - xyz.mean(0)) ** 2).sum(1).mean()))
    if radius < SMALLEST_RMS_RADIUS:
        raise HollyError(
            f"key '{KEY}': the points of {path} have an rms radius of {radius:.3g} model units, "
            f"next to nothing in a frame of {frame_radius(height, width):g}: {UNITS_FIX}"
        )


def give_start_points(trainer) -> None:
    """``trainer``'s refinement gets ``refine.start_points`` (if set) as its first cloud, and the
    file's checksum joins the run's inputs (provenance.json). Like the image store it is read
    at every (re)start, so a bad file stops the run before any step; once the refinement has
    begun, a resumed run takes its cloud from the checkpoint, and the checksum recorded is the
    file's as read at the latest (re)start."""
    cfg = trainer.cfg
    if cfg.refine.start_points is None:
        return
    frame = (cfg.render.height, cfg.render.width)
    start = read_start_points(cfg.refine.start_points, cfg.model.num_points, cfg.seed, frame)
    trainer.data.inputs[str(start.path)] = start.sha256
    trainer.refinement.start_cloud = start.points
