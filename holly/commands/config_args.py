"""The experiment config of a command that takes one: ``--config FILE``, ``--config-json``, or both.

Shared by ``holly train`` and ``holly simulate`` (not a command itself). ``--config-json`` (as
the workflow passes it) is merged over the file; a command adds its own flags' keys on top
(``holly train --device``) before the config is validated.
"""

from __future__ import annotations

import json

from holly.config import ExperimentConfig, from_dict, load_config
from holly.errors import HollyError


def add_config_args(parser) -> None:
    parser.add_argument("--config", help="experiment config file (YAML or JSON)")
    parser.add_argument("--config-json", help="experiment config as a JSON mapping")


def config_overrides(args) -> dict:
    """The keys of ``--config-json`` (a mapping; empty without it); HollyError without either
    ``--config`` or ``--config-json``."""
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
    return overrides


def load_experiment_config(args, overrides: dict) -> ExperimentConfig:
    """``--config`` with ``overrides`` (:func:`config_overrides`, plus the command's own keys)
    merged over it, validated; or ``overrides`` alone without ``--config``.

    When the file is valid alone but not with ``--config-json`` merged over it, the error names
    ``--config-json``, not the file.
    """
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
