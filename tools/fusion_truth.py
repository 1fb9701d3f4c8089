"""Score a `holly fuse` record of a ring-like structure, and against the simulation it came from.

    python tools/fusion_truth.py FUSION.json [--truth SIM.csv] [--order 8]

Reads the record's store (`holly localise`'s, as the record names it), places its particles by
the record's transforms and prints, as JSON: the fused localisations' ring (radius and angular
spectrum about the best-fitting circle, `holly.results.structure.ring`), their extents, and the
record's sites. With `--truth` (a `holly simulate-localisations` table beside its
`.truth.npz`): each particle's rotation error modulo `--order` (default: the record's declared
symmetry), for the particles showing at least 1, 2 and 3 labelled sites, and the faces: how
many lie face down in the simulation (`--face-down`) and in the record (`mirrored`), and the
share placed on their right face (up to turning the whole fusion over, which is the same
fusion). A particle on the wrong face has no rotation error; it counts as not within 10°. For
a structure that is its own mirror image (the pore) the face is not determined by the data:
read the faces only for chiral ones (the logo). A store's particle `i` is the table's `i`-th
particle id (`holly localise` numbers them in order); its y axis points down, as the camera's,
so the simulated turn appears mirrored (the sign is taken care of here).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holly.data.fusionrecord import fused_from_record, read_fusion  # noqa: E402
from holly.data.localisations import read_store_localisations  # noqa: E402
from holly.method.annealedfusion import MIRROR  # noqa: E402
from holly.method.fusion import rotation  # noqa: E402
from holly.results.structure import principal_extents, ring  # noqa: E402


def rotation_errors(record: dict, truth_csv: Path, order: int) -> dict:
    """The record's rotations against the simulated ones, modulo ``order``, in degrees."""
    truth = np.load(truth_csv.with_suffix("").as_posix() + ".truth.npz")
    ids = np.unique(pd.read_csv(truth_csv, usecols=["particle"])["particle"])
    rows = record["transforms"]
    simulated = ids[[t["particle"] for t in rows]]
    turns = truth["rotations"][simulated]
    true_down = turns[:, 2, 2] < 0  # the half turn about x: the table shows the mirror image
    placed_down = np.array([bool(t.get("mirrored", False)) for t in rows])
    # each particle's found placement composed with its true view, both in the table's y-down
    # frame (Y R Y: the camera's y points down): one transform for all in a right fusion, a
    # turn where the faces agree and a turn after a mirror where they do not
    y, m = np.diag([1.0, -1.0]), np.diag(MIRROR)
    found = np.radians([t["angle_deg"] for t in rows])
    composed = np.stack(
        [
            rotation(a) @ (m if d else np.eye(2)) @ y @ r[:2, :2] @ y
            for a, d, r in zip(found, placed_down, turns, strict=True)
        ]
    )
    flipped = np.linalg.det(composed) < 0
    same = flipped == (flipped.mean() > 0.5)  # the majority's face: the fusion's
    unflipped = np.where(flipped[:, None, None], composed @ m, composed)
    z = np.exp(1j * order * np.arctan2(unflipped[:, 1, 0], unflipped[:, 0, 0]))
    error = np.degrees(np.abs(np.angle(z * np.exp(-1j * np.angle(z[same].mean()))))) / order
    error[~same] = np.nan  # on the other face: no turn places it
    shown = truth["labelled"][simulated].sum(1)
    out = {"order": order, "chance_median_deg": round(90.0 / order, 2)}
    out["faces"] = {
        "true_face_down": int(true_down.sum()),
        "placed_face_down": int(placed_down.sum()),
        "right_face": round(float(same.mean()), 3),
    }
    for least in (1, 2, 3):
        pick = shown >= least
        out[f"showing_{least}_or_more"] = {
            "particles": int(pick.sum()),
            "median_deg": round(float(np.nanmedian(np.where(same, error, 180.0)[pick])), 2),
            "within_10_deg": round(float((np.nan_to_num(error[pick], nan=180.0) < 10).mean()), 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a `holly fuse --out` JSON")
    parser.add_argument("--truth", type=Path, help="the simulated table the store came from")
    parser.add_argument("--order", type=int, help="symmetry the rotation error is taken modulo")
    args = parser.parse_args()
    record = read_fusion(args.record)
    locs = read_store_localisations(record["store"])
    fused = np.concatenate(fused_from_record(locs, record))
    shape = ring(np.column_stack([fused, np.zeros(len(fused))]))
    result = {
        "record": str(args.record),
        "ring_radius": round(shape["radius"], 2),
        "dominant_order": shape["dominant_order"],
        "spectrum": [round(v, 3) for v in shape["spectrum"]],
        "fused_extents": [round(float(e), 1) for e in principal_extents(fused, 0.95)],
        "site_radii": None
        if record.get("sites") is None
        else [round(float(np.hypot(*s)), 1) for s in record["sites"]],
    }
    if args.truth:
        order = args.order or record["params"].get("symmetry", 1)
        result["rotation_error"] = rotation_errors(record, args.truth, order)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
