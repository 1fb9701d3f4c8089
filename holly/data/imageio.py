"""Writing single images: PNG for people, FITS for analysis.

Orientation: holly's images have row 0 at the top and +y up (see :mod:`holly.method.render`). FITS
viewers (DS9, astropy/matplotlib with origin="lower") put row 0 at the bottom, so FITS files are
written flipped vertically; they then display the right way up, and :func:`read_fits` flips back.
This is the convention of the original's v1.1+ FITS output and of CEPrender.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from holly.atomic import atomic_path
from holly.errors import HollyError

IMAGE_SUFFIXES = (".png", ".fits", ".fit")


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
