"""The CUDA tier (``pytest -m gpu``): renderer against the dense reference on the GPU, forward and
gradients, and a tiny training run with data simulated on the device. Skipped without CUDA."""

import copy

import numpy as np
import pytest
import torch

from holly.config import from_dict
from holly.method.render import render, render_dense
from holly.train.trainer import Trainer, train
from tests.test_render import banded_scene, scene
from tests.test_train import TINY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device available"),
]
CUDA = torch.device("cuda")


@pytest.mark.parametrize("make_scene", [scene, banded_scene])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_renderer_matches_dense_reference(make_scene, dtype):
    args = make_scene(3, 40) if make_scene is scene else make_scene()
    args = [t.to(CUDA, dtype) for t in args]
    mask = torch.rand(args[0].shape[0], generator=torch.Generator().manual_seed(4)) > 0.3
    mask = mask.to(CUDA, dtype)
    weights = torch.rand(3, 64, 80, dtype=dtype, generator=torch.Generator().manual_seed(1))
    weights = weights.to(CUDA)
    results = []
    for fn in (render, render_dense):
        inputs = [t.clone().requires_grad_() for t in args]
        img = fn(*inputs, 64, 80, mask=mask)
        (img * weights).sum().backward()
        results.append((img.detach(), [t.grad for t in inputs]))
    (fast, fast_grads), (dense, dense_grads) = results
    assert fast.device.type == "cuda"
    rtol, atol = (1e-6, 1e-12) if dtype == torch.float64 else (2e-4, 1e-6)
    assert torch.allclose(fast, dense, rtol=rtol, atol=atol * float(dense.abs().max()))
    for f, d in zip(fast_grads, dense_grads, strict=True):
        assert torch.allclose(f, d, rtol=rtol, atol=atol * float(d.abs().max()) + 1e-10)


def test_cuda_banded_path_matches_full():
    args = [t.to(CUDA, torch.float32) for t in banded_scene()]
    assert torch.equal(render(*args, 64, 80, banded=True), render(*args, 64, 80, banded=False))


def test_cuda_tiny_training_run(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["device"] = "cuda"
    trainer = Trainer(from_dict(cfg), tmp_path / "probe", CUDA)
    images = trainer.data.train.images(torch.arange(4), 2.0)
    assert images.device.type == "cuda"  # simulated data is rendered on the device
    out = train(from_dict(cfg), tmp_path / "run")
    metrics = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    assert np.all(np.isfinite(metrics["test_loss"]))
    assert metrics["test_loss"][-1] < metrics["test_loss"][0]
    assert (out / "points.ply").is_file()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_run(tmp_path, precision):
    cfg = copy.deepcopy(TINY)
    cfg["device"] = "cuda"
    cfg["train"]["precision"] = precision
    out = train(from_dict(cfg), tmp_path / precision)
    metrics = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    assert np.all(np.isfinite(metrics["train_loss"]))
