"""The offline 3D viewer: data, self-containment, and a real headless browser drawing points."""

from __future__ import annotations

import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import body_errors, make_fake_run, viewer_states

from holly.cli import main as cli
from holly.data.pointio import read_points
from holly.errors import HollyError
from holly.results.figures import RECON_COLOUR, TRUTH_COLOUR
from holly.results.viewer import rigid_fit, viewer_data, viewer_page, write_viewer


def test_rigid_fit_recovers_mirrored_move():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag([1, 1, -1]) if np.linalg.det(q) > 0 else q  # a reflection
    t = np.array([0.3, -1.0, 2.0])
    fit_q, fit_t, rms = rigid_fit(src, src @ q + t)
    assert rms < 1e-10
    np.testing.assert_allclose(fit_q, q, atol=1e-10)
    np.testing.assert_allclose(fit_t, t, atol=1e-10)


def test_viewer_data_aligned_snapshots(fake_run):
    data = viewer_data(fake_run, max_snapshots=4)
    assert data["frame"] == "ground truth"
    assert len(data["snapshots"]) <= 4
    steps = [s["step"] for s in data["snapshots"]]
    assert steps == sorted(steps) and steps[-1] == 60 and steps[0] == 0  # 0: initial cloud
    # the last snapshot is the final cloud moved onto aligned_points.ply
    last = np.asarray(data["snapshots"][-1]["points"]).reshape(-1, 3)
    np.testing.assert_allclose(last, read_points(fake_run / "aligned_points.ply"), atol=2e-4)
    truth = np.asarray(data["truth"]).reshape(-1, 3)
    assert truth.shape == read_points(fake_run / "ground_truth.ply").shape


def test_viewer_data_unevaluated_and_real_data(tmp_path):
    run = make_fake_run(tmp_path / "raw", evaluated=False)
    data = viewer_data(run)
    assert data["frame"] == "training" and data["truth"] is not None
    assert len(data["snapshots"]) == 7  # initial cloud, 6 snapshots (the last is the final)
    real = make_fake_run(tmp_path / "real", simulated=False)
    assert viewer_data(real)["truth"] is None


def test_viewer_data_unfinished_run(tmp_path, fake_run):
    (fake_run / "points.ply").unlink()
    with pytest.raises(HollyError, match="not finished"):
        viewer_data(fake_run)


def test_page_is_self_contained(fake_run, tmp_path):
    data = viewer_data(fake_run)
    data["name"] = "</script><script>alert(1)</script>"
    page = viewer_page([data], "t")
    # no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "<link" not in page
    # the data block survives a hostile name and parses back
    block = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)
    assert json.loads(block.group(1))["name"] == data["name"]


def test_cli_viewer(fake_run, tmp_path, capsys):
    out = tmp_path / "v.html"
    assert cli(["viewer", str(fake_run), "--out", str(out), "--max-snapshots", "3"]) == 0
    assert out.read_text().count('class="holly-viewer"') == 1
    assert cli(["viewer", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


def _coloured_pixels(png, hex_colour: str, tol: float = 0.25) -> int:
    img = mpimg.imread(png)[..., :3]
    target = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    # depth shading blends the colour with white: accept any mix of the colour and white
    # whose hue matches, i.e. the pixel lies near the segment white -> colour
    d = target - 1.0
    s = np.clip(((img - 1.0) @ d) / (d @ d), 0.3, 1.0)
    dist = np.linalg.norm(img - (1.0 + s[..., None] * d), axis=-1)
    return int((dist < tol * 0.3).sum())


def _is_round(value: float) -> bool:
    """1, 2 or 5 times a power of ten (the scale bar's lengths)."""
    mantissa = value / 10 ** np.floor(np.log10(value))
    return any(np.isclose(mantissa, m) for m in (1, 2, 5))


def test_browser_draws_viewer(fake_run, tmp_path, browser):
    page = write_viewer(fake_run, tmp_path / "viewer.html")
    dom, console = browser.load(page)
    assert not [c for c in console if "Uncaught" in c or "rror" in c], console
    assert body_errors(dom) == 0
    (state,) = viewer_states(dom)
    n_truth = len(read_points(fake_run / "ground_truth.ply"))
    assert state["data-status"] == "ok"
    assert int(state["data-points-drawn"]) == 40 + n_truth
    # 16 px images: 1 model unit = 4 px; a round bar of 1, 2 or 5 x 10^k units
    m = re.fullmatch(r"([\d.]+) model units? \(([\d.]+) px\)", state["data-scale-bar"])
    assert m and _is_round(float(m.group(1))), state["data-scale-bar"]
    assert float(m.group(2)) == pytest.approx(4 * float(m.group(1)))
    shot = browser.screenshot(page, tmp_path / "shot.png")
    assert _coloured_pixels(shot, RECON_COLOUR) > 50
    assert _coloured_pixels(shot, TRUTH_COLOUR) > 50


def test_browser_scale_bar_in_nm_when_known(fake_run, tmp_path, browser):
    prov = json.loads((fake_run / "provenance.json").read_text())
    prov["scale"] = {"nm_per_px": 40.0, "nm_per_model_unit": 160.0, "from": "store.zarr"}
    (fake_run / "provenance.json").write_text(json.dumps(prov))
    assert viewer_data(fake_run)["units"] == {"model_unit_px": 4.0, "model_unit_nm": 160.0}
    dom, _ = browser.load(write_viewer(fake_run, tmp_path / "viewer.html"))
    (state,) = viewer_states(dom)
    assert state["data-status"] == "ok"
    m = re.fullmatch(r"([\d.]+) nm", state["data-scale-bar"])
    assert m and _is_round(float(m.group(1))), state["data-scale-bar"]
