"""Readers of SMLM localisation files: one function per format, detection by content.

Every reader returns a :class:`Particles`: 2D localisations grouped into particles, in the
source's units with y growing *down* the camera frame, plus what the file says about its scale
(``nm_per_unit``: nanometres per source coordinate unit, ``None`` where the file does not say).
Formats and the layouts they are read with (column names as the software writes them):

==============  ==================================================================================
``thunderstorm`` CSV, ``"x [nm]"``/``"y [nm]"`` (or any ``x [unit]``/``y [unit]`` pair: nm, um, px;
                 or plain ``x``/``y``, units unknown). ``.csv``, ``.txt``.
``picasso``      HDF5 ``/locs`` table, ``x``/``y`` in camera pixels, ``group`` = picked particle;
                 the sidecar ``<stem>.yaml`` (several YAML documents) gives ``Pixelsize`` (nm).
``cep152-mat``   MATLAB v7.3 (HDF5) with the cell array ``Cep152_all_filtered``: object references
                 to ``(8, n)`` numeric datasets in ``#refs#``, row 0 = x, row 1 = y. Nothing else.
``smap-mat``     SMAP ``_sml.mat`` (MATLAB v7.3, or v7 through scipy): struct ``saveloc`` with
                 ``loc.xnm``/``loc.ynm`` (nm; column vectors, stored ``(1, n)``), ``loc.frame``,
                 ``loc.channel``, ``loc.filenumber``; ``saveloc.file`` (struct, ``name`` a MATLAB
                 char array, ``info.cam_pixelsize_um``); ``fileformat.name == 'sml'``.
``smap-csv``     SMAP's CSV export (``_sml.csv``): columns ``xnm``, ``ynm`` (nm), ``frame``, ...
``decode``       DECODE emitter HDF5: groups ``data`` (``xyz [n, 3]``, ``frame_ix``, ``phot``,
                 ``id``, ...), ``meta`` (attributes ``xy_unit`` "px" or "nm", ``px_size`` nm per
                 px in x, y) and ``decode`` (attribute ``version``).
``elyra``        Zeiss Elyra (ZEN) tab-separated table, latin-1, ``"Position X [nm]"``,
                 ``"Position Y [nm]"``, ``"First Frame"``, ``"Channel"``; ZEN appends metadata
                 after a NUL byte, which is ignored.
``nanoimager``   ONI Nanoimager CSV: ``"X (nm)"``, ``"Y (nm)"``, ``"Channel"``, ``"Frame"``, ...
``rapidstorm``   rapidSTORM text: first line ``# <localizations ...>`` with one ``<field>`` per
                 column (``identifier="Position-0-0"`` = x, ``"Position-1-0"`` = y, ``unit``
                 "nanometer"), then whitespace-separated rows.
``tud-mat``      TU Delft particle fusion (smlm_datafusion2d/3d, smlm_classification2d), MATLAB
                 v5 or v7.3: cell array ``particles``, one struct per particle with ``points``
                 (N x 2 or N x 3) and ``sigma`` (N x 1 sigma_xy, or N x 2 sigma_xy, sigma_z), or
                 ``coords`` (N x 10: columns 1-3 x, y, z, 5 sigma_xy, 10 sigma_z). Camera
                 pixels: ``pixel_size`` is required (the repositories use 130 nm; never assumed).
``superparticle-mat`` JRMPC's ``Superparticle`` (any capitalisation), MATLAB v5 or v7.3: a cell
                 array of dims x N matrices (dims 2 or 3) in nm, one per particle.
==============  ==================================================================================

Beside x/y, ``Particles.extra`` keeps z, sigma_xy and sigma_z where the file has them (the
MATLAB layouts above, SMAP ``znm``/``locprecnm``/``locprecznm``, Picasso ``z`` (nm) and
``lpx``/``lpy`` (camera pixels; their RMS as sigma_xy), table
columns ``z [nm]``, ``uncertainty_xy [nm]``, ``uncertainty_z [nm]``, ``sigma_xy``, ``sigmaz``,
...; ThunderSTORM's ``sigma [nm]`` is the PSF width and is not kept). Rendering uses x/y only.

Particles: with ``particle_column`` each distinct value of that column is one particle (sorted
by value); Picasso's ``group`` is used by default (any ``/locs`` field may be named, e.g. RESI's
``group_input``; a warning says when most particles are single sites, naming a wider group
column); in the MATLAB cell layouts each cell is one particle; otherwise the whole file is one
particle.
Rows are grouped *before* bad rows (non-finite x/y) are dropped, so a particle keeps its number
when some or all of its rows are dropped (an emptied particle stays, to be dropped later with a
count, and the numbering of the others does not move).

A folder is read file by file in name order (``.csv .txt .tsv .hdf5 .h5 .mat``; Picasso
``.yaml`` sidecars and hidden files are skipped); every file must be of one format, be grouped
the same way (all by a particle column, or all one particle per file) and have the same scale.

Errors name the file and stay under :data:`MAX_ERROR` characters; every refusal of a file as
unreadable ends with the formats holly reads (``holly reads: ...``).
"""

from __future__ import annotations

import io
import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from holly.errors import HollyError

log = logging.getLogger(__name__)

FORMATS = (
    "thunderstorm",
    "picasso",
    "cep152-mat",
    "smap-mat",
    "smap-csv",
    "decode",
    "elyra",
    "nanoimager",
    "rapidstorm",
    "tud-mat",
    "superparticle-mat",
)
SUFFIXES = (".csv", ".txt", ".tsv", ".hdf5", ".h5", ".mat")
MAT_MEMBER = "Cep152_all_filtered"
MAX_ERROR = 300  # characters of one error line
UNIT_NM = {"nm": 1.0, "nanometer": 1.0, "um": 1000.0, "µm": 1000.0, "micrometer": 1000.0}
PIXEL_UNITS = ("px", "pixel", "pix", "camera pixels")
TUD_MEMBER = "particles"  # TU Delft particle fusion: particles{i}.points/.sigma or .coords
SUPER_MEMBER = "superparticle"  # JRMPC's Superparticle{i}, dims x N, nm (name case-insensitive)
TUD_PIXEL_NM = 130.0  # the camera pixel of the TU Delft repositories' data; never applied


@dataclass
class Particles:
    """Localisations grouped by particle, in source units, y growing downwards.

    ``grouped``: the particles come from a particle column (False: one particle per file).
    ``nm_per_unit``: nanometres per source unit, or None where unknown.
    """

    xy: list[np.ndarray]  # each [n_i, 2] float64
    labels: list  # the source's name for each particle (group value, cell index, file)
    source: dict = field(default_factory=dict)
    nm_per_unit: float | None = None
    grouped: bool = False
    # per-localisation columns kept beside x/y (z, sigma_xy, sigma_z): name -> one [n_i]
    # float64 array per particle, rows matching ``xy``; units in ``source["extra_units"]``
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xy)


