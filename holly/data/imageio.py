"""Single images: PNG for people, FITS for analysis; the one module that reads FITS.

Orientation: holly's images have row 0 at the top and +y up (see :mod:`holly.method.render`). FITS
viewers (DS9, astropy/matplotlib with origin="lower") put row 0 at the bottom, so FITS files are
written flipped vertically; they then display the right way up, and :func:`read_fits` flips back.
This is the convention of the original's v1.1+ FITS output and of CEPrender.

Input FITS files (the folders :mod:`holly.data.ingest` turns into an image store) are read by
:func:`read_fits_image`: checked (readable, 2D or a cube, finite, not all zero), with the md5 of
the file's bytes, flipped back on request.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np

from holly.atomic import atomic_path
from holly.errors import HollyError

IMAGE_SUFFIXES = (".png", ".fits", ".fit")  # what write_image writes
FITS_SUFFIXES = (".fits", ".fit", ".fts")  # input FITS files (ingest's folders)


class BadFitsFile(Exception):
    """An input FITS file that cannot be used; the message is the reason."""


def write_image(path: str | Path, image: np.ndarray, header: dict | None = None) -> None:
    """Write a 2D float image ``[H, W]`` as PNG (scaled to its maximum) or FITS (float32)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise HollyError(f"{path}: unknown image type {suffix!r}; use one of {IMAGE_SUFFIXES}")
    image = np.asarray(image, dtype=np.float32)
    with atomic_path(path) as tmp:
        if suffix == ".png":
            import matplotlib.image

            peak = float(image.max()) or 1.0
            matplotlib.image.imsave(tmp, image / peak, cmap="gray", vmin=0, vmax=1, format="png")
        else:
            from astropy.io import fits

            hdu = fits.PrimaryHDU(np.flipud(image))
            for key, value in (header or {}).items():
                hdu.header[key[:8].upper()] = value
            hdu.writeto(tmp, overwrite=True)


def read_fits(path: str | Path) -> np.ndarray:
    """Read a 2D FITS image written by :func:`write_image` back into holly's orientation."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            data = np.asarray(hdul[0].data, dtype=np.float32)
    except (OSError, TypeError, ValueError) as exc:
        raise HollyError(f"cannot read FITS image {path}: {exc}") from exc
    if data.ndim != 2:
        raise HollyError(f"{path}: expected a 2D image, got shape {data.shape}")
    return np.flipud(data).copy()


def read_fits_image(path: Path, flip: bool = False) -> tuple[np.ndarray, str]:
    """Read one input FITS image as float32, checking it; also return the md5 of the file bytes.

    The first HDU with data is used; a 3D cube is summed over its first axis. ``flip``: return
    ``flipud`` of the FITS rows (holly's orientation for files written flipped, as CEPrender's
    and :func:`write_image`'s are; :mod:`holly.data.ingest`'s default), else the rows as stored.

    Raises
    ------
    BadFitsFile
        Unreadable, truncated or non-FITS file, no 2D/3D image, NaN/inf values, all zero.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadFitsFile(f"cannot read file: {exc.strerror or exc}") from exc
    digest = hashlib.md5(raw).hexdigest()
    data = _read_simple_float_image(raw)
    if data is None:
        data = _read_any_image(raw)
    image = _check_image(data)
    return (image[::-1] if flip else image), digest


def _read_any_image(raw: bytes) -> np.ndarray:
    """The first image of any FITS file astropy reads, as float32 (BadFitsFile otherwise)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdul:
                data = next((h.data for h in hdul if h.data is not None), None)
                data = None if data is None else np.array(data, dtype=np.float32)
        for w in caught:
            text = str(w.message)
            if "truncated" in text or "corrupted" in text:
                raise BadFitsFile(f"truncated or corrupt FITS file ({text.splitlines()[0]})")
    except BadFitsFile:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, ... on garbage
        detail = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        if "too small" in detail or "truncated" in detail:
            raise BadFitsFile(f"truncated FITS file ({detail})") from exc
        raise BadFitsFile(f"not a readable FITS file ({detail})") from exc
    if data is None:
        raise BadFitsFile("FITS file has no image data")
    return data


def _read_simple_float_image(raw: bytes) -> np.ndarray | None:
    """Fast path for the common file (CEPrender's): a primary HDU holding an unscaled float
    image. Returns None for anything else (other types, scaling, extensions, short data), which
    the general astropy reader then handles and diagnoses. Three times faster than fits.open."""
    from astropy.io import fits

    try:
        stream = io.BytesIO(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromfile(stream)
        if header.get("SIMPLE") is not True or header.get("BITPIX") not in (-32, -64):
            return None
        if any(k in header for k in ("BSCALE", "BZERO", "BLANK")):
            return None
        naxis = header.get("NAXIS")
        if naxis not in (2, 3):
            return None
        shape = tuple(int(header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
        count = int(np.prod(shape))
        dtype = np.dtype(">f4" if header["BITPIX"] == -32 else ">f8")
        if count == 0 or stream.tell() + count * dtype.itemsize > len(raw):
            return None
        data = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell())
    except Exception:
        return None
    return data.reshape(shape).astype(np.float32)


def _check_image(data: np.ndarray) -> np.ndarray:
    """Sum a cube over its first axis; reject wrong dimensions, NaN/inf, all-zero images."""
    if data.ndim == 3:
        data = data.sum(axis=0, dtype=np.float32)
    if data.ndim != 2:
        raise BadFitsFile(f"image has {data.ndim} dimensions; expected a 2D image or 3D cube")
    if not np.isfinite(data).all():
        raise BadFitsFile("image contains NaN or infinite values")
    if not data.any():
        raise BadFitsFile("image is all zero")
    return data
