"""Find things in a downloaded record by what they hold, not by guessed names.

Nobody here has seen the unpacked layout of the HOLLy Zenodo records: the README says only that
the CEP152 images are to be *placed* into ``run/paper/<sigma>``. So instead of a glob:

* :func:`find_sigma_tree`: the folder whose sub-folders are named by numbers (sigmas) and hold
  FITS files with matching names (the same images at every sigma).
* :func:`find_cloud`: the published cloud among the record's point files (PLY/OBJ/CSV): readable,
  finite, three-dimensional clouds; of those, a file named ``last.*`` (the original's final
  cloud), else the newest snapshot (largest number in the name) of the largest family of clouds
  with one point count, else the only one.

Each returns the choice and a one-line reason (logged); when nothing or more than one thing
fits, the HollyError lists what the record holds.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from holly.errors import HollyError

log = logging.getLogger(__name__)

FITS = (".fits", ".fit", ".fts", ".fits.gz")
POINTS = (".ply", ".obj", ".csv")


def _number(name: str) -> float | None:
    try:
        value = float(name)
    except ValueError:
        return None
    return value if value > 0 and value == value and value != float("inf") else None


def _fits_names(folder: Path) -> set[str]:
    return {
        e.name
        for e in os.scandir(folder)
        if e.is_file() and e.name.lower().endswith(FITS) and not e.name.startswith(".")
    }


def _holdings(base: Path, limit: int = 8) -> str:
    """What a record folder holds, in a few words: top folders and file counts by suffix."""
    counts: dict[str, int] = {}
    for p in base.rglob("*"):
        if p.is_file():
            suffix = "".join(p.suffixes[-2:]).lower() if p.name.endswith(".gz") else p.suffix
            counts[suffix.lower() or "(none)"] = counts.get(suffix.lower() or "(none)", 0) + 1
    tops = sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir())
    files = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
    more = ", ..." if len(tops) > limit else ""
    return f"top level [{', '.join(tops[:limit])}{more}]; files: {files or 'none'}"


def find_sigma_tree(base: str | os.PathLike) -> tuple[Path, str]:
    """The one folder under ``base`` (or ``base`` itself) that is a tree of sigma folders.

    A candidate has at least two sub-folders named by positive numbers that each hold FITS files,
    with the same file names in every one of them (the same particles at every sigma).

    Returns
    -------
    folder, reason : Path, str

    Raises
    ------
    HollyError
        No candidate, or several (listed), with what the record holds.
    """
    base = Path(base)
    if not base.is_dir():
        raise HollyError(f"{base} is not a folder; download the record first (`holly fetch`)")
    found = []
    for folder in [base, *sorted(p for p in base.rglob("*") if p.is_dir())]:
        if ".partial-" in str(folder):
            continue
        sigmas = {}
        for sub in folder.iterdir():
            if sub.is_dir() and _number(sub.name) is not None:
                names = _fits_names(sub)
                if names:
                    sigmas[sub.name] = names
        if len(sigmas) < 2:
            continue
        first = next(iter(sigmas.values()))
        if all(names == first for names in sigmas.values()):
            found.append((folder, len(sigmas), len(first)))
        else:
            log.info("%s: sigma folders with different FITS names; not a sigma tree", folder)
    if not found:
        raise HollyError(
            f"no folder under {base} holds sigma sub-folders (named by numbers) of matching "
            f"FITS files; the record holds {_holdings(base)}"
        )
    if len(found) > 1:
        listed = "; ".join(f"{f.relative_to(base)} ({n} sigmas)" for f, n, _ in found[:6])
        raise HollyError(
            f"{len(found)} sigma-folder trees under {base}: {listed}; name one with a glob"
        )
    folder, n_sigmas, n_files = found[0]
    reason = (
        f"{folder.relative_to(base) or '.'}: the only folder with sigma sub-folders "
        f"({n_sigmas} sigmas) holding the same {n_files} FITS names"
    )
    log.info("sigma tree: %s", reason)
    return folder, reason


def _step(name: str) -> int | None:
    numbers = re.findall(r"\d+", Path(name).stem)
    return int(numbers[-1]) if numbers else None


def find_cloud(base: str | os.PathLike) -> tuple[Path, str]:
    """The published point cloud among the point files under ``base`` (see module docstring).

    Returns
    -------
    file, reason : Path, str

    Raises
    ------
    HollyError
        No usable cloud, or several equally plausible ones (listed with their point counts).
    """
    import numpy as np

    from holly.data.pointio import read_points

    base = Path(base)
    if not base.is_dir():
        raise HollyError(f"{base} is not a folder; download the record first (`holly fetch`)")
    clouds, rejected = [], []
    for path in sorted(p for p in base.rglob("*") if p.suffix.lower() in POINTS and p.is_file()):
        if ".partial-" in str(path):
            continue
        try:
            xyz = read_points(path)
        except (HollyError, ValueError, OSError) as exc:
            rejected.append(f"{path.name} (unreadable: {str(exc)[:40]})")
            continue
        spread = xyz.std(axis=0) if len(xyz) else np.zeros(3)
        if len(xyz) < 10 or not np.isfinite(xyz).all() or spread.min() <= 1e-9 * spread.max():
            rejected.append(f"{path.name} ({len(xyz)} points, not a finite 3D cloud)")
            continue
        clouds.append((path, len(xyz)))
    listing = ", ".join(f"{p.relative_to(base)} ({n})" for p, n in clouds[:6])
    if not clouds:
        raise HollyError(
            f"no point cloud under {base} (rejected: {', '.join(rejected[:4]) or 'none'}); "
            f"the record holds {_holdings(base)}"
        )
    last = [c for c in clouds if Path(c[0]).stem.lower() == "last"]
    if len(last) == 1:
        path, n = last[0]
        reason = f"{path.relative_to(base)}: named last ({n} points), of {len(clouds)} clouds"
    elif len(clouds) == 1:
        path, n = clouds[0]
        reason = f"{path.relative_to(base)}: the only 3D point cloud ({n} points)"
    else:
        families: dict[int, list] = {}
        for c in clouds:
            families.setdefault(c[1], []).append(c)
        sizes = sorted(families.values(), key=len, reverse=True)
        biggest = sizes[0]
        steps = [(_step(p.name), p) for p, _ in biggest]
        numbered = sorted((s, p) for s, p in steps if s is not None)
        ok = len(biggest) >= 2 and (len(sizes) == 1 or len(sizes[1]) < len(biggest))
        if not ok or len(numbered) < 2 or numbered[-1][0] == numbered[-2][0]:
            raise HollyError(
                f"{len(clouds)} point clouds under {base} and none stands out (no last.*, no "
                f"numbered snapshot family): {listing}; name one with a glob"
            )
        step, path = numbered[-1]
        reason = (
            f"{path.relative_to(base)}: newest ({step}) of {len(biggest)} snapshots with "
            f"{biggest[0][1]} points"
        )
    log.info("published cloud: %s", reason)
    return path, reason
