"""Lengths in holly: model units, pixels and (where the data says so) nanometres.

Point clouds, translations and every distance score (Chamfer, Hausdorff, tau) are in **model
units**. The renderer's viewport maps 1 model unit to ``H/4`` pixels of an ``H x W`` image
(:mod:`holly.render`), and sigma is in pixels. Nanometres are known only for real data whose
image store records its pixel size (an ``nm_per_pixel`` attribute, written by the readers that
know it); simulated data have none.
"""

from __future__ import annotations

import logging
import math
import os

log = logging.getLogger(__name__)

# Store attribute names that give the pixel size in nm (the first one present wins).
PIXEL_NM_ATTRS = ("nm_per_pixel", "pixel_size_nm")


def model_unit_px(height: int) -> float:
    """Pixels per model unit for images ``height`` pixels high (``H/4``)."""
    return height / 4.0


def store_pixel_nm(store_path: str | os.PathLike | None) -> float | None:
    """The pixel size (nm) an image store records, or None when it records none.

    A store that cannot be opened gives None too (logged): units are a courtesy, never a reason
    for a run or a summary to fail.
    """
    if not store_path:
        return None
    try:
        from holly.imagestore import ImageStore

        attrs = ImageStore.open(store_path).attrs
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("no pixel size from %s: %s", store_path, exc)
        return None
    for key in PIXEL_NM_ATTRS:
        value = attrs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value) and value > 0:
                return float(value)
    return None


def run_units(height: int, pixel_nm: float | None = None) -> dict:
    """The units record of a run (``provenance.json`` ``units``), JSON-ready.

    Returns
    -------
    dict
        ``length`` ("model units"), ``model_unit_px``, ``pixel_nm`` and ``model_unit_nm``
        (both None when the pixel size is unknown), ``sigma`` ("px").
    """
    px = model_unit_px(height)
    return {
        "length": "model units",
        "model_unit_px": px,
        "pixel_nm": pixel_nm,
        "model_unit_nm": px * pixel_nm if pixel_nm else None,
        "sigma": "px",
    }


def describe_units(units: dict) -> str:
    """One line such as ``model units (1 unit = 16 px = 1280 nm)`` for file headers."""
    text = f"model units (1 unit = {units['model_unit_px']:g} px"
    if units.get("model_unit_nm"):
        text += f" = {units['model_unit_nm']:.4g} nm"
    return text + ")"
