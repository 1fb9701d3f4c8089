"""Atomic file writes: a result file either is complete or does not exist.

Every writer in holly goes through :func:`atomic_path`: it writes a temporary sibling and renames
it onto the target only on success, so an interrupted run never leaves a half-written file that
looks finished. Kept free of heavy imports (no torch) so light modules can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0666 & ~umask``),
    not ``mkstemp``'s private ``0600``: results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _jsonable(obj):
    """NumPy scalars/arrays, torch tensors and paths as plain JSON values."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: dict, allow_nan: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically (``allow_nan=False``: strict JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable, allow_nan=allow_nan) + "\n")