def supported() -> str:
    return ", ".join(FORMATS)


def short(items, limit: int = 6) -> str:
    """``a, b, c, ... (+N more)``: a list for an error line, kept short."""
    items = [str(i)[:40] for i in items]
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def fail(path: Path | str, message: str, formats: bool = False) -> HollyError:
    """A HollyError ``"<path>: <message>"`` cut to :data:`MAX_ERROR` characters.

    ``formats``: the file is refused as unreadable; end the line with the formats holly reads
    (never cut: the message before it is shortened instead).
    """
    tail = f"; holly reads: {supported()}" if formats else ""
    room = MAX_ERROR - len(tail)
    text = f"{path}: {message}"
    if len(text) > room:
        name = Path(path).name
        text = f"{name}: {message}"
        if len(text) > room:
            text = text[: room - 3] + "..."
    return HollyError(text + tail)


# ---------------------------------------------------------------------------- detection
def _head(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _is_mat5(head: bytes) -> bool:
    """MATLAB v5/v7 (non-HDF5) MAT-file: a 128-byte text header ``MATLAB 5.0 MAT-file``."""
    return head.startswith(b"MATLAB 5.0 MAT-file")


def _text_format(path: Path, head: bytes) -> str | None:
    text = head.split(b"\x00")[0].decode("latin-1")
    first = text.splitlines()[0] if text else ""
    if first.lstrip("# ").startswith("<localizations"):
        return "rapidstorm"
    if "\t" in first and "Position X [nm]" in first:
        return "elyra"
    cols = [c.strip().strip('"').strip() for c in re.split(r"[,\t;]", first)]
    if "X (nm)" in cols and "Y (nm)" in cols:
        return "nanoimager"
    if "xnm" in cols and "ynm" in cols:
        return "smap-csv"
    if _xy_pair(cols) is not None:
        return "thunderstorm"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """The format of one file, from its content (suffixes are not trusted).

    Raises
    ------
    HollyError
        No supported format fits; the message says what the file looks like and lists the
        formats holly reads.
    """
    import h5py

    path = Path(path)
    try:
        head = _head(path)
    except OSError as exc:
        raise fail(path, f"cannot read ({exc.strerror})", formats=True) from exc
    if not head:
        raise fail(path, "empty file", formats=True)
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                members = list(f.keys())
                if "saveloc" in f:
                    return "smap-mat"
                if MAT_MEMBER in f:
                    return "cep152-mat"
                if TUD_MEMBER in f:
                    return "tud-mat"
                if _super_name(members) is not None:
                    return "superparticle-mat"
                if "locs" in f:
                    return "picasso"
                if {"data", "meta"} <= set(members) and "xyz" in f["data"]:
                    return "decode"
        except OSError as exc:
            raise fail(path, f"not a readable HDF5 file ({exc})", formats=True) from exc
        kind = "MATLAB v7.3 file" if _is_mat73(head) else "HDF5 file"
        shown = short(m for m in members if m != "#refs#")
        raise fail(path, f"{kind} holding [{shown}]: {_NO_LAYOUT}", formats=True)
    if _is_mat5(head):
        return _mat5_format(path)
    fmt = _text_format(path, head)
    if fmt is None:
        binary = b"\x00" in head[:1024] and not head.startswith(b"Index")
        first = head.split(b"\n")[0][:60].decode("latin-1", "replace")
        what = "binary data" if binary else f"first line {first!r}"
        raise fail(path, f"cannot tell the localisation format ({what})", formats=True)
    return fmt


_NO_LAYOUT = "no localisation layout holly knows"


def _super_name(names) -> str | None:
    """The variable holding JRMPC's Superparticle (any capitalisation), if there is one."""
    return next((n for n in names if str(n).lower() == SUPER_MEMBER), None)


def _mat5_format(path: Path) -> str:
    """Format of a MATLAB v5/v7 file from its variable names (scipy reads only the headers)."""
    from scipy.io import whosmat

    try:
        variables = whosmat(path)
    except Exception as exc:  # scipy raises many kinds on damaged files
        raise fail(path, f"not a readable MATLAB file ({str(exc)[:80]})", formats=True) from exc
    names = [v[0] for v in variables]
    if "saveloc" in names:
        return "smap-mat"
    if TUD_MEMBER in names:
        return "tud-mat"
    if _super_name(names) is not None:
        return "superparticle-mat"
    shown = short(f"{n} ({'x'.join(map(str, shape))} {cls})" for n, shape, cls in variables)
    hint = ""
    if any(
        cls == "double" and len(shape) == 2 and shape[1] in (2, 3) for _, shape, cls in variables
    ):
        hint = " (an N x 3 matrix: a point model?)"
    raise fail(
        path, f"MATLAB file holding [{shown or 'nothing'}]: {_NO_LAYOUT}{hint}", formats=True
    )


def _is_mat73(head: bytes) -> bool:
    return head.startswith(b"MATLAB 7.3 MAT-file")


# ---------------------------------------------------------------------------- grouping
def _xy_pair(columns: list[str]) -> tuple[str, str, str] | None:
    """ThunderSTORM-style x/y column names and their unit (``unknown`` for plain x, y)."""
    for c in columns:
        m = re.fullmatch(r"x \[(.+)\]", c)
        if m and f"y [{m.group(1)}]" in columns:
            return c, f"y [{m.group(1)}]", m.group(1)
    if "x" in columns and "y" in columns:
        return "x", "y", "unknown"
    return None


def _scale_of(unit: str, path: Path, pixel_size: float | None) -> tuple[float | None, str]:
    """nm per source unit for a unit name; pixels need the pixel size."""
    u = unit.strip().lower()
    if u in UNIT_NM:
        return UNIT_NM[u], "nm" if UNIT_NM[u] == 1.0 else u
    if u in PIXEL_UNITS:
        return pixel_size, "camera pixels"
    return None, unit


def _loose_numeric(values) -> np.ndarray:
    """Numbers as float64, anything else NaN (for columns kept beside x/y, never refused)."""
    import pandas as pd

    return pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(
        dtype=np.float64
    )


def _numeric(values, path: Path, column: str) -> np.ndarray:
    """A column as float64; text that is not a number is an error naming file and column."""
    import pandas as pd

    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    num = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(num) & ~pd.isna(pd.Series(arr)).to_numpy())
    if bad.size:
        raise fail(
            path,
            f"column {column!r} holds text, not numbers (row {bad[0] + 1}: "
            f"{str(arr[bad[0]])[:30]!r}, {bad.size} such rows)",
        )
    return num


