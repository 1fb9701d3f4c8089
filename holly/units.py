"""Lengths in holly: model units, pixels and (where the data says so) nanometres.

Point clouds, translations and every distance score (Chamfer, Hausdorff, tau) are in **model
units**. The renderer's viewport maps 1 model unit to ``H/4`` pixels of an ``H x W`` image
(:mod:`holly.render`), and sigma is in pixels. Nanometres are known only for real data whose
image store records its pixel size (``nm_per_px``, written by the readers that know it);
simulated data have none.
"""

from __future__ import annotations

import logging
import math
import os

from holly.errors import HollyError

log = logging.getLogger(__name__)


def model_unit_px(height: int) -> float:
    """Pixels per model unit for images ``height`` pixels high (``H/4``)."""
    return height / 4.0


def store_pixel_nm(store_path: str | os.PathLike | None) -> float | None:
    """The pixel size (nm) an image store records (:attr:`ImageStore.nm_per_px`), or None.

    A store that cannot be opened gives None too (logged): units are a courtesy, never a reason
    for a run or a summary to fail.
    """
    if not store_path:
        return None
    from holly.imagestore import ImageStore

    try:
        nm = ImageStore.open(store_path).nm_per_px
    except HollyError as exc:
        log.warning("%s; lengths in model units and px only", exc)
        return None
    return nm if nm is not None and math.isfinite(nm) and nm > 0 else None


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
