"""What Chamfer / blob a cloud scores when its points sit on the true sites, scattered.

Reads the robustness table (README, "Robustness") against a known yardstick: each shape's
simulated sites (the ones `holly simulate-localisations` labels), ``n`` of them drawn (with
replacement where a shape has fewer sites than points) and moved by isotropic 3D Gaussian noise
of a given share of the structure's size, scored exactly as `holly evaluate` scores a run
(aligned with the mirror allowed, Chamfer divided by the Chamfer of the moment-matched blob).
A reconstruction from data of localisation precision ``p`` that scores like the scatter ``p``
row has its points as loose as single localisations; averaging over particles should do better.

    python tools/scatter_floor.py [--points 150] [--repeats 5] [--shapes cep152 tetrapod ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from holly.data.locsim import structure_nm
from holly.results.evaluate import chamfer_ratio_to_blob
from holly.results.robustness import SHAPES

SCATTER = (0.025, 0.05, 0.075, 0.10, 0.15)  # of the structure's size (diameter)


def scatter_ratio(sites: np.ndarray, scatter: float, n: int, seed: int) -> float:
    """Chamfer / blob of ``n`` sites (drawn from ``sites``) moved by N(0, scatter^2) per axis."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(sites), n, replace=n > len(sites))
    cloud = sites[pick] + rng.normal(0.0, scatter, (n, 3))
    return chamfer_ratio_to_blob(cloud, sites, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=[*SHAPES, "pore"])
    parser.add_argument("--points", type=int, default=150, help="cloud size (the default's)")
    parser.add_argument("--repeats", type=int, default=5, help="seeds averaged per entry")
    args = parser.parse_args()
    print("| shape | " + " | ".join(f"scatter {100 * s:g} %" for s in SCATTER) + " |")
    print("|---|" + "---|" * len(SCATTER))
    for shape in args.shapes:
        sites, size = structure_nm(shape, None)
        means = [
            np.mean([scatter_ratio(sites, s * size, args.points, k) for k in range(args.repeats)])
            for s in SCATTER
        ]
        print(f"| {shape} | " + " | ".join(f"{m:.2f}" for m in means) + " |")


if __name__ == "__main__":
    main()
