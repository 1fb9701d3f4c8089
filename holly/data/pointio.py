"""Point-cloud files: PLY (via plyfile), Wavefront OBJ vertices, and CSV.

Only vertex positions matter to holly: faces, normals and colours are ignored on read.
holly's own PLY files say what they hold in ``comment key: value`` header lines (``holly``
version, ``units``, ``experiment``, ``step``, ...); :func:`read_ply_comments` reads them back.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from holly.atomic import atomic_path
from holly.errors import HollyError

log = logging.getLogger(__name__)

SUFFIXES = (".ply", ".obj", ".csv")


def read_points(path: str | os.PathLike) -> np.ndarray:
    """Read vertex positions from a PLY, OBJ or CSV file.

    Parameters
    ----------
    path : path-like
        ``.ply`` (ascii or binary; the ``vertex`` element's x, y, z), ``.obj`` (``v`` lines),
        or ``.csv`` (three numeric columns x, y, z; an optional header line is skipped).

    Returns
    -------
    ndarray [N, 3] float64

    Raises
    ------
    HollyError
        Missing file, unknown suffix, unparsable content, or no vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise HollyError(f"point file {path} does not exist")
    suffix = path.suffix.lower()
    readers = {".ply": _read_ply, ".obj": _read_obj, ".csv": _read_csv}
    if suffix not in readers:
        raise HollyError(f"{path}: unknown point file type {suffix!r}; use one of {SUFFIXES}")
    try:
        xyz = readers[suffix](path)
    except HollyError:
        raise
    except Exception as exc:  # parser errors of any kind become one clear message
        raise HollyError(f"cannot read points from {path}: {exc}") from exc
    if xyz.shape[0] == 0:
        raise HollyError(f"{path} contains no vertices")
    if not np.isfinite(xyz).all():
        raise HollyError(f"{path} contains NaN or infinite coordinates")
    return xyz


# What a file that is not a PLY may be, by its first bytes (for the message).
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"SIMPLE": "a FITS image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"PK\x03\x04": "a zip archive",
    b"\x89HDF": "an HDF5 file",
    b"\x93NUMPY": "a NumPy array",
}


def _read_ply(path: Path) -> np.ndarray:
    from plyfile import PlyData

    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head.startswith(b"ply"):
        what = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
        raise HollyError(
            f"{path} is not a PLY file (a PLY starts with the line 'ply'"
            + (f"; this looks like {what})" if what else ")")
            + ": give a .ply, .obj or .csv point file"
        )

    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise HollyError(f"{path} has no 'vertex' element")
    v = ply["vertex"].data
    return np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)


def _read_obj(path: Path) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if parts and parts[0] == "v":
                if len(parts) < 4:
                    raise HollyError(f"{path}:{lineno}: vertex line needs x y z")
                rows.append([float(p) for p in parts[1:4]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _read_csv(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    skip = 0
    try:
        [float(x) for x in first.replace(";", ",").split(",")[:3] if x.strip()]
    except ValueError:
        skip = 1  # a header line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": checked below
        data = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    if data.size == 0:
        raise HollyError(f"{path}: no points (the file holds no rows of numbers)")
    if data.shape[1] < 3:
        raise HollyError(f"{path}: need at least 3 columns (x, y, z), found {data.shape[1]}")
    return data[:, :3].astype(np.float64)


def write_points(
    path: str | os.PathLike,
    xyz: np.ndarray,
    comment: str | None = None,
    meta: Mapping[str, object] | None = None,
) -> None:
    """Write points atomically (temp file + rename) as PLY (binary), OBJ or CSV by suffix.

    Parameters
    ----------
    xyz : array [N, 3]
    comment : str, optional
        A free-text first comment line (PLY and OBJ).
    meta : mapping, optional
        ``key: value`` comment lines after it (PLY and OBJ; CSV has only its ``x,y,z`` header),
        e.g. ``{"holly": "0.1.0", "units": "model units (...)", "step": 200}``. Keys must not
        contain ``:`` and no text may span lines.
    """
    path = Path(path)
    lines = [comment] if comment else []
    for key, value in (meta or {}).items():
        if ":" in str(key):
            raise HollyError(f"point file comment key {key!r} must not contain ':'")
        lines.append(f"{key}: {value}")
    if any("\n" in line or "\r" in line for line in lines):
        raise HollyError(f"{path}: point file comments must be single lines")
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise HollyError(f"{path}: unknown point file type {suffix!r}; use one of {SUFFIXES}")
    with atomic_path(path) as tmp:
        if suffix == ".ply":
            _write_ply(str(tmp), xyz, lines)
        elif suffix == ".obj":
            with open(tmp, "w") as fh:
                fh.writelines(f"# {line}\n" for line in lines or ["holly point cloud"])
                fh.write("o points\n")
                fh.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in xyz)
        else:
            np.savetxt(tmp, xyz, delimiter=",", header="x,y,z", comments="", fmt="%.8g")


def _write_ply(path: str, xyz: np.ndarray, comments: list[str]) -> None:
    from plyfile import PlyData, PlyElement

    vertex = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    PlyData([PlyElement.describe(vertex, "vertex")], comments=comments).write(path)


def read_ply_comments(path: str | os.PathLike) -> dict[str, str]:
    """The ``key: value`` comment lines of a PLY file's header as a dict (others are skipped)."""
    from plyfile import PlyData

    path = Path(path)
    try:
        comments = PlyData.read(str(path)).comments
    except Exception as exc:
        raise HollyError(f"cannot read the PLY header of {path}: {exc}") from exc
    out = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out
