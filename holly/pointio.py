"""Point-cloud files: PLY (via plyfile), Wavefront OBJ vertices, and CSV.

Only vertex positions matter to holly: faces, normals and colours are ignored on read.
"""

from __future__ import annotations

import logging
import os
import warnings
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


def _read_ply(path: Path) -> np.ndarray:
    from plyfile import PlyData

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


def write_points(path: str | os.PathLike, xyz: np.ndarray, comment: str | None = None) -> None:
    """Write points atomically (temp file + rename) as PLY (binary), OBJ or CSV by suffix."""
    path = Path(path)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise HollyError(f"{path}: unknown point file type {suffix!r}; use one of {SUFFIXES}")
    with atomic_path(path) as tmp:
        if suffix == ".ply":
            _write_ply(str(tmp), xyz, comment)
        elif suffix == ".obj":
            with open(tmp, "w") as fh:
                fh.write(f"# {comment or 'holly point cloud'}\no points\n")
                fh.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in xyz)
        else:
            np.savetxt(tmp, xyz, delimiter=",", header="x,y,z", comments="", fmt="%.8g")


def _write_ply(path: str, xyz: np.ndarray, comment: str | None) -> None:
    from plyfile import PlyData, PlyElement

    vertex = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    comments = [comment] if comment else []
    PlyData([PlyElement.describe(vertex, "vertex")], comments=comments).write(path)
