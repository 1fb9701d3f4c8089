"""The CUDA tier (`pytest -m gpu`): exact resume through the run folder on a GPU.

Skipped, with the reason, where there is no CUDA device; tools/run-tiers runs this tier only
when `nvidia-smi` works. The renderer and training on CUDA: tests/test_gpu.py.
"""

import json

import numpy as np
import pytest
import torch

from holly.cli import main
from holly.data.pointio import read_points
from holly.run.runfolder import RunFolder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

TINY = {
    "seed": 5,
    "device": "cuda",
    "data": {"shape": "helix", "particles": 64, "test_particles": 4, "augment": 1},
    "render": {"height": 32, "width": 32},
    "model": {"num_points": 24},
    "sigma": {"values": [3.0, 2.0]},
    "train": {"epochs": 2, "batch_size": 16, "log_every": 2, "checkpoint_every": 2},
}


def test_train_and_resume_exactly_on_cuda(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "--config-json", json.dumps(TINY), "--out", str(full)]) == 0
    cut = {**TINY, "train": {**TINY["train"], "max_steps": 4}}
    assert main(["train", "--config-json", json.dumps(cut), "--out", str(part)]) == 0
    assert main(["train", "--config-json", json.dumps(TINY), "--out", str(part), "--resume"]) == 0
    assert RunFolder(part).read_provenance()["resumed_from_step"] == 4
    assert "cuda" in RunFolder(full).read_provenance()["device"].lower()
    a, b = read_points(full / "points.ply"), read_points(part / "points.ply")
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5)  # cuDNN may not be bit-exact between runs
