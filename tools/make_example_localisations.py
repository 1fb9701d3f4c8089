"""Write config/examples/data/cep152_locs.csv: a tiny ThunderSTORM-style localisation table.

Simulated STORM particles of holly's built-in ``cep152`` shape (a 9-fold barrel with a ring):
each particle is the shape in a random 3D orientation, projected onto the camera plane, with
every fluorophore localised a few times (blinking) with ~6 nm precision and 15 % of the
fluorophores unlabelled; particles sit at scattered positions in a 40 um field. One model unit
of the shape is 80 nm. Columns and units as ThunderSTORM writes them, plus a ``particle``
column (the pick each localisation belongs to). Run from the repository root:

    python tools/make_example_localisations.py
"""

from pathlib import Path

import numpy as np

from holly.data.shapes import builtin_shape

OUT = Path("config/examples/data/cep152_locs.csv")
PARTICLES, LOCS_PER_PARTICLE, NM_PER_UNIT = 36, 96, 80.0


def random_rotation(rng):
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def main():
    rng = np.random.default_rng(0)
    shape = builtin_shape("cep152")
    rows = []
    for k in range(PARTICLES):
        labelled = shape[rng.random(len(shape)) > 0.15]
        xy = (labelled @ random_rotation(rng).T)[:, :2] * NM_PER_UNIT
        picks = xy[rng.integers(0, len(xy), LOCS_PER_PARTICLE)]
        picks = picks + rng.normal(0.0, 6.0, picks.shape) + rng.uniform(2000, 38000, 2)
        for x, y in picks:
            rows.append((rng.integers(1, 5000), x, y, k))
    rows.sort(key=lambda r: r[0])  # by frame, as a localisation table is
    lines = ['"id","frame","x [nm]","y [nm]","uncertainty [nm]","particle"']
    lines += [f"{i + 1},{f},{x:.1f},{y:.1f},6.0,{k}" for i, (f, x, y, k) in enumerate(rows)]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(rows)} localisations, {PARTICLES} particles")


if __name__ == "__main__":
    main()
