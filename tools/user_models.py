"""Write asymmetric test models that neither holly's defaults nor its tests were tuned on.

Each model is made procedurally from a seeded generator, in arbitrary units and position (as a
user's own model would be), and saved as an OBJ of vertices only. They exercise the README's
recipe for a user's model (``data.shape: PATH``, ``data.fit_radius: 1.5``); see
``tools/user-models.sh`` for the runs and the README's "Your own model" section for the results.

    python tools/user_models.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _tube(curve: np.ndarray, per_point: int, radius: float, rng) -> np.ndarray:
    """Points jittered around a polyline (a thin tube)."""
    idx = rng.integers(0, len(curve), per_point * len(curve))
    return curve[idx] + rng.normal(0, radius, (len(idx), 3))


def _blob(centre, radius: float, n: int, rng) -> np.ndarray:
    return np.asarray(centre) + rng.normal(0, radius, (n, 3))


def knot(rng) -> np.ndarray:
    """A trefoil-knot tube with one blob on it: chiral, no symmetry once the blob is on."""
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    x, y, z = np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)
    curve = np.stack([x, y, z], 1)
    return np.concatenate([_tube(curve, 2, 0.05, rng), _blob(curve[17], 0.35, 60, rng)])


def clusters(rng) -> np.ndarray:
    """Five clusters of different sizes at random places: like a small protein complex."""
    centres = rng.normal(0, 2.0, (5, 3))
    sizes = [0.15, 0.25, 0.35, 0.45, 0.6]
    counts = [20, 35, 50, 70, 90]
    return np.concatenate(
        [_blob(c, s, n, rng) for c, s, n in zip(centres, sizes, counts, strict=True)]
    )


def branch(rng) -> np.ndarray:
    """A trunk with three side branches of different lengths at random angles."""
    trunk = np.linspace([0, 0, -3], [0, 0, 3], 60)
    parts = [trunk]
    for z, length in ((-1.5, 2.5), (0.4, 1.6), (2.0, 1.0)):
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2]) * 0.3
        direction /= np.linalg.norm(direction)
        parts.append(np.array([0, 0, z]) + np.linspace(0, length, 30)[:, None] * direction)
    curve = np.concatenate(parts)
    return _tube(curve, 2, 0.06, rng)


def ring_tail(rng) -> np.ndarray:
    """An elliptic ring with a tail and two blobs of different sizes."""
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    ring = np.stack([1.6 * np.cos(t), 1.0 * np.sin(t), 0.2 * np.sin(2 * t)], 1)
    tail = np.linspace([1.6, 0, 0], [3.2, 0.4, 1.2], 30)
    return np.concatenate(
        [
            _tube(np.concatenate([ring, tail]), 2, 0.05, rng),
            _blob([-1.2, 0.7, 0.1], 0.3, 50, rng),
            _blob([0.3, -1.0, 0.0], 0.18, 25, rng),
        ]
    )


MODELS = {"knot": knot, "clusters": clusters, "branch": branch, "ring_tail": ring_tail}


def write_models(out: Path, seed: int = 0) -> list[Path]:
    """Write every model as ``OUT/NAME.obj`` (scaled x37 and shifted, like a user's file)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (name, make) in enumerate(MODELS.items()):
        rng = np.random.default_rng(seed * 100 + k)
        pts = make(rng) * 37.0 + np.array([120.0, -40.0, 15.0])
        path = out / f"{name}.obj"
        path.write_text("".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in pts))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in write_models(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
