"""Sigma lists: the input blurs of the curriculum, in pixels, and the one parser of their text.

A sigma list is numbers separated by commas or line breaks (blank entries skipped). The
original's lists ship in this folder as ``sigma_<name>.csv`` (one comma-separated line):
``quick`` (10 values, the original's ``run/sigma.csv``), ``bunny`` (20), ``cep`` (40, one per
epoch); ``default`` is the original's fallback ``[10, 1.25]``. The config's ``sigma.values``
names a shipped list, a file, or gives the numbers (:func:`load_sigma_list`); ``holly localise
--sigmas`` also takes the numbers as text (:func:`parse_sigmas`). The schedule over training
steps is :mod:`holly.method.curriculum`'s, given the values.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

from holly.errors import HollyError

SHIPPED = ("quick", "bunny", "cep", "default")
DEFAULT = (10.0, 1.25)  # the original's fallback list, not a file


def parse_sigma_text(text: str) -> list[float]:
    """The numbers of a sigma list's text: separated by commas or line breaks, blanks skipped.

    Raises ValueError (float's message) on an entry that is not a number; the callers say which
    input held it.
    """
    return [float(t) for t in text.replace("\n", ",").split(",") if t.strip()]


def load_sigma_list(name_or_values: str | list[float]) -> list[float]:
    """A shipped list by name, a path to a sigma file, or an explicit list (validated > 0)."""
    if isinstance(name_or_values, list):
        values = [float(v) for v in name_or_values]
    elif name_or_values == "default":
        values = list(DEFAULT)
    elif name_or_values in SHIPPED:
        text = resources.files("holly.data").joinpath(f"sigma_{name_or_values}.csv").read_text()
        values = _parse_file(text, name_or_values)
    else:
        try:
            with open(name_or_values) as fh:
                values = _parse_file(fh.read(), name_or_values)
        except FileNotFoundError:
            raise HollyError(
                f"sigma list {name_or_values!r} is neither a shipped list {list(SHIPPED)} "
                f"nor an existing file"
            ) from None
    if not values or any(v <= 0 or not math.isfinite(v) for v in values):
        raise HollyError(f"sigma list {name_or_values!r} must be positive numbers, got {values}")
    return values


def _parse_file(text: str, source: str) -> list[float]:
    try:
        return parse_sigma_text(text)
    except ValueError as exc:
        raise HollyError(f"sigma file {source}: {exc}") from None


def parse_sigmas(text: str) -> list[float]:
    """Comma-separated sigmas in pixels, a path to a file holding such a list, or the name of a
    shipped list (``cep``, ``bunny``, ``quick``: holly/data/sigma_<name>.csv): ``holly localise
    --sigmas``. Positivity is checked by the caller (repeated values make one level there)."""
    path = Path(text)
    if path.is_file():
        text = path.read_text()
    elif re.fullmatch(r"[a-z_]+", text.strip()):
        return load_sigma_list(text.strip())
    try:
        values = parse_sigma_text(text)
    except ValueError:
        raise HollyError(
            f"--sigmas must be comma-separated numbers or a file of them, not {text.strip()[:60]!r}"
        ) from None
    if not values:
        raise HollyError("--sigmas is empty")
    return values
