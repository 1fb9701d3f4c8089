"""Refine the poses of a finished run against its learned cloud (per-image pose refinement).

Continues RUN from its last checkpoint into the refinement stage (holly/method/refine.py): a pose
table of training images searched and refined against the cloud, alternating with steps on the
cloud, then the held-out images' poses searched and refined with the cloud fixed. RUN's points.ply
and test_poses.npz are rewritten; `holly evaluate RUN` then reports the pose error before and after.
A run that was already refined is extended by --steps more steps. Needs no ground truth.
"""

from __future__ import annotations

from holly.errors import HollyError


def add_args(parser) -> None:
    parser.add_argument("run", help="a finished run folder of `holly train`")
    parser.add_argument(
        "--steps", type=int, default=300, help="refinement steps to add (default 300)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the device")


def main(args) -> int:
    from holly.config import from_dict
    from holly.run.runfolder import RunFolder
    from holly.train import train

    if args.steps < 1:
        raise HollyError(f"--steps must be >= 1, got {args.steps}")
    run = RunFolder(args.run)
    continue_it = f"`holly train --config {run.config} --out {run.root} --resume yes`"
    if not run.is_finished():
        if run.config.is_file() and run.resume_candidates():
            raise HollyError(
                f"{run.root} holds no finished run (no points.ply): its training or refinement "
                f"was interrupted; finish it first with {continue_it}, then refine further"
            )
        raise HollyError(
            f"{run.root} holds no finished run (no points.ply, no checkpoint): train it with "
            "`holly train --config CONFIG --out RUN` first"
        )
    if not run.resume_candidates():
        raise HollyError(
            f"{run.root} has no checkpoint ({run.last_checkpoint} and step_*.pt are missing): "
            "refinement continues the run's training state and would otherwise retrain it "
            f"from step 0. Retrain with `holly train --config {run.config} --out {run.root} "
            "--force` (set refine.steps to refine as part of it)"
        )
    raw = run.read_config()
    refine = dict(raw.get("refine") or {})
    refine["steps"] = int(refine.get("steps") or 0) + args.steps
    raw["refine"] = refine
    if args.device:
        raw["device"] = args.device
    cfg = from_dict(raw, where=str(run.root / "config.yaml"))
    train(cfg, run.root, resume="yes", command="refine")
    return 0
