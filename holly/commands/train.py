"""Train a reconstruction: learn a point cloud and a pose CNN from images.

The experiment config comes from a YAML/JSON file (--config), a JSON string (--config-json, as
the workflow passes it), or both (the JSON is merged over the file). Results go to the --out
folder (layout in docs/architecture.md); points.ply appears last, when training has finished.
Re-running with --resume continues from the folder's newest readable checkpoint (exactly, on
the same device); --resume auto does so only if the config is unchanged. A folder that holds
another run is refused unless --resume or --force (which replaces that run's files only).

Training length: `train.epochs` passes over the training images, or `train.steps` CNN steps
whatever the data size (the epochs are derived: the fewest whole passes giving at least that
many; use it for image stores, e.g. `train.steps: 2000`, the budget the defaults were tuned
for). A run under 25 % of that budget logs a warning; provenance.json records
`training_length`. --max-steps stops early without changing the sigma curriculum.

There is no built-in experiment: `holly config-default > my.yaml` writes the tuned defaults of
config/config.yaml to start from.
"""

from __future__ import annotations

from holly.commands.config_args import add_config_args, config_overrides, load_experiment_config
from holly.errors import HollyError


def add_args(parser) -> None:
    add_config_args(parser)
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="override the config's device"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="yes",
        default="no",
        choices=("no", "yes", "auto"),
        help="continue from OUT/checkpoints/last.pt if it exists (a checkpoint "
        "of another config is an error); --resume auto starts afresh then, keeping the "
        "replaced run's newest checkpoint and config in OUT/checkpoints/replaced/",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a run already in --out (its own files only) instead of refusing",
    )
    parser.add_argument(
        "--half",
        type=int,
        choices=(1, 2),
        help="train on this half of the training particles only (half-set validation: "
        "train --half 1 and --half 2 into two folders, then `holly compare` them)",
    )


def resolve_config(args):
    """The experiment config of the command line: --config and/or --config-json, and then
    --device, --half and --max-steps over them."""
    overrides = config_overrides(args)
    if args.device:
        overrides["device"] = args.device
    if args.half:
        overrides.setdefault("validation", {})["half"] = args.half
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise HollyError(f"--max-steps must be >= 1, got {args.max_steps}")
        overrides.setdefault("train", {})["max_steps"] = args.max_steps
    return load_experiment_config(args, overrides)


def main(args) -> int:
    from holly.train import train

    train(resolve_config(args), args.out, resume=args.resume, force=args.force)
    return 0
