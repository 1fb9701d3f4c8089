"""Score a finished run against its ground truth (mirror-aware alignment, baselines, pose error).

Reads RUN/points.ply, RUN/initial_points.ply, RUN/ground_truth.ply (or --ground-truth) and,
if present, RUN/test_poses.npz. Writes RUN/evaluation.json (or --out) and
RUN/aligned_points.ply (the reconstruction aligned onto the ground truth). Without ground truth
(real data) only the cloud's own statistics and pose errors are reported.

Chamfer is the mean (not squared) nearest-neighbour distance in both directions, halved; the
F-score threshold tau defaults to 0.1 x the ground truth's bounding radius.

--structure checks the cloud against a structure known in advance, without holly's renderer
(holly/results/structure.py): tetrahedron, ring (with --structure-model, e.g. NPCModel.mat) or flat;
the result is evaluation.json's "structure" block. For the tetrahedron, --structure-model names a
folder of each particle's posed vertices and adds the held-out pose error against them
(holly/results/particlepose.py).

--locsim-truth SIM.csv scores a run trained on a table of `holly simulate-localisations` (via
`holly localise`) against that simulation: its sites (scaled by the run's nm per model unit) are the
ground truth and its true poses of the held-out images give the pose error and the true views
(holly/results/locsimtruth.py; evaluation.json's "locsim_truth" block).

--snapshots also scores every training snapshot (RUN/snapshots/points_*.ply) the same way and
writes RUN/snapshot_scores.csv: the learning curve, which says whether and when a long run learned
the structure. It works on an unfinished run too (then only the snapshots are scored).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from holly.atomic import refuse_inputs
from holly.data.pointio import read_ply_comments, write_points
from holly.errors import HollyError
from holly.results.evaluate import score_run, score_snapshots
from holly.results.locsimtruth import locsim_truth
from holly.results.views import run_views
from holly.run.runfolder import RunFolder, check_strict_json, write_evaluation

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `holly train`")
    parser.add_argument(
        "--ground-truth",
        metavar="PATH",
        help="ground-truth points (default RUN_DIR/ground_truth.ply)",
    )
    parser.add_argument(
        "--locsim-truth",
        metavar="SIM.csv",
        help="the table of `holly simulate-localisations` the run's image store was localised "
        "from: its sites (in the run's units) are the ground truth and its true poses those of "
        "the held-out images (instead of --ground-truth)",
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
        "--structure",
        choices=("tetrahedron", "ring", "flat"),
        help="also check the known structure, without holly's renderer (evaluation.json "
        "'structure'): tetrahedron (4 vertex clusters: edge spread, compactness against the "
        "localisation precision), ring (radius and angular spectrum, order 8 for a pore), "
        "flat (principal extents, flatness)",
    )
    parser.add_argument(
        "--structure-model",
        metavar="PATH",
        help="ring: the known structure's points to compare with (PLY/OBJ/CSV, or a MATLAB "
        "file with one M x 3 array such as NPCModel.mat); tetrahedron: a folder of each "
        "particle's posed vertices (model_structure_K.csv for localisation file K), for the "
        "held-out pose error",
    )
    parser.add_argument(
        "--model-nm-per-unit",
        type=float,
        help="nm per unit of --structure-model (default 1: nm; NPCModel.mat is in 130 nm "
        "camera pixels)",
    )
    parser.add_argument(
        "--precision",
        type=float,
        help="localisation precision in model units for the tetrahedron check (default: the "
        "median sigma_xy of the run's image store, where it has one)",
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
    if result.get("structure"):
        from holly.results.structure import headline

        row = headline(result["structure"])
        parts.append(
            f"{row.pop('structure_check')}: "
            + ", ".join(f"{k[10:]} {v:.4g}" for k, v in row.items() if v is not None)
        )
    return "; ".join(parts)


def _meta(args: argparse.Namespace, result: dict) -> dict:
    """PLY comments of the aligned cloud: those of points.ply (units, step, ...) and what it is."""
    meta = read_ply_comments(RunFolder(args.run_dir).points)
    truth = Path(result.get("ground_truth") or "ground truth").name
    handedness = (result.get("reconstruction") or {}).get("handedness")
    meta["cloud"] = f"points.ply aligned to {truth} (handedness {handedness})"
    return meta


def _structure_spec(args: argparse.Namespace) -> dict | None:
    """The structure check asked for on the command line (None: none)."""
    check = getattr(args, "structure", None)
    extra = [
        name
        for name in ("structure_model", "model_nm_per_unit", "precision")
        if getattr(args, name, None) is not None
    ]
    if check is None:
        if extra:
            raise HollyError(f"--{extra[0].replace('_', '-')} needs --structure")
        return None
    if args.structure_model is not None and check not in ("ring", "tetrahedron"):
        raise HollyError("--structure-model is used by --structure ring and tetrahedron only")
    if args.precision is not None and not (args.precision > 0):
        raise HollyError(f"--precision must be a positive length, got {args.precision}")
    if args.model_nm_per_unit is not None and not (args.model_nm_per_unit > 0):
        raise HollyError(f"--model-nm-per-unit must be positive, got {args.model_nm_per_unit}")
    return {
        "check": check,
        "model": args.structure_model,
        "model_nm_per_unit": args.model_nm_per_unit,
        "precision": args.precision,
    }


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
    refuse_inputs(outputs, [*run.trained_files(), args.ground_truth, args.locsim_truth])
    if args.locsim_truth and args.snapshots:  # with --ground-truth: refused by score_run
        raise HollyError("--locsim-truth gives the ground truth in memory: leave out --snapshots")
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
    truth = locsim_truth(args.run_dir, args.locsim_truth) if args.locsim_truth else None
    result, aligned_path, aligned = score_run(
        args.run_dir,
        args.ground_truth,
        args.tau,
        args.seed,
        aligned_out=args.aligned,
        structure=_structure_spec(args),
        locsim=truth,
    )
    # view range; unresolved z (holly/results/views.py)
    result["views"] = run_views(args.run_dir, rot_true=None if truth is None else truth.rot_true)
    out = Path(args.out) if args.out else RunFolder(args.run_dir).evaluation
    try:  # strict JSON first: a result that cannot be written leaves both files untouched
        check_strict_json(result)
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
    write_evaluation(out, result)
    log.info("%s -> %s", _summary(result), out)
    return 0
