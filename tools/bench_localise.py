"""Print `holly localise` throughput at ~500 localisations per particle: before/after.

"before" = 128 MiB render batches, rendering and store writing one after the other (as
localise was); "after" = 32 MiB batches, rendering in a background thread while the store
writer compresses (the defaults now). Same images either way (checked). A printout, not a
test: the ratio varies with the machine's load. Run from the repository root:

    OMP_NUM_THREADS=1 python tools/bench_localise.py [--reps 3] [--particles 30] [--size 128]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import holly.data.localisations as loc
from holly.data.imagestore import ImageStore

SIGMAS = [10.0, 8.0, 6.4, 5.0, 4.0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--particles", type=int, default=30)
    ap.add_argument("--locs", type=int, default=500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--perturbations", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    frames = []
    for k in range(a.particles):
        t = rng.uniform(0, 2 * np.pi, a.locs)
        xy = np.stack([120 * np.cos(t), 80 * np.sin(t)], 1) + rng.normal(0, 8, (a.locs, 2))
        xy += rng.uniform(0, 1e4, 2)
        frames.append(pd.DataFrame({"x [nm]": xy[:, 0], "y [nm]": xy[:, 1], "particle": k}))
    pd.concat(frames).to_csv(tmp / "t.csv", index=False)

    def run(budget, prefetch, name):
        loc.RENDER_BUDGET_BYTES = budget
        t0 = time.perf_counter()
        r = loc.localise(
            tmp / "t.csv",
            tmp / name,
            SIGMAS,
            size=a.size,
            perturbations=a.perturbations,
            particle_column="particle",
            overwrite=True,
            prefetch=prefetch,
        )
        return r.n_images * len(SIGMAS) / (time.perf_counter() - t0)

    print(
        f"{a.particles} particles x {a.locs} localisations x {a.perturbations} copies x "
        f"{len(SIGMAS)} levels, {a.size} px, 1 torch thread"
    )
    ratios = []
    for rep in range(a.reps):
        before = run(128 * 2**20, False, "before.zarr")
        after = run(32 * 2**20, True, "after.zarr")
        ratios.append(after / before)
        print(
            f"rep {rep}: before {before:.0f} images/s, after {after:.0f} images/s,"
            f" x{after / before:.2f}"
        )
    same = np.array_equal(
        ImageStore.open(tmp / "before.zarr").load_level(4.0),
        ImageStore.open(tmp / "after.zarr").load_level(4.0),
    )
    print(f"ratio range x{min(ratios):.2f}-x{max(ratios):.2f}; identical images: {same}")


if __name__ == "__main__":
    main()
