"""holly localise --precision-blur: each localisation drawn with its own precision."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import holly.cli
from holly.data.imagestore import ImageStore
from holly.data.localisations import localise, render_particles
from holly.errors import HollyError
from holly.method.render import render_dense

SIZE = 32


def particles(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.4, (n, 2)).astype(np.float32) for n in (3, 30, 11)]


def test_own_widths_match_the_dense_reference_point_by_point():
    """Every localisation's Gaussian has its own width sqrt(level^2 + precision^2): the image
    is the sum of dense renders of single points at those widths."""
    pts = particles()
    rng = np.random.default_rng(1)
    precision = [rng.uniform(0.0, 3.0, len(p)) for p in pts]
    angles = rng.uniform(-np.pi, np.pi, (len(pts), 2))
    level = 1.3
    images = np.concatenate(list(render_particles(pts, angles, level, SIZE, "cpu", precision)))
    for k, image in enumerate(images):
        p, c = divmod(k, 2)
        a = angles[p, c]
        rot = torch.tensor(
            [[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0, 0, 1.0]]],
            dtype=torch.float64,
        )
        expected = torch.zeros(SIZE, SIZE, dtype=torch.float64)
        for xy, s in zip(pts[p], precision[p], strict=True):
            point = torch.tensor([[xy[0], xy[1], 0.0]], dtype=torch.float64)
            width = math.sqrt(level**2 + s**2)
            expected += render_dense(
                point, rot, torch.zeros(1, 2, dtype=torch.float64), width, SIZE, SIZE
            )[0]
        assert np.allclose(image, expected.numpy(), atol=1e-6), k


def test_zero_precision_is_the_plain_rendering():
    pts = particles()
    angles = np.random.default_rng(2).uniform(-np.pi, np.pi, (len(pts), 3))
    plain = np.concatenate(list(render_particles(pts, angles, 1.1, SIZE)))
    zero = [np.zeros(len(p)) for p in pts]
    blurred = np.concatenate(list(render_particles(pts, angles, 1.1, SIZE, "cpu", zero)))
    assert np.allclose(plain, blurred, atol=1e-6)


def write_table(path, precision_nm, column="uncertainty_xy [nm]"):
    rng = np.random.default_rng(3)
    frames = []
    for k in range(3):
        xy = rng.normal(0.0, 40.0, (25, 2)) + 1000.0 * k
        frame = pd.DataFrame({"frame": 1, "x [nm]": xy[:, 0], "y [nm]": xy[:, 1], "particle": k})
        if precision_nm is not None:
            frame[column] = precision_nm
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)


def test_store_with_uniform_precision_equals_the_plain_store_at_the_combined_width(tmp_path):
    """A precision p (nm) at level s gives the images the plain store has at
    sqrt(s^2 + (p / nm_per_px)^2): the unit conversion and the subsets (--max-points) line up."""
    write_table(tmp_path / "t.csv", 12.0)
    common = dict(size=SIZE, perturbations=2, particle_column="particle", max_points=20, seed=4)
    blurred = localise(
        tmp_path / "t.csv", tmp_path / "b.zarr", [0.8], precision_blur=True, **common
    )
    width = math.sqrt(0.8**2 + (12.0 / blurred.nm_per_px) ** 2)
    localise(tmp_path / "t.csv", tmp_path / "p.zarr", [width], **common)
    a = ImageStore.open(tmp_path / "b.zarr")
    b = ImageStore.open(tmp_path / "p.zarr")
    assert np.allclose(a.load_level(0.8), b.load_level(width), atol=1e-6)
    assert a.attrs["params"]["precision_blur"] is True
    assert b.attrs["params"]["precision_blur"] is False
    sums = a.load_level(0.8).sum(axis=(1, 2))
    assert np.allclose(sums, 20, rtol=0.02)  # every localisation still counts once


def test_refusals_name_the_file_and_the_way_out(tmp_path):
    write_table(tmp_path / "none.csv", None)
    with pytest.raises(
        HollyError,
        match=r"none\.csv: --precision-blur needs a localisation "
        r"precision column.*run without --precision-blur",
    ):
        localise(
            tmp_path / "none.csv",
            tmp_path / "s.zarr",
            [1.0],
            size=SIZE,
            particle_column="particle",
            precision_blur=True,
        )
    write_table(tmp_path / "nan.csv", np.nan)
    with pytest.raises(
        HollyError,
        match=r"nan\.csv: particle 0 has 25 localisation precisions "
        "that are not finite",
    ):
        localise(
            tmp_path / "nan.csv",
            tmp_path / "s.zarr",
            [1.0],
            size=SIZE,
            particle_column="particle",
            precision_blur=True,
        )
    assert not (tmp_path / "s.zarr").exists()


def test_cli_flag_and_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(holly.cli, "COMMANDS", {"localise": "localise"})
    write_table(tmp_path / "none.csv", None)
    argv = [
        "localise",
        str(tmp_path / "none.csv"),
        "--out",
        str(tmp_path / "s.zarr"),
        "--sigmas",
        "1",
        "--size",
        str(SIZE),
        "--particle-column",
        "particle",
        "--precision-blur",
    ]
    assert holly.cli.main(argv) == 2
    assert "--precision-blur needs a localisation precision column" in capsys.readouterr().err
    write_table(tmp_path / "t.csv", 5.0)
    argv[1] = str(tmp_path / "t.csv")
    assert holly.cli.main(argv) == 0
    assert ImageStore.open(tmp_path / "s.zarr").attrs["params"]["precision_blur"] is True
