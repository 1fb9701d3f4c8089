"""What edge spread the shared tetrahedra themselves allow (README, "Real-data experiments").

Aligns every particle's localisations onto one reference tetrahedron with its own ground-truth
model file (Kabsch over the vertex matching that fits best), pools them, and runs holly's
tetrahedron check (holly/results/structure.py) on the pool and on random subsets of the size of
a reconstruction. The pool shows the data's own shape and scatter; the subsets show the spread
that k-means on that few points measures from a perfect shape (the measurement's floor).

    python tools/tetrahedra_data_limit.py [../shared/realdata/particles/tetrahedron_simulated]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from holly.method.align import kabsch
from holly.results.structure import tetrahedron

MATCHINGS = [list(p) for p in itertools.permutations(range(4))]


def aligned_pool(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All localisations in one frame ``[L, 3]``, the reference vertices, their sigma_xy."""
    ref, pooled, sigma = None, [], []
    for path in sorted((folder / "aniso").glob("smlm_sample*.csv")):
        k = path.stem.removeprefix("smlm_sample")
        model = pd.read_csv(folder / "model" / f"model_structure_{k}.csv").to_numpy()[:, :3]
        locs = pd.read_csv(path)
        if ref is None:
            ref = model - model.mean(0)
        rot, shift = kabsch(model[MATCHINGS], np.broadcast_to(ref, (24, 4, 3)))
        moved = model[MATCHINGS] @ np.swapaxes(rot, 1, 2) + shift[:, None]
        best = np.argmin(((moved - ref) ** 2).sum((1, 2)))
        pooled.append(locs[["x", "y", "z"]].to_numpy() @ rot[best].T + shift[best])
        sigma.append(locs["sigma_xy"].to_numpy())
    return np.concatenate(pooled), ref, np.concatenate(sigma)


def main(folder: Path) -> None:
    pool, ref, sigma = aligned_pool(folder)
    nearest = np.linalg.norm(pool[:, None] - ref[None], axis=2)
    resid = pool - ref[nearest.argmin(1)]
    print(f"{len(pool)} localisations, median sigma_xy {np.median(sigma):.4f}")
    print(f"per-axis sd about the true vertex: {np.round(resid.std(0), 4)}")
    whole = tetrahedron(pool, precision=float(np.median(sigma)))
    keys = ("edge_spread", "compactness", "cluster_sd", "cluster_sd_over_precision")
    print("all localisations:", {k: round(whole[k], 4) for k in keys})
    rng = np.random.default_rng(0)
    for n in (100, 150, 300, 600, 1000):
        spread = [
            tetrahedron(pool[rng.choice(len(pool), n, replace=False)], seed=i)["edge_spread"]
            for i in range(50)
        ]
        p10, p50, p90 = np.percentile(spread, [10, 50, 90])
        band = f"10-90 %: {p10:.3f}-{p90:.3f}"
        print(f"{n:5d} random localisations: spread median {p50:.3f} ({band})")


if __name__ == "__main__":
    default = Path("../shared/realdata/particles/tetrahedron_simulated")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