def _particles(
    path: Path,
    coords: np.ndarray,
    keys: np.ndarray | None,
    source: dict,
    nm_per_unit: float | None,
    key_name: str | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> Particles:
    """Group rows by key (or one particle), then drop non-finite rows inside each group.

    ``extra``: per-row columns (``[n]`` each) kept beside x/y, grouped the same way.
    """
    extra = extra or {}
    good = np.isfinite(coords).all(axis=1)
    if not good.all():
        log.warning("%s: dropped %d rows with missing or non-finite x/y", path, (~good).sum())
    if keys is None:
        more = {k: [v[good]] for k, v in extra.items()}
        return Particles([coords[good]], [path.name], source, nm_per_unit, False, more)
    keys = np.asarray(keys)
    if keys.dtype.kind == "f":
        nokey = ~np.isfinite(keys)
        if nokey.any():
            log.warning("%s: dropped %d rows without a %s value", path, nokey.sum(), key_name)
            keys, coords, good = keys[~nokey], coords[~nokey], good[~nokey]
            extra = {k: v[~nokey] for k, v in extra.items()}
    try:
        uniq, inverse = np.unique(keys, return_inverse=True)
    except TypeError as exc:
        raise fail(path, f"particle column {key_name!r} has values of mixed types") from exc
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(uniq.size + 1))
    xy = []
    more = {k: [] for k in extra}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[a:b]
        rows = rows[good[rows]]
        xy.append(coords[rows])
        for k, v in extra.items():
            more[k].append(v[rows])
    labels = [k.item() if hasattr(k, "item") else k for k in uniq]
    source = source | {"particle_column": key_name}
    return Particles(xy, labels, source, nm_per_unit, True, more)


def _cells_particles(
    path: Path,
    coords: list[np.ndarray],
    extra: list[dict[str, np.ndarray]],
    source: dict,
    nm_per_unit: float | None,
) -> Particles:
    """Particles from MATLAB cells (cell k = particle k); non-finite x/y rows dropped, counted.

    A column some cells lack (z of a 2D cell among 3D ones) is NaN there.
    """
    names = sorted({k for e in extra for k in e})
    xy, more, dropped = [], {k: [] for k in names}, 0
    for p, e in zip(coords, extra, strict=True):
        good = np.isfinite(p).all(axis=1)
        dropped += int((~good).sum())
        xy.append(p[good])
        for k in names:
            more[k].append(e.get(k, np.full(len(p), np.nan))[good])
    if dropped:
        log.warning("%s: dropped %d localisations with non-finite x/y", path, dropped)
    return Particles(xy, list(range(len(xy))), source, nm_per_unit, True, more)


def _key_column(table, particle_column: str | None, path: Path):
    if particle_column is None:
        return None
    if particle_column not in table.columns:
        raise fail(
            path,
            f"no particle column {particle_column!r}; columns are [{short(table.columns)}]",
        )
    return table[particle_column].to_numpy()


def _table_particles(
    table,
    path: Path,
    xc: str,
    yc: str,
    unit: str,
    fmt: str,
    particle_column: str | None,
    pixel_size: float | None,
) -> Particles:
    nm, unit_name = _scale_of(unit, path, pixel_size)
    coords = np.stack(
        [_numeric(table[xc].to_numpy(), path, xc), _numeric(table[yc].to_numpy(), path, yc)],
        axis=1,
    )
    source = {"format": fmt, "units": unit_name, "columns": [xc, yc]}
    keys = _key_column(table, particle_column, path)
    extra, units = _extra_columns(table, unit_name)
    if extra:
        source["extra_columns"] = {k: c for k, (c, _) in extra.items()}
        source["extra_units"] = units
    values = {k: v for k, (_, v) in extra.items()}
    return _particles(path, coords, keys, source, nm, particle_column, values)


# z and localisation precisions in tables, as each software names them (first match wins);
# ThunderSTORM's "sigma [nm]" is the PSF width, not a precision, and is not one of them
EXTRA_COLUMNS = {
    "z": (r"z \[(.+)\]", "z", "Z (nm)", "znm"),
    "sigma_xy": (
        r"uncertainty_xy \[(.+)\]",
        r"uncertainty \[(.+)\]",
        r"Precision \[(.+)\]",
        "sigma_xy",
        "X precision (nm)",
        "locprecnm",
    ),
    "sigma_z": (r"uncertainty_z \[(.+)\]", "sigma_z", "sigmaz", "Z precision (nm)", "locprecznm"),
}


def _extra_columns(table, xy_unit: str) -> tuple[dict, dict]:
    """z, sigma_xy, sigma_z columns of a table: ``{name: (column, values [n])}`` and their
    units (a bracketed unit, nm for SMAP/Nanoimager names, else the x/y unit)."""
    found, units = {}, {}
    columns = [str(c) for c in table.columns]
    for name, patterns in EXTRA_COLUMNS.items():
        for pattern in patterns:
            if "\\[" in pattern:
                hit = next((c for c in columns if re.fullmatch(pattern, c)), None)
                unit = re.fullmatch(pattern, hit).group(1) if hit else None
            else:
                hit = pattern if pattern in columns else None
                unit = "nm" if "nm" in pattern else xy_unit
            if hit is not None:
                values = _loose_numeric(table[hit].to_numpy())
                found[name] = (hit, values)
                units[name] = "nm" if unit in ("nm", "nanometer") else unit
                break
    return found, units


def _read_csv(path: Path, **kwargs):
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except Exception as exc:  # pandas raises many kinds
        raise fail(path, f"not a readable table ({str(exc)[:120]})", formats=True) from exc


# ---------------------------------------------------------------------------- text formats
def read_thunderstorm(
    path: str | os.PathLike,
    particle_column: str | None = None,
    pixel_size: float | None = None,
) -> Particles:
    """ThunderSTORM CSV (``"x [nm]"``, ``"y [nm]"``, ...); see the module docstring."""
    path = Path(path)
    header = list(_read_csv(path, nrows=0).columns)
    pair = _xy_pair(header)
    if pair is None:
        raise fail(
            path,
            f'no x/y columns (ThunderSTORM writes "x [nm]", "y [nm]"); '
            f"columns are [{short(header)}]",
            formats=True,
        )
    table = _read_csv(path)
    return _table_particles(
        table, path, pair[0], pair[1], pair[2], "thunderstorm", particle_column, pixel_size
    )


def read_smap_csv(path: str | os.PathLike, particle_column: str | None = None) -> Particles:
    """SMAP CSV export (``xnm``, ``ynm`` in nm)."""
    path = Path(path)
    table = _read_csv(path)
    if "xnm" not in table.columns or "ynm" not in table.columns:
        raise fail(
            path,
            f"no xnm/ynm columns (SMAP CSV); columns are [{short(table.columns)}]",
            formats=True,
        )
    return _table_particles(table, path, "xnm", "ynm", "nm", "smap-csv", particle_column, None)


