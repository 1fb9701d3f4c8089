"""render.data_blur: the images' own blur (localisation precision) added wherever the cloud is
rendered, and `holly localise` recording the precision that `render.data_blur: store` reads."""

import numpy as np
import pandas as pd
import pytest
import torch

from holly.config import from_dict
from holly.data.datasets import resolve_data_blur
from holly.data.imagestore import ImageStore
from holly.data.localisations import localise
from holly.errors import HollyError
from holly.method import refine
from holly.method.loss import hypothesis_losses
from holly.method.model import HollyModel
from holly.method.render import SIGMA_FLOOR, render, total_blur

SIZE = 32


def test_total_blur_adds_the_data_blur_in_quadrature_above_the_floor():
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    assert torch.equal(total_blur(sigma, 0.0), sigma.clamp_min(SIGMA_FLOOR))
    expected = torch.sqrt(sigma.clamp_min(SIGMA_FLOOR) ** 2 + 4.0**2)
    assert torch.allclose(total_blur(sigma, 4.0), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="store"):
        total_blur(sigma, "store")


def small_config(data_blur):
    return from_dict(
        {
            "render": {"height": SIZE, "width": SIZE, "data_blur": data_blur},
            "model": {"num_points": 12, "pose_hypotheses": 2},
        }
    )


def test_the_model_renders_its_hypotheses_at_the_total_blur():
    torch.manual_seed(0)
    model = HollyModel(small_config(2.5)).double().eval()
    images = torch.rand(3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        pred = model(images, 1.0)
        hyps, trans, sigma, out = pred.hypotheses, pred.translations, pred.sigma, pred.images
        b, k = hyps.shape[:2]
        expected = render(
            model.points,
            hyps.reshape(b * k, 3, 3),
            trans.repeat_interleave(k, 0),
            torch.sqrt(sigma.clamp_min(SIGMA_FLOOR) ** 2 + 2.5**2).repeat_interleave(k, 0),
            SIZE,
            SIZE,
            order=model.cfg.render.order,
        ).reshape(b, k, SIZE, SIZE)
        plain = HollyModel(small_config(0.0)).double().eval()
        plain.load_state_dict(model.state_dict())
        sharp = plain(images, 1.0).images
    assert torch.allclose(out, expected, atol=1e-12)
    assert not torch.allclose(out, sharp, atol=1e-6)  # the data blur does change the rendering


def test_refinement_scores_poses_at_the_total_blur():
    torch.manual_seed(1)
    points = torch.rand(10, 3, dtype=torch.float64) - 0.5
    rotations = torch.linalg.qr(torch.randn(4, 3, 3, dtype=torch.float64))[0]
    shifts = torch.zeros(4, 2, dtype=torch.float64)
    sigma = torch.full((4,), 1.0, dtype=torch.float64)
    target = refine.normalised(torch.rand(4, SIZE, SIZE, dtype=torch.float64))
    spec = refine.RenderSpec(SIZE, SIZE, "l1", 0.0, data_blur=3.0)
    wide = render(
        points, rotations, shifts, torch.full((4,), 10.0**0.5), SIZE, SIZE, order="latest"
    )
    expected = hypothesis_losses(wide[:, None], target, "image", "l1", 0.0)[:, 0]
    assert torch.allclose(
        refine.pose_losses(points, rotations, shifts, sigma, target, spec), expected
    )
    sharp = refine.RenderSpec(SIZE, SIZE, "l1", 0.0)
    assert not torch.allclose(
        refine.pose_losses(points, rotations, shifts, sigma, target, sharp), expected
    )


def write_table(path, precision_nm=None):
    """Three particles of 60 localisations each, ThunderSTORM columns, nm."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(3):
        xy = rng.normal(0.0, 40.0, (60, 2)) + 1000.0 * (k + 1)
        frame = pd.DataFrame({"x [nm]": xy[:, 0], "y [nm]": xy[:, 1], "particle": k})
        if precision_nm is not None:
            frame["uncertainty_xy [nm]"] = precision_nm * (1 + 0.1 * rng.standard_normal(60))
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)


def localised(tmp_path, name, precision_nm=None):
    """The store `holly localise` makes of :func:`write_table`'s particles."""
    write_table(tmp_path / f"{name}.csv", precision_nm)
    store = tmp_path / f"{name}.zarr"
    localise(
        tmp_path / f"{name}.csv",
        store,
        [1.0],
        size=SIZE,
        perturbations=2,
        particle_column="particle",
    )
    return ImageStore.open(store)


def store_config(store, mode="store"):
    return from_dict(
        {"data": {"source": "zarr", "store": str(store.path)}, "render": {"data_blur": mode}}
    )


def test_localise_records_the_median_precision_in_pixels(tmp_path):
    store = localised(tmp_path, "p", precision_nm=8.0)
    sigma_xy = pd.read_csv(tmp_path / "p.csv")["uncertainty_xy [nm]"].to_numpy()
    assert store.attrs["precision"]["median_nm"] == pytest.approx(np.median(sigma_xy))
    assert store.precision_px == pytest.approx(np.median(sigma_xy) / store.nm_per_px)
    assert localised(tmp_path, "q").precision_px is None  # no precision column


def test_data_blur_store_resolves_to_the_recorded_precision(tmp_path):
    store = localised(tmp_path, "p", precision_nm=8.0)
    resolved = resolve_data_blur(store_config(store))
    assert resolved.render.data_blur == pytest.approx(store.precision_px)
    assert resolve_data_blur(resolved) is resolved  # a number stays as given
    bare = store_config(localised(tmp_path, "q"))
    with pytest.raises(HollyError, match="q.zarr records no localisation precision"):
        resolve_data_blur(bare)
    with pytest.raises(HollyError, match="data.source is not 'zarr'"):
        resolve_data_blur(from_dict({"render": {"data_blur": "store"}}))


def test_data_blur_auto_is_the_recorded_precision_or_none(tmp_path):
    """The default: a store's recorded precision, 0 for a store without one and for holly's
    own renders (already in the parsed config, so their resolved configs stay as they were)."""
    assert from_dict({}).render.data_blur == 0.0  # data.source simulated
    store = localised(tmp_path, "p", precision_nm=8.0)
    on_store = store_config(store, "auto")
    assert on_store.render.data_blur == "auto"  # resolved when training starts
    assert resolve_data_blur(on_store).render.data_blur == pytest.approx(store.precision_px)
    bare = resolve_data_blur(store_config(localised(tmp_path, "q"), "auto"))
    assert bare.render.data_blur == 0.0


@pytest.mark.parametrize("value", ["sometimes", -1.0, True])
def test_data_blur_refuses_what_it_cannot_use(value):
    with pytest.raises(HollyError, match="render.data_blur"):
        from_dict({"render": {"data_blur": value}})
