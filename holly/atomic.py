"""Atomic file writes: a result file either is complete or does not exist, and never an input.

Every writer in holly goes through :func:`atomic_path`: it writes a temporary sibling and renames
it onto the target only on success, so an interrupted run never leaves a half-written file that
looks finished. Every command that writes checks its output paths with :func:`refuse_inputs`
first, so that no output replaces one of its inputs. Kept free of heavy imports (no torch) so
light modules can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from holly.errors import HollyError


def replaces(output: str | os.PathLike, item: str | os.PathLike, into: bool = False) -> bool:
    """Whether writing ``output`` could replace ``item``: after resolving symlinks (and ``.``,
    ``..``), it is the same path, a folder holding ``item``, or a path inside the folder
    ``item`` (a store's or a source folder's own files). ``into``: ``output`` is a folder that
    the command writes files of its own names into (``holly figures --out``, ``holly fetch
    --dest``), so a folder that merely holds ``item`` does not count."""
    out, src = Path(output).resolve(), Path(item).resolve()
    return out == src or (out in src.parents and not into) or src in out.parents


def refuse_inputs(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Iterable[str | os.PathLike | None],
    into: Iterable[str] = (),
) -> None:
    """Refuse, before anything is written, any output that would replace an input.

    The one check of "no output replaces an input" (docs/architecture.md), used by every
    command that writes. Run folders are passed as their files (an evaluation written into the
    run folder it reads is fine; one written onto ``RUN/ground_truth.ply`` is not); image stores
    and source folders as folders (nothing may be written inside them).

    Parameters
    ----------
    outputs : mapping of str to path
        What will be written, by the option that named it (e.g. ``{"--out": path}``); None
        entries are skipped.
    inputs : iterable of path
        What the command reads (files or folders; None entries are skipped).
    into : iterable of str
        The options of ``outputs`` that name a folder the command writes its own files into
        (:func:`replaces` ``into``).

    Raises
    ------
    HollyError
        Naming the option, the output and the input it would replace.
    """
    inputs, into = [item for item in inputs if item is not None], set(into)
    for option, out in outputs.items():
        if out is None:
            continue
        for item in inputs:
            if replaces(out, item, option in into):
                raise HollyError(
                    f"{option} {out} would replace the input {item} (it is that path, a folder "
                    "holding it or a path inside it); write it somewhere else"
                )


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


def jsonable(obj):
    """NumPy scalars/arrays, torch tensors and paths as plain JSON values (``json.dumps``'s
    ``default``: every JSON file holly writes uses it)."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: dict, allow_nan: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically (``allow_nan=False``: strict JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=jsonable, allow_nan=allow_nan) + "\n")