def read_nanoimager(path: str | os.PathLike, particle_column: str | None = None) -> Particles:
    """ONI Nanoimager CSV (``"X (nm)"``, ``"Y (nm)"``)."""
    path = Path(path)
    table = _read_csv(path)
    table.columns = [str(c).strip() for c in table.columns]
    if "X (nm)" not in table.columns or "Y (nm)" not in table.columns:
        raise fail(
            path,
            f'no "X (nm)"/"Y (nm)" columns (Nanoimager); columns are [{short(table.columns)}]',
            formats=True,
        )
    return _table_particles(
        table, path, "X (nm)", "Y (nm)", "nm", "nanoimager", particle_column, None
    )


def read_elyra(path: str | os.PathLike, particle_column: str | None = None) -> Particles:
    """Zeiss Elyra tab-separated table (latin-1; metadata after a NUL byte ignored)."""
    import pandas as pd

    path = Path(path)
    text = path.read_bytes().decode("latin-1").split("\x00")[0]
    try:
        table = pd.read_csv(io.StringIO(text), sep="\t")
    except Exception as exc:
        raise fail(
            path, f"not a readable tab-separated table ({str(exc)[:120]})", formats=True
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    if "Position X [nm]" not in table.columns or "Position Y [nm]" not in table.columns:
        raise fail(
            path,
            f'no "Position X [nm]"/"Position Y [nm]" columns (Zeiss Elyra); '
            f"columns are [{short(table.columns)}]",
            formats=True,
        )
    return _table_particles(
        table, path, "Position X [nm]", "Position Y [nm]", "nm", "elyra", particle_column, None
    )


def read_rapidstorm(
    path: str | os.PathLike,
    particle_column: str | None = None,
    pixel_size: float | None = None,
) -> Particles:
    """rapidSTORM localisation text file (XML field header, whitespace-separated rows)."""
    path = Path(path)
    with open(path, encoding="latin-1") as fh:
        first = fh.readline()
    try:
        root = ET.fromstring(first.lstrip("#").strip())
    except ET.ParseError as exc:
        raise fail(
            path, f"first line is not rapidSTORM's <localizations> XML header ({exc})", formats=True
        ) from exc
    fields = [(f.get("identifier"), f.get("unit", "")) for f in root.iter("field")]
    names = [n for n, _ in fields]
    units = dict(fields)
    if "Position-0-0" not in names or "Position-1-0" not in names:
        raise fail(
            path,
            f"rapidSTORM header has no Position-0-0/Position-1-0 ([{short(names)}])",
            formats=True,
        )
    table = _read_csv(path, sep=r"\s+", comment="#", header=None, names=names, engine="python")
    unit = units["Position-0-0"] or "unknown"
    return _table_particles(
        table, path, "Position-0-0", "Position-1-0", unit, "rapidstorm", particle_column, pixel_size
    )


# ---------------------------------------------------------------------------- HDF5 formats
def _h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise fail(path, f"not a readable HDF5 file ({exc})", formats=True) from exc


def picasso_pixel_size(path: Path) -> float | None:
    """``Pixelsize`` (nm) from the Picasso sidecar ``<stem>.yaml``, if there is one."""
    import yaml

    side = path.with_suffix(".yaml")
    if not side.is_file():
        return None
    try:
        docs = list(yaml.safe_load_all(side.read_text(encoding="utf-8", errors="replace")))
    except yaml.YAMLError as exc:
        log.warning("%s: unreadable YAML (%s); pixel size unknown", side, str(exc)[:80])
        return None
    for doc in docs:
        if isinstance(doc, dict) and "Pixelsize" in doc:
            try:
                value = float(doc["Pixelsize"])
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value
    return None


def read_picasso(
    path: str | os.PathLike,
    particle_column: str | None = None,
    pixel_size: float | None = None,
) -> Particles:
    """Picasso HDF5 ``/locs`` (x, y in camera pixels; ``group`` = particle by default)."""
    path = Path(path)
    with _h5(path) as f:
        if "locs" not in f:
            raise fail(
                path,
                f"no /locs table; not a Picasso file (holds [{short(f.keys())}])",
                formats=True,
            )
        node = f["locs"]
        if not hasattr(node, "dtype"):  # a group, not a table
            raise fail(
                path,
                f"/locs is a group (holding [{short(node.keys())}]), not Picasso's table of "
                "localisations",
                formats=True,
            )
        locs = node[()]
    fields = getattr(locs, "dtype", None) is not None and locs.dtype.names or ()
    if "x" not in fields or "y" not in fields:
        raise fail(path, f"/locs has no x and y columns (columns: [{short(fields)}])", formats=True)
    coords = np.stack([locs["x"], locs["y"]], axis=1).astype(np.float64)
    nm = picasso_pixel_size(path)
    if pixel_size is not None:
        if nm is not None and abs(nm - pixel_size) > 1e-6 * nm:
            log.warning("%s: --pixel-size %g nm overrides the .yaml's %g nm", path, pixel_size, nm)
        nm = pixel_size
    column = particle_column or ("group" if "group" in fields else None)
    if column is not None and column not in fields:
        raise fail(path, f"no particle column {column!r}; /locs has [{short(fields)}]")
    source = {"format": "picasso", "units": "camera pixels", "pixel_size_nm": nm}
    keys = None if column is None else np.asarray(locs[column])
    extra = {}
    if "z" in fields:  # Picasso 3D: z in nm (x, y stay camera pixels)
        extra["z"] = np.asarray(locs["z"], dtype=np.float64)
        source["extra_units"] = {"z": "nm"}
    if "lpx" in fields and "lpy" in fields:
        # per-axis precisions in camera pixels, as x and y: kept as one isotropic sigma_xy
        # (their RMS), which `holly localise` records as the store's precision
        lp = np.stack([locs["lpx"], locs["lpy"]]).astype(np.float64)
        extra["sigma_xy"] = np.sqrt((lp**2).mean(axis=0))
    if column is not None:
        _warn_subclusters(path, locs, coords, column, fields)
    return _particles(path, coords, keys, source, nm, column, extra)


SUBCLUSTER_WIDTH = 3.0  # particles narrower than this many localisation precisions are sites


def _group_widths(coords: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """RMS distance from the centroid of every group with two or more finite rows."""
    good = np.isfinite(coords).all(axis=1)
    coords, keys = coords[good], np.asarray(keys)[good]
    if not len(keys):
        return np.zeros(0)
    _, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    n = np.bincount(inverse)
    centre = np.stack([np.bincount(inverse, c) / n for c in coords.T], axis=1)
    r2 = np.bincount(inverse, ((coords - centre[inverse]) ** 2).sum(axis=1)) / n
    return np.sqrt(r2[n >= 2])


def _warn_subclusters(path: Path, locs, coords: np.ndarray, column: str, fields) -> None:
    """Warn when most particles by ``column`` are single binding sites, not structures.

    A particle counts as a site when its RMS radius is under :data:`SUBCLUSTER_WIDTH` times the
    median localisation precision (``lpx``/``lpy``); without precisions, when another group
    column's particles are that much wider. Such files are common after re-clustering (RESI:
    ``group`` = sub-cluster, ``group_input`` = the pick); the wider column is named.
    """
    widths = _group_widths(coords, locs[column])
    if widths.size < 2:
        return
    median = float(np.median(widths))
    prec = None
    if "lpx" in fields and "lpy" in fields:
        lp = np.concatenate([np.asarray(locs["lpx"]), np.asarray(locs["lpy"])]).astype(float)
        lp = lp[np.isfinite(lp) & (lp > 0)]
        prec = float(np.median(lp)) if lp.size else None
    threshold = SUBCLUSTER_WIDTH * (prec if prec else median)
    others = {}
    for name in fields:
        kind = np.asarray(locs[name]).dtype.kind
        if name != column and kind in "iu" and (name.startswith("group") or "cluster" in name):
            w = _group_widths(coords, locs[name])
            if w.size:
                others[name] = float(np.median(w))
    wide = sorted((m, n) for n, m in others.items() if m >= threshold and m >= 2 * median)
    if prec:
        small = float(np.mean(widths < threshold))
        if small <= 0.5:
            return
        what = f"{small:.0%} of them are narrower than {SUBCLUSTER_WIDTH:g} x the median precision"
    else:
        if not wide:
            return
        what = f"{wide[0][1]!r} groups are {wide[0][0] / median:.0f} x wider"
    hint = (
        f"{wide[0][1]!r} looks like the structure (median {wide[0][0]:.3g} px): "
        f"pass --particle-column {wide[0][1]}"
        if wide
        else "pass --particle-column with the column of whole structures"
    )
    log.warning(
        "%s: particles by %r are mostly sub-clusters (single sites a few localisation "
        "precisions wide), not whole structures (median RMS radius %.3g px; %s); %s",
        path,
        column,
        median,
        what,
        hint,
    )


def read_decode(
    path: str | os.PathLike,
    particle_column: str | None = None,
    pixel_size: float | None = None,
) -> Particles:
    """DECODE emitter HDF5 (``data/xyz``; ``meta`` ``xy_unit``, ``px_size``)."""
    path = Path(path)
    with _h5(path) as f:
        if "data" not in f or "xyz" not in f["data"]:
            raise fail(
                path, f"no data/xyz; not a DECODE file (holds [{short(f.keys())}])", formats=True
            )
        data = f["data"]
        xyz = np.asarray(data["xyz"][()], dtype=np.float64)
        meta = dict(f["meta"].attrs) if "meta" in f else {}
        keys = None
        if particle_column is not None:
            if particle_column not in data:
                raise fail(path, f"no particle dataset {particle_column!r} in data/")
            keys = np.asarray(data[particle_column][()]).ravel()
    if xyz.ndim != 2 or xyz.shape[1] < 2:
        raise fail(path, f"data/xyz has shape {xyz.shape}, expected [n, 3]")
    unit = meta.get("xy_unit", "unknown")
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    coords = xyz[:, :2].copy()
    px = meta.get("px_size")
    px = None if px is None or np.asarray(px).dtype.kind not in "fiu" else np.asarray(px, float)
    if unit == "px":
        size = np.array([pixel_size, pixel_size]) if pixel_size else px
        if size is not None and np.all(np.isfinite(size)) and size.size >= 2:
            coords *= size[:2]  # DECODE's px_size is (x, y): convert each axis to nm
            unit = "nm"
    nm, unit_name = _scale_of(unit, path, None)
    source = {"format": "decode", "units": unit_name, "xy_unit": meta.get("xy_unit")}
    return _particles(path, coords, keys, source, nm, particle_column)


# ---------------------------------------------------------------------------- MATLAB files
def _mat_class(obj) -> str:
    value = obj.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _mat_vector(ds, path: Path, name: str) -> np.ndarray:
    """A MATLAB numeric vector (stored ``(1, n)`` or ``(n, 1)``), as float64 ``[n]``."""
    import h5py

    if not isinstance(ds, h5py.Dataset):
        raise fail(path, f"{name} is not a numeric array (a {type(ds).__name__})")
    if ds.attrs.get("MATLAB_empty", 0):
        return np.zeros(0)
    if ds.dtype.kind not in "fiu" or _mat_class(ds) in ("char", "cell", "struct"):
        raise fail(path, f"{name} is MATLAB {_mat_class(ds) or ds.dtype}, not numbers")
    arr = np.asarray(ds[()], dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:
        return arr.ravel()
    if arr.ndim == 1:
        return arr
    raise fail(path, f"{name} has shape {arr.shape}, expected a vector")


def _mat_string(f, ds) -> str | None:
    """A MATLAB char array (uint16 code units) as text; follows a one-cell reference."""
    import h5py

    try:
        if ds.dtype == h5py.ref_dtype:
            ds = f[np.asarray(ds[()]).ravel()[0]]
        if _mat_class(ds) != "char":
            return None
        return "".join(map(chr, np.asarray(ds[()]).ravel(order="F")))
    except Exception:  # best effort: names are provenance, not data
        return None


def read_smap_mat(path: str | os.PathLike, particle_column: str | None = None) -> Particles:
    """SMAP ``_sml.mat``: ``saveloc.loc.xnm``/``ynm`` (nm); v7.3 (HDF5) or v7 (scipy)."""
    path = Path(path)
    head = _head(path, 128)
    if _is_mat5(head):
        return _read_smap_mat5(path, particle_column)
    with _h5(path) as f:
        if "saveloc" not in f or "loc" not in f["saveloc"]:
            raise fail(
                path,
                f"no saveloc.loc struct; not a SMAP _sml.mat (holds [{short(f.keys())}])",
                formats=True,
            )
        loc = f["saveloc/loc"]
        missing = [k for k in ("xnm", "ynm") if k not in loc]
        if missing:
            raise fail(
                path,
                f"saveloc.loc has no {'/'.join(missing)} ([{short(loc.keys())}])",
                formats=True,
            )
        x = _mat_vector(loc["xnm"], path, "saveloc.loc.xnm")
        y = _mat_vector(loc["ynm"], path, "saveloc.loc.ynm")
        extra = {}
        for name, field_ in SMAP_EXTRA.items():
            try:
                if field_ in loc:
                    extra[name] = _mat_vector(loc[field_], path, f"saveloc.loc.{field_}")
            except HollyError:  # kept columns are extras: an odd one is skipped, not refused
                log.info("%s: saveloc.loc.%s is not a numeric vector; not kept", path, field_)
        keys = None
        if particle_column is not None:
            if particle_column not in loc:
                raise fail(
                    path,
                    f"no field {particle_column!r} in saveloc.loc ([{short(loc.keys())}])",
                )
            keys = _mat_vector(loc[particle_column], path, f"saveloc.loc.{particle_column}")
        fields = sorted(loc.keys())
        names = []
        if "file" in f["saveloc"] and "name" in f["saveloc/file"]:
            name = f["saveloc/file/name"]
            refs = np.asarray(name[()]).ravel() if name.dtype.kind == "O" else [None]
            for ref in refs:
                s = _mat_string(f, name if ref is None else f[ref])
                if s:
                    names.append(s)
    if x.shape != y.shape or (keys is not None and keys.shape != x.shape):
        raise fail(path, "saveloc.loc fields have different lengths")
    source = {"format": "smap-mat", "units": "nm", "fields": fields, "smap_files": names[:20]}
    return _smap_particles(path, x, y, keys, source, particle_column, extra)


SMAP_EXTRA = {"z": "znm", "sigma_xy": "locprecnm", "sigma_z": "locprecznm"}  # all nm


def _smap_particles(path, x, y, keys, source, particle_column, extra) -> Particles:
    extra = {k: v for k, v in extra.items() if v.shape == x.shape}  # odd-length fields: skipped
    if extra:
        source["extra_units"] = {k: "nm" for k in extra}
    return _particles(path, np.stack([x, y], axis=1), keys, source, 1.0, particle_column, extra)


def _read_smap_mat5(path: Path, particle_column: str | None) -> Particles:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=["saveloc"])
    except Exception as exc:
        raise fail(path, f"not a readable MATLAB file ({str(exc)[:100]})", formats=True) from exc
    saveloc = mat.get("saveloc")
    loc = getattr(saveloc, "loc", None)
    if loc is None or not hasattr(loc, "xnm") or not hasattr(loc, "ynm"):
        raise fail(
            path, "MATLAB file without saveloc.loc.xnm/ynm: not a SMAP _sml.mat", formats=True
        )
    x = _numeric(np.atleast_1d(loc.xnm).ravel(), path, "saveloc.loc.xnm")
    y = _numeric(np.atleast_1d(loc.ynm).ravel(), path, "saveloc.loc.ynm")
    keys = None
    if particle_column is not None:
        if not hasattr(loc, particle_column):
            raise fail(path, f"no field {particle_column!r} in saveloc.loc")
        keys = np.atleast_1d(getattr(loc, particle_column)).ravel().astype(np.float64)
    source = {"format": "smap-mat", "units": "nm", "fields": sorted(loc._fieldnames)}
    extra = {
        name: _loose_numeric(np.atleast_1d(getattr(loc, field_)).ravel())
        for name, field_ in SMAP_EXTRA.items()
        if hasattr(loc, field_)
    }
    return _smap_particles(path, x, y, keys, source, particle_column, extra)


def read_cep152_mat(
    path: str | os.PathLike, order: str = "cell", pixel_size: float | None = None
) -> Particles:
    """Particles of the CEP152 MATLAB v7.3 file, and of nothing else.

    The file must hold the cell array ``Cep152_all_filtered`` (object references); every cell
    that references a numeric ``(8, n)`` dataset is one particle (row 0 = x, row 1 = y); other
    cells are skipped, and a file without such cells is an error. ``#refs#`` is never walked on
    its own: MATLAB keeps strings and matrices of any variable there.

    Parameters
    ----------
    path : path-like
    order : {"cell", "refs"}
        Particle numbering: MATLAB cell order, or the ``#refs#`` name order of the referenced
        datasets (the order CEPrender walked them in).
    pixel_size : float, optional
        nm per source unit, if known (the file does not say).
    """
    import h5py

    path = Path(path)
    if order not in ("cell", "refs"):
        raise HollyError(f"--mat-order must be 'cell' or 'refs', not {order!r}")
    xy, labels, names = [], [], []
    with _h5(path) as f:
        if MAT_MEMBER not in f:
            hint = " (this is a SMAP file: use --format smap-mat)" if "saveloc" in f else ""
            raise fail(
                path,
                f"no {MAT_MEMBER} cell array; not the CEP152 file (holds "
                f"[{short(k for k in f.keys() if k != '#refs#')}]){hint}",
                formats=True,
            )
        cells = f[MAT_MEMBER]
        if not isinstance(cells, h5py.Dataset) or cells.dtype != h5py.ref_dtype:
            raise fail(
                path,
                f"{MAT_MEMBER} is not a MATLAB cell array (no object references)",
                formats=True,
            )
        # MATLAB stores arrays transposed: h5py's C order is MATLAB's column-major cell order
        for k, ref in enumerate(np.asarray(cells[()]).ravel()):
            if not ref:
                continue
            data = f[ref]
            if (
                isinstance(data, h5py.Dataset)
                and data.ndim == 2
                and data.shape[0] == 8
                and data.dtype.kind in "fiu"
                and _mat_class(data) not in ("char", "cell", "struct", "logical")
            ):
                xy.append(np.asarray(data[0:2], dtype=np.float64).T)
                labels.append(k)
                names.append(data.name)
    if not xy:
        raise fail(
            path, f"{MAT_MEMBER} references no numeric (8, n) datasets: no particles", formats=True
        )
    if order == "refs":
        perm = sorted(range(len(xy)), key=lambda i: names[i])
        xy = [xy[i] for i in perm]
        labels = [names[i].rsplit("/", 1)[-1] for i in perm]
    source = {"format": "cep152-mat", "order": order, "units": "unknown"}
    coords = [p for p in xy]
    out = Particles(coords, labels, source, pixel_size, grouped=True)
    good = [np.isfinite(p).all(axis=1) for p in out.xy]
    dropped = sum(int((~g).sum()) for g in good)
    if dropped:
        log.warning("%s: dropped %d localisations with non-finite x/y", path, dropped)
        out.xy = [p[g] for p, g in zip(out.xy, good, strict=True)]
    return out


# ---------------------------------------------------------------------------- TU Delft
def _mat5_variable(path: Path, name: str):
    """One variable of a MATLAB v5/v7 file, as scipy reads it (cells and structs: object and
    record arrays, MATLAB shapes)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=False, struct_as_record=True, variable_names=[name])
    except Exception as exc:  # scipy raises many kinds on damaged files
        raise fail(path, f"not a readable MATLAB file ({str(exc)[:100]})", formats=True) from exc
    if name not in mat:
        raise fail(path, f"no variable {name!r}", formats=True)
    return mat[name]


def _mat5_elements(value) -> list:
    """The elements of a v5 cell array or struct array, in MATLAB (column-major) order; a
    struct element becomes a dict of its fields, a numeric one stays an array."""

    def unpack(v):
        v = np.asarray(v)
        if v.dtype.names:  # a 1x1 struct
            return {
                n: np.asarray(v[n].flat[0]) if v.size else np.zeros((0, 0)) for n in v.dtype.names
            }
        return v

    value = np.asarray(value)
    if value.dtype.names:  # struct array: one dict per element
        return [{n: np.asarray(e[n]) for n in value.dtype.names} for e in value.ravel(order="F")]
    if value.dtype == object:  # cell array
        return [unpack(e) for e in value.ravel(order="F")]
    return [value]  # one numeric matrix


def _mat73_elements(f, obj) -> list:
    """Like :func:`_mat5_elements` for MATLAB v7.3 (HDF5): cell = dataset of references, struct
    = group; HDF5 stores MATLAB arrays transposed, so arrays come back in MATLAB's shape."""
    import h5py

    def value(o):
        if isinstance(o, h5py.Group):
            return {k: value(o[k]) for k in o.keys()}
        if o.attrs.get("MATLAB_empty", 0):
            return np.zeros((0, 0))
        if o.dtype == h5py.ref_dtype:  # a cell inside: its elements
            return [value(f[r]) for r in np.asarray(o[()]).ravel() if r]
        return np.asarray(o[()]).T

    if isinstance(obj, h5py.Group):
        fields = list(obj.keys())
        refs = {k: obj[k] for k in fields if isinstance(obj[k], h5py.Dataset)}
        if (
            fields
            and all(d.dtype == h5py.ref_dtype for d in refs.values())
            and len(refs) == len(fields)
        ):
            n = {d.size for d in refs.values()}
            if len(n) == 1:  # a struct array: every field a cell of the elements' values
                cols = {k: np.asarray(d[()]).ravel() for k, d in refs.items()}
                return [{k: value(f[cols[k][j]]) for k in fields} for j in range(n.pop())]
        return [value(obj)]
    if obj.dtype == h5py.ref_dtype:
        return [value(f[r]) for r in np.asarray(obj[()]).ravel() if r]
    return [value(obj)]


def _mat_elements(path: Path, names: tuple[str, ...]) -> tuple[str, list, str]:
    """(variable name, elements, MATLAB version) of the first of ``names`` in the file."""

    if _is_mat5(_head(path, 128)):
        from scipy.io import whosmat

        try:
            present = [v[0] for v in whosmat(path)]
        except Exception as exc:  # scipy raises many kinds on damaged files
            raise fail(path, f"not a readable MATLAB file ({str(exc)[:80]})", formats=True) from exc
        name = next((n for n in present if n in names or n.lower() in names), None)
        if name is None:
            raise fail(path, f"MATLAB file holding [{short(present)}]: {_NO_LAYOUT}", formats=True)
        return name, _mat5_elements(_mat5_variable(path, name)), "v5"
    with _h5(path) as f:
        present = [k for k in f.keys() if k != "#refs#"]
        name = next((n for n in present if n in names or n.lower() in names), None)
        if name is None:
            raise fail(path, f"HDF5 file holding [{short(present)}]: {_NO_LAYOUT}", formats=True)
        return name, _mat73_elements(f, f[name]), "v7.3"


def _matrix(value, path: Path, what: str) -> np.ndarray:
    """A numeric MATLAB matrix as float64 (2-D; an empty one is ``(0, 0)``)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise fail(path, f"{what} is not a numeric matrix (MATLAB {type(value).__name__})")
    arr = arr.astype(np.float64)
    if arr.ndim < 2:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise fail(path, f"{what} has shape {arr.shape}, expected a matrix")
    return arr


def _tud_particle(element, path: Path, k: int) -> tuple[np.ndarray, dict, str]:
    """xy [n, 2] and the kept columns of one TU Delft particle struct (camera pixels)."""
    where = f"particles{{{k + 1}}}"
    if isinstance(element, np.ndarray) and element.size == 0:
        return np.zeros((0, 2)), {}, ""  # an empty cell: an empty particle, dropped later
    if not isinstance(element, dict):
        raise fail(path, f"{where} is not a struct with points or coords", formats=True)
    if "points" in element:
        pts = _matrix(element["points"], path, f"{where}.points")
        if pts.size == 0:
            return np.zeros((0, 2)), {}, "points"
        if pts.shape[1] not in (2, 3):
            raise fail(path, f"{where}.points has shape {pts.shape}, expected N x 2 or N x 3")
        extra = {"z": pts[:, 2]} if pts.shape[1] == 3 else {}
        if "sigma" in element:
            sig = _matrix(element["sigma"], path, f"{where}.sigma")
            if sig.size == 1:
                sig = np.full((len(pts), 1), sig.item())
            if sig.shape[0] != len(pts) and sig.shape[1] == len(pts):
                sig = sig.T
            if sig.shape[0] != len(pts) or sig.shape[1] > 2:
                raise fail(path, f"{where}.sigma has shape {sig.shape} for {len(pts)} points")
            extra["sigma_xy"] = sig[:, 0]
            if sig.shape[1] == 2:
                extra["sigma_z"] = sig[:, 1]
        return pts[:, :2], extra, "points"
    if "coords" in element:
        c = _matrix(element["coords"], path, f"{where}.coords")
        if c.size == 0:
            return np.zeros((0, 2)), {}, "coords"
        if c.shape[1] < 3:
            raise fail(path, f"{where}.coords has shape {c.shape}, expected N x 10")
        extra = {"z": c[:, 2]}
        if c.shape[1] >= 5:
            extra["sigma_xy"] = c[:, 4]  # column 5
        if c.shape[1] >= 10:
            extra["sigma_z"] = c[:, 9]  # column 10
        return c[:, :2], extra, "coords"
    fields = short(sorted(element))
    raise fail(path, f"{where} has neither points nor coords (fields [{fields}])", formats=True)


def read_tud_mat(path: str | os.PathLike, pixel_size: float | None = None) -> Particles:
    """TU Delft particle-fusion file: cell array ``particles``, one particle per cell.

    Each cell is a struct with ``points`` (N x 2 or N x 3) and optionally ``sigma`` (N x 1:
    sigma_xy, or N x 2: sigma_xy, sigma_z), or with ``coords`` (N x 10: columns 1-3 x, y, z,
    5 sigma_xy, 10 sigma_z); all in camera pixels. MATLAB v5 (scipy) or v7.3 (h5py). z and
    the sigmas are kept as extra columns.

    Parameters
    ----------
    path : path-like
    pixel_size : float
        nm per camera pixel. Required: the file does not say it (the TU Delft repositories'
        data use 130 nm; holly does not assume it).

    Raises
    ------
    HollyError
        Not this layout, or no ``pixel_size``.
    """
    path = Path(path)
    name, elements, version = _mat_elements(path, (TUD_MEMBER,))
    xy, extra, layouts = [], [], set()
    for k, element in enumerate(elements):
        p, e, layout = _tud_particle(element, path, k)
        xy.append(p)
        extra.append(e)
        layouts.add(layout)
    if not xy:
        raise fail(path, f"the cell array {name!r} is empty: no particles")
    if pixel_size is None:
        raise fail(
            path,
            f"TU Delft particle file ({len(xy)} particles): coordinates are camera pixels and "
            f"the file does not give their size; pass --pixel-size NM (the TU Delft "
            f"repositories use {TUD_PIXEL_NM:g} nm)",
        )
    units = "camera pixels"
    source = {
        "format": "tud-mat",
        "variable": name,
        "layout": "/".join(sorted(layouts - {""})),
        "matlab": version,
        "units": units,
        "pixel_size_nm": pixel_size,
    }
    part = _cells_particles(path, xy, extra, source, pixel_size)
    part.source["extra_units"] = {k: units for k in part.extra}
    return part


def read_superparticle_mat(path: str | os.PathLike) -> Particles:
    """JRMPC's ``Superparticle``: a cell array of dims x N matrices (nm), one per particle
    (a single matrix: one particle). dims 2 or 3; z is kept as an extra column."""
    path = Path(path)
    name, elements, version = _mat_elements(path, (SUPER_MEMBER,))
    xy, extra = [], []
    for k, element in enumerate(elements):
        where = f"{name}{{{k + 1}}}"
        if isinstance(element, dict | list):
            raise fail(path, f"{where} is not a numeric dims x N matrix", formats=True)
        m = _matrix(element, path, where)
        if m.size == 0:
            xy.append(np.zeros((0, 2)))
            extra.append({})
            continue
        if m.shape[0] not in (2, 3):
            if m.shape[1] not in (2, 3):
                raise fail(path, f"{where} has shape {m.shape}, expected 2 x N or 3 x N")
            m = m.T  # stored N x dims
        xy.append(m[:2].T.copy())
        extra.append({"z": m[2].copy()} if m.shape[0] == 3 else {})
    if not xy:
        raise fail(path, f"the cell array {name!r} is empty: no particles")
    source = {"format": "superparticle-mat", "variable": name, "matlab": version, "units": "nm"}
    part = _cells_particles(path, xy, extra, source, 1.0)
    part.source["extra_units"] = {k: "nm" for k in part.extra}
    return part


# ---------------------------------------------------------------------------- dispatch
def read_file(
    path: Path,
    fmt: str,
    *,
    particle_column: str | None = None,
    mat_order: str = "cell",
    pixel_size: float | None = None,
) -> Particles:
    """One file in a given format (``auto``: :func:`detect_format`)."""
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "thunderstorm":
        part = read_thunderstorm(path, particle_column, pixel_size)
    elif kind == "picasso":
        part = read_picasso(path, particle_column, pixel_size)
    elif kind == "cep152-mat":
        part = read_cep152_mat(path, mat_order, pixel_size)
    elif kind == "smap-mat":
        part = read_smap_mat(path, particle_column)
    elif kind == "smap-csv":
        part = read_smap_csv(path, particle_column)
    elif kind == "decode":
        part = read_decode(path, particle_column, pixel_size)
    elif kind == "elyra":
        part = read_elyra(path, particle_column)
    elif kind == "nanoimager":
        part = read_nanoimager(path, particle_column)
    elif kind == "rapidstorm":
        part = read_rapidstorm(path, particle_column, pixel_size)
    elif kind in ("tud-mat", "superparticle-mat"):
        if particle_column is not None:
            raise fail(
                path,
                f"--particle-column does not apply to {kind} files: each cell is one particle",
            )
        part = read_tud_mat(path, pixel_size) if kind == "tud-mat" else read_superparticle_mat(path)
    else:
        raise HollyError(f"--format must be auto or one of: {supported()}; not {kind!r}")
    if part.nm_per_unit is None and pixel_size is not None and kind not in ("cep152-mat",):
        # units the file does not name (plain x/y columns): the option says what they are
        part.nm_per_unit = pixel_size
    return part


def list_inputs(path: Path) -> list[Path]:
    """The files of a folder that may hold localisations, in name order."""
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        present = short(sorted(p.name for p in path.iterdir())) or "nothing"
        raise fail(
            path, f"no localisation files ({' '.join(SUFFIXES)}) in folder; it holds {present}"
        )
    return files


def read_localisations(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    particle_column: str | None = None,
    mat_order: str = "cell",
    pixel_size: float | None = None,
) -> tuple[Particles, list[Path]]:
    """Read particles from a file, or from every localisation file in a folder (name order).

    A folder's files must share one format, one way of grouping (all by a particle column, or
    all one particle per file: a whole-field file among picked particles would set the scale
    of everything) and one scale (nm per unit); anything else is an error naming the files.

    Returns
    -------
    particles : Particles
    files : list of Path
        The files read.
    """
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise HollyError(f"--format must be auto or one of: {supported()}; not {fmt!r}")
    if pixel_size is not None and not (pixel_size > 0 and np.isfinite(pixel_size)):
        raise HollyError(f"--pixel-size must be a positive number of nm, not {pixel_size}")
    if not path.exists():
        raise HollyError(f"localisation input {path} does not exist")
    files = list_inputs(path) if path.is_dir() else [path]
    parts = [
        read_file(
            f, fmt, particle_column=particle_column, mat_order=mat_order, pixel_size=pixel_size
        )
        for f in files
    ]
    if len(parts) == 1:
        return parts[0], files
    _check_folder(path, files, parts)
    xy, labels = [], []
    common = [k for k in parts[0].extra if all(k in p.extra for p in parts)]
    extra = {k: [] for k in common}  # columns every file has (z kept only if all have it)
    for file, part in zip(files, parts, strict=True):
        xy.extend(part.xy)
        labels.extend(f"{file.name}:{lb}" if part.grouped else file.name for lb in part.labels)
        for k in common:
            extra[k].extend(part.extra[k])
    first = parts[0]
    return Particles(xy, labels, first.source, first.nm_per_unit, first.grouped, extra), files


def _check_folder(folder: Path, files: list[Path], parts: list[Particles]) -> None:
    formats = sorted({p.source["format"] for p in parts})
    if len(formats) > 1:
        by = {}
        for x, p in zip(files, parts, strict=True):
            by.setdefault(p.source["format"], []).append(x.name)
        raise fail(
            folder,
            "files of different formats: "
            + "; ".join(f"{k}: {short(v, 2)}" for k, v in by.items())
            + "; put one format in a folder",
        )
    grouped = [x.name for x, p in zip(files, parts, strict=True) if p.grouped]
    whole = [x.name for x, p in zip(files, parts, strict=True) if not p.grouped]
    if grouped and whole:
        column = parts[[p.grouped for p in parts].index(True)].source.get("particle_column")
        raise fail(
            folder,
            f"mixes files of particles (by {column!r}: {short(grouped, 2)}) with files read "
            f"whole (no {column!r}: {short(whole, 2)}), e.g. picks beside a whole-field file; "
            "keep one kind in the folder",
        )
    scales = {p.nm_per_unit for p in parts}
    if len(scales) > 1:
        by = {}
        for x, p in zip(files, parts, strict=True):
            by.setdefault(p.nm_per_unit, []).append(x.name)
        raise fail(
            folder,
            "files with different pixel sizes (nm per unit): "
            + "; ".join(f"{k}: {short(v, 2)}" for k, v in by.items())
            + "; localise them separately",
        )
