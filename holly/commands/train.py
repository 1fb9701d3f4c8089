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

import json

from holly.config import from_dict, load_config
from holly.errors import HollyError


def add_args(parser) -> None:
    parser.add_argument("--config", help="experiment config file (YAML or JSON)")
    parser.add_argument("--config-json", help="experiment config as a JSON mapping")
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
    overrides = {}
    if args.config_json:
        try:
            overrides = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise HollyError(f"--config-json is not valid JSON: {exc}") from None
        if not isinstance(overrides, dict):
            raise HollyError("--config-json must be a JSON mapping of config keys")
    if not args.config and not args.config_json:
        raise HollyError(
            "no experiment config: pass --config FILE (or --config-json); "
            "`holly config-default > my.yaml` writes the tuned defaults to start from"
        )
    if args.device:
        overrides["device"] = args.device
    if getattr(args, "half", None):
        overrides.setdefault("validation", {})["half"] = args.half
    if getattr(args, "max_steps", None) is not None:
        if args.max_steps < 1:
            raise HollyError(f"--max-steps must be >= 1, got {args.max_steps}")
        overrides.setdefault("train", {})["max_steps"] = args.max_steps
    if args.config and args.config_json:
        try:
            return load_config(args.config, overrides)
        except HollyError as exc:
            try:
                load_config(args.config)  # the file alone: is the fault in --config-json?
            except HollyError:
                raise exc from None
            where = f"{args.config}: "
            text = str(exc)
            text = text[len(where) :] if text.startswith(where) else text
            raise HollyError(f"--config-json (merged over {args.config}): {text}") from None
    if args.config:
        return load_config(args.config, overrides)
    return from_dict(overrides, where="--config-json")


def main(args) -> int:
    from holly.train import train

    train(resolve_config(args), args.out, resume=args.resume, force=args.force)
    return 0
