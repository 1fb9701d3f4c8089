"""Score a finished run against its ground truth (mirror-aware alignment, baselines, pose error).

Reads RUN/points.ply, RUN/initial_points.ply, RUN/ground_truth.ply (or --ground-truth) and,
if present, RUN/test_poses.npz. Writes RUN/evaluation.json (or --out) and
RUN/aligned_points.ply (the reconstruction aligned onto the ground truth). Without ground truth
(real data) only the cloud's own statistics and pose errors are reported.

Chamfer is the mean (not squared) nearest-neighbour distance in both directions, halved; the
F-score threshold tau defaults to 0.1 x the ground truth's bounding radius.

--snapshots also scores every training snapshot (RUN/snapshots/points_*.ply) the same way and
writes RUN/snapshot_scores.csv: the learning curve, which says whether and when a long run learned
the structure. It works on an unfinished run too (then only the snapshots are scored).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from holly.atomic import _jsonable, refuse_inputs, write_json
from holly.errors import HollyError
from holly.evaluate import score_run, score_snapshots
from holly.pointio import read_ply_comments, write_points
from holly.runfolder import RunFolder

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `holly train`")
    parser.add_argument(
        "--ground-truth",
        metavar="PATH",
        help="ground-truth points (default RUN_DIR/ground_truth.ply)",
    )
    parser.add_argument(
        "--tau",
        type=float,
        help="F-score distance threshold in model units (default: 0.1 x GT radius)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of alignment starts and baselines"
    )
    parser.add_argument(
        "--out", metavar="PATH", help="output JSON (default RUN_DIR/evaluation.json)"
    )
    parser.add_argument(
        "--aligned",
        metavar="PATH",
        help="write the aligned reconstruction here (default RUN_DIR/aligned_points.ply); "
        "use it when scoring against another cloud, e.g. published results",
    )
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="also score every training snapshot into RUN/snapshot_scores.csv (the learning "
        "curve; on an unfinished run, only the snapshots are scored)",
    )


def _summary(result: dict) -> str:
    recon, pose = result["reconstruction"], result["pose_error_deg"]
    parts = [f"{result['n_points']} points"]
    if recon is not None:
        parts.append(
            f"chamfer {recon['chamfer']:.4g} (blob {result['blob']['chamfer']:.4g}, "
            f"floor {result['ground_truth_floor']['chamfer']:.4g}), "
            f"F@{result['tau']:.3g} {recon['fscore']:.3f}, {recon['handedness']}"
        )
    else:
        parts.append("no ground truth")
    if pose is not None:
        parts.append(f"pose error median {pose['median']:.1f} deg")
    return "; ".join(parts)


def _meta(args: argparse.Namespace, result: dict) -> dict:
    """PLY comments of the aligned cloud: those of points.ply (units, step, ...) and what it is."""
    meta = read_ply_comments(RunFolder(args.run_dir).points)
    truth = Path(result.get("ground_truth") or "ground truth").name
    handedness = (result.get("reconstruction") or {}).get("handedness")
    meta["cloud"] = f"points.ply aligned to {truth} (handedness {handedness})"
    return meta


def _snapshot_curve(args: argparse.Namespace) -> None:
    rows = score_snapshots(args.run_dir, args.ground_truth, args.tau, args.seed)
    run = RunFolder(args.run_dir)
    run.write_snapshot_scores(rows)
    for row in rows:
        log.info(
            "step %7d  sigma %5.2f  chamfer/blob %.3f  F %.3f  F@tau/2 %.3f",
            row["step"],
            row["sigma_in"],
            row["chamfer_ratio_to_blob"],
            row["fscore"],
            row["fscore_tight"],
        )
    log.info("%d snapshots scored -> %s", len(rows), run.snapshot_scores)


def main(args: argparse.Namespace) -> int:
    run = RunFolder(args.run_dir)
    outputs = {
        "--out": Path(args.out) if args.out else run.evaluation,
        "--aligned": Path(args.aligned) if args.aligned else run.aligned_points,
        "--snapshots": run.snapshot_scores if args.snapshots else None,
    }
    refuse_inputs(outputs, [*run.trained_files(), args.ground_truth])
    if not run.root.is_dir():  # nothing to lock: _evaluate reports the missing folder
        return _evaluate(args)
    if args.snapshots and not run.is_finished():
        # only snapshot_scores.csv, which training never writes: a run is checked as it trains
        return _evaluate(args)
    with run.lock("evaluate", shared=True):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    if args.snapshots:
        _snapshot_curve(args)
        if not RunFolder(args.run_dir).is_finished():
            log.warning("%s has not finished (no points.ply): scored its snapshots", args.run_dir)
            return 0
    result, aligned_path, aligned = score_run(
        args.run_dir, args.ground_truth, args.tau, args.seed, aligned_out=args.aligned
    )
    out = Path(args.out) if args.out else RunFolder(args.run_dir).evaluation
    try:  # strict JSON first: a result that cannot be written leaves both files untouched
        json.dumps(result, default=_jsonable, allow_nan=False)
    except ValueError as exc:
        raise HollyError(
            f"the evaluation of {args.run_dir} holds non-finite numbers: {exc}"
        ) from None
    if out.is_dir():
        raise HollyError(f"--out {out} is a folder; give the path of the JSON file")
    if aligned is not None:
        write_points(
            aligned_path, aligned, comment="holly evaluate: aligned to GT", meta=_meta(args, result)
        )
    write_json(out, result, allow_nan=False)
    log.info("%s -> %s", _summary(result), out)
    return 0
