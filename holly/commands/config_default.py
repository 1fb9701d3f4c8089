"""Print the tuned default experiment config (the `defaults:` of config/config.yaml) as YAML.

Start your own experiment from it:

    holly config-default > my.yaml
    holly train --config my.yaml --out results/mine

The same settings are what the workflow gives every experiment of a config with `base: default`
(the default base, see config/README.md).
"""

from __future__ import annotations

import sys

import yaml

from holly.atomic import atomic_path


def add_args(parser) -> None:
    parser.add_argument("--out", help="write here instead of standard output")
    parser.add_argument(
        "--base",
        default="default",
        choices=("default", "paper"),
        help="default: config/config.yaml (tuned, the default); paper: config/paper.yaml",
    )


def main(args) -> int:
    from holly.plan import base_config_path, load_workflow_config

    path = base_config_path(args.base)
    defaults = load_workflow_config(path).get("defaults") or {}
    text = (
        f"# holly experiment config: the `defaults` of {path} (holly config-default)\n"
        "# Every key is explained in config/README.md; `holly train --config THIS --out RUN`.\n"
        + yaml.safe_dump(defaults, sort_keys=False)
    )
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
