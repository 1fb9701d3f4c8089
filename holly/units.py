"""Lengths in holly: model units, pixels and (where the data says so) nanometres.

Point clouds, translations and every distance score (Chamfer, Hausdorff, tau) are in **model
units**. The renderer's viewport maps 1 model unit to ``H/4`` pixels of an ``H x W`` image
(:mod:`holly.method.render`), and sigma is in pixels. Nanometres are known only for real data whose
image store records its pixel size (``nm_per_px``; the run folder's
:meth:`holly.run.runfolder.RunFolder.read_scale`); simulated data have none.
"""

from __future__ import annotations


def model_unit_px(height: int) -> float:
    """Pixels per model unit for images ``height`` pixels high (``H/4``)."""
    return height / 4.0


def run_units(height: int, pixel_nm: float | None = None) -> dict:
    """The units of a run's lengths, for file headers (:func:`describe_units`).

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
