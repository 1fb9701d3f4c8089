"""Point files, single-image rendering and the benchmark command."""

import numpy as np
import pytest

from holly.cli import main
from holly.data.imageio import read_fits
from holly.data.pointio import read_points, write_points
from holly.errors import HollyError


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".csv"])
def test_point_files_round_trip(tmp_path, suffix):
    xyz = np.random.default_rng(0).normal(size=(37, 3))
    path = tmp_path / f"p{suffix}"
    write_points(path, xyz)
    assert np.allclose(read_points(path), xyz, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_reads_ascii_ply_and_obj_with_faces(tmp_path):
    ply = tmp_path / "a.ply"
    ply.write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
        "end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    )
    assert read_points(ply).shape == (3, 3)
    obj = tmp_path / "a.obj"
    obj.write_text("o thing\nv 1 2 3\nvn 0 0 1\nv 4 5 6\nf 1 2 1\n")
    assert np.array_equal(read_points(obj), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    "content,message",
    [
        ("v 1 2\n", "vertex line needs x y z"),
        ("# nothing\n", "contains no vertices"),
        ("v 1 nan 3\n", "NaN"),
    ],
)
def test_bad_point_files(tmp_path, content, message):
    path = tmp_path / "bad.obj"
    path.write_text(content)
    with pytest.raises(HollyError, match=message):
        read_points(path)


def test_unknown_suffix_and_missing(tmp_path):
    with pytest.raises(HollyError, match="unknown point file type"):
        read_points(__file__)
    with pytest.raises(HollyError, match="does not exist"):
        read_points(tmp_path / "x.ply")


def test_render_command_png_and_fits(tmp_path):
    pts = tmp_path / "p.csv"
    write_points(pts, [[0.0, 1.0, 0.0]])
    assert (
        main(
            [
                "render",
                str(pts),
                "--out",
                str(tmp_path / "a.fits"),
                "--size",
                "32",
                "48",
                "--sigma",
                "1.0",
            ]
        )
        == 0
    )
    img = read_fits(tmp_path / "a.fits")
    assert img.shape == (32, 48)
    row, col = divmod(int(img.argmax()), 48)
    assert (row, col) == (16 - 8, 24)  # +y is up: the point lands in the upper half
    assert main(["render", str(pts), "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 100


def test_render_command_errors(tmp_path, capsys):
    pts = tmp_path / "p.csv"
    write_points(pts, [[0.0, 0.0, 0.0]])
    assert main(["render", str(pts), "--out", str(tmp_path / "a.jpg")]) == 2
    assert "unknown image type" in capsys.readouterr().err
    assert main(["render", str(pts), "--out", str(tmp_path / "b.png"), "--sigma", "0"]) == 2
    assert not (tmp_path / "b.png").exists()


def test_bench_command_prints_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--batch",
                "2",
                "--points",
                "8",
                "--size",
                "16",
                "--repeats",
                "1",
                "--dense-repeats",
                "1",
                "--device",
                "cpu",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "ratio" in text and "training step" in text
    import json

    data = json.loads(out.read_text())
    assert data["renderer"]["ratio"] > 0 and data["training_step"]["fast"]["best_images_per_s"] > 0


def test_written_files_get_normal_permissions(tmp_path):
    """Atomic writes go through a private temp file; the result must still be shareable."""
    import os

    mask = os.umask(0o022)
    try:
        write_points(tmp_path / "p.ply", [[0.0, 0.0, 0.0]])
    finally:
        os.umask(mask)
    assert (tmp_path / "p.ply").stat().st_mode & 0o777 == 0o644


def test_ply_comments_round_trip_and_other_readers_see_them(tmp_path):
    from plyfile import PlyData

    from holly.data.pointio import read_ply_comments

    path = tmp_path / "p.ply"
    meta = {"holly": "0.1.0", "units": "model units (1 unit = 16 px)", "step": 200}
    write_points(path, np.zeros((3, 3)), comment="free text", meta=meta)
    assert read_ply_comments(path) == {"holly": "0.1.0", "units": meta["units"], "step": "200"}
    assert PlyData.read(str(path)).comments[0] == "free text"
    write_points(tmp_path / "p.obj", np.zeros((3, 3)), meta=meta)
    assert "# step: 200\n" in (tmp_path / "p.obj").read_text()
    with pytest.raises(HollyError, match="single lines"):
        write_points(path, np.zeros((1, 3)), meta={"units": "a\nb"})
