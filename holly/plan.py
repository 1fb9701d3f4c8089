"""Planning a workflow run: the workflow config's bases, merging and checks before any job runs.

The Snakefile and ``workflow/rules/common.smk`` call these functions; they are plain Python so
that they are unit-tested without Snakemake. Every problem is a :class:`~holly.errors.HollyError`
naming the key (the workflow shows it as ``Invalid config: ...``).

Config inheritance (config/README.md, "Your own config"): a user's workflow config starts from a
*base* and its own keys win, nested mappings merged key by key:

``base: default`` (when ``base`` is not given)
    ``config/config.yaml``: the tuned defaults and the default experiments' settings; the
    base's ``experiments`` list is *not* inherited when the user's config has its own.
``base: paper``
    ``config/paper.yaml``: the paper's settings, exactly.
``base: none``
    nothing but the schema's defaults (the bare holly defaults of ``holly/config.py``).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

from holly.errors import HollyError, one_line

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BASES = {"default": "config/config.yaml", "paper": "config/paper.yaml", "none": None}


def base_config_path(base: str, workdir: str | os.PathLike = ".") -> Path | None:
    """The file of a named base: ``workdir/config/...`` if present, else this repository's."""
    if base not in BASES:
        raise HollyError(f"base: must be one of {', '.join(BASES)}, got {base!r}")
    rel = BASES[base]
    if rel is None:
        return None
    for candidate in (Path(workdir) / rel, REPO / rel):
        if candidate.is_file():
            return candidate
    raise HollyError(
        f"base {base!r}: {rel} not found in {Path(workdir).resolve()} or {REPO}; "
        "run from a holly checkout or set `base: none`"
    )


def load_workflow_config(path: str | os.PathLike) -> dict:
    """A workflow config file (YAML) as a mapping; HollyError when missing, empty or corrupt."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HollyError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HollyError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    if data is None:
        raise HollyError(f"config file {path} is empty")
    if not isinstance(data, dict):
        raise HollyError(f"config file {path} must be a mapping of keys")
    return data


def merge(base: dict, over: dict) -> dict:
    """Deep merge of two config mappings: ``over`` wins, nested mappings are merged."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
