"""Mixed precision, channels-last and torch.compile of the pose CNN agree with float32 eager.

Every tolerance here follows from the arithmetic, never from one CPU's measurement:

* **The first step** (same weights, same batch) is compared with the same step computed in
  float64. A path's error is its rounding error, so it is bounded by the unit roundoff ``u`` of
  the precision it runs in (float32 2^-24, bf16 2^-8, fp16 2^-11), times what the computation
  amplifies. The loss sums n = B·H·W pixel terms: rounding errors of independent terms grow
  like √n·u (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2). Where the
  amplification is large (the gradients: BatchNorm cancels the convolution weights' gradients
  down to a small remainder), the bound is the float32 eager path's own error against float64,
  measured in the same run, times a margin.
* **Later steps** are chaotic: Adam's first update is ±lr on every weight, and a rounding
  difference that flips one gradient's sign sets two runs apart for good. Those rows are
  compared statistically: the path's drift from the float32 run must look like the drift of
  float32 runs whose initial weights are perturbed at the path's unit roundoff (an ensemble of
  ``ENSEMBLE`` such runs, measured in the same run on the same CPU).

The margins were checked on AVX-512 (default) and AVX2 (``ATEN_CPU_CAPABILITY=avx2``) kernels,
with 1 and 2 threads: see the numbers at each constant. ``test_precision_holds_on_avx2_kernels``
(slow tier) re-runs this file on the AVX2 path with 2 threads.
"""

import copy
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from holly.config import from_dict
from holly.errors import HollyError
from holly.train.precision import StepPrecision
from holly.train.trainer import Trainer, train
from tests.test_train import TINY

CPU = torch.device("cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "bf16": 2.0**-8, "fp16": 2.0**-11}
# The thread count of every run in this file (the AVX2 re-run sets 2).
THREADS = int(os.environ.get("HOLLY_TEST_THREADS", "1"))
# Relative loss error of the first step against float64: √n·u for the float32 paths (measured
# 1.6e-7 eager/compiled, 4.0e-7 channels-last, against 7.6e-6 = √16384·2^-24, on both kernels).
# The low precisions round only inside the CNN, so their loss carries at most one rounding of
# the CNN's outputs: u_P (measured 0.15 u bf16, 0.21 u fp16).
# Gradient error of a float32 path against float64, as a multiple of the eager path's own
# (measured 2.7x compiled, 2.3x channels-last; eager's own is ~2.6e-4, BatchNorm's cancellation).
GRADIENT_MARGIN = 8.0
# Drift of later rows: at most DRIFT_MARGIN times the largest drift in the perturbed ensemble.
# Measured over 8 draws (AVX-512 1 thread / AVX2 2 threads): the ensembles' RMS drifts span ~2x
# (fp32 0.011-0.022 / 0.010-0.021, bf16 0.023-0.044 / 0.026-0.050, fp16 0.021-0.047 /
# 0.028-0.047), and each path's drift lay inside its ensemble's range (compiled 0.016 / 0.011,
# channels-last 0.020 / 0.020, bf16 0.040 / 0.046, fp16 0.043 / 0.043).
DRIFT_MARGIN = 2.0
ENSEMBLE = 4


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _config(**train_keys) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["train"].update(threads=THREADS, **train_keys)
    return cfg


def first_step(tmp_path, dtype=torch.float32, **train_keys):
    """Loss and flattened gradient of training step 0, from the untrained model."""
    trainer = Trainer(from_dict(_config(**train_keys)), tmp_path, CPU)
    trainer.model.to(dtype)
    sigma = trainer.amortised.plan.schedule.sigma_at(0)
    images = trainer.data.train.images(trainer.amortised.plan.batch_indices(0), sigma).to(dtype)
    trainer.model.train()
    loss = trainer.amortised.cnn.loss_on(images, sigma)[0]
    loss.backward()
    grads = [p.grad.flatten().double() for p in trainer.model.parameters() if p.grad is not None]
    pixels = images.numel()
    return float(loss.detach()), torch.cat(grads), pixels


@pytest.fixture(scope="module")
def float64_step(tmp_path_factory):
    """The first step in float64 (the reference) and float32 eager (the error scale)."""
    torch.set_num_threads(THREADS)
    base = tmp_path_factory.mktemp("first")
    loss64, grad64, pixels = first_step(base / "f64", torch.float64)
    loss32, grad32, _ = first_step(base / "f32")
    eager_grad_error = float((grad32 - grad64).norm() / grad64.norm())
    return {"loss": loss64, "grad": grad64, "pixels": pixels, "eager": (loss32, eager_grad_error)}


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_float32_first_step_is_within_rounding_of_float64(float64_step):
    loss32, grad_error = float64_step["eager"]
    bound = np.sqrt(float64_step["pixels"]) * UNIT_ROUNDOFF["fp32"]
    assert _relative(loss32, float64_step["loss"]) < bound
    assert grad_error < 1e-2  # amplified (BatchNorm), but far from float32's 1 part in 100


def _check_float32_path(tmp_path, ref, **train_keys):
    loss, grad, _ = first_step(tmp_path, **train_keys)
    bound = np.sqrt(ref["pixels"]) * UNIT_ROUNDOFF["fp32"]
    assert _relative(loss, ref["loss"]) < bound
    grad_error = float((grad - ref["grad"]).norm() / ref["grad"].norm())
    assert grad_error < GRADIENT_MARGIN * ref["eager"][1], (grad_error, ref["eager"][1])


def test_channels_last_first_step_is_within_rounding_of_float64(tmp_path, float64_step):
    _check_float32_path(tmp_path, float64_step, channels_last=True)


@pytest.mark.slow
def test_compiled_first_step_is_within_rounding_of_float64(tmp_path, float64_step):
    _check_float32_path(tmp_path, float64_step, compile=True)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_first_loss_is_within_one_rounding(tmp_path, float64_step, precision):
    loss, grad, _ = first_step(tmp_path, precision=precision)
    assert _relative(loss, float64_step["loss"]) < UNIT_ROUNDOFF[precision]
    # The gradients themselves are not compared: BatchNorm leaves the convolution weights a
    # gradient that is a small remainder of large terms, and bf16/fp16 products lose it to
    # cancellation (relative errors near 1 against float64), whatever the kernel.


def _train_run(out, perturb: float = 0.0, perturb_seed: int = 0, **train_keys) -> np.ndarray:
    """Train the tiny run; return its ``[rows, 2]`` train and held-out losses.

    ``perturb``: multiply every initial weight by ``1 + perturb * U(-1, 1)`` (seeded): a
    rounding-sized nudge that starts the chaotic drift a precision change starts.
    """
    cfg = from_dict(_config(**train_keys))
    if perturb:
        trainer_init = Trainer.__init__

        def nudged(self, *args, **kwargs):
            trainer_init(self, *args, **kwargs)
            gen = torch.Generator().manual_seed(perturb_seed)
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(1 + perturb * (2 * torch.rand(p.shape, generator=gen) - 1))

        Trainer.__init__ = nudged
    try:
        train(cfg, out)
    finally:
        if perturb:
            Trainer.__init__ = trainer_init
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return np.array([[float(r["train_loss"]), float(r["test_loss"])] for r in rows])


def _drift(run: np.ndarray, ref: np.ndarray) -> float:
    """RMS relative difference of both losses over all rows (every row follows an update)."""
    return float(np.sqrt(np.mean(((run - ref) / ref) ** 2)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The float32 eager run, and the largest drift of each precision's perturbed ensemble."""
    torch.set_num_threads(THREADS)
    base = tmp_path_factory.mktemp("precision")
    ref = _train_run(base / "fp32")
    cache = {}

    def ensemble_drift(precision: str) -> float:
        if precision not in cache:
            u = UNIT_ROUNDOFF[precision]
            runs = [
                _train_run(base / f"{precision}-nudged-{s}", perturb=u, perturb_seed=s)
                for s in range(ENSEMBLE)
            ]
            cache[precision] = max(_drift(r, ref) for r in runs)
        return cache[precision]

    return ref, ensemble_drift


def _check_drift(tmp_path, reference, precision="fp32", **train_keys) -> np.ndarray:
    ref, ensemble_drift = reference
    run = _train_run(tmp_path / "run", precision=precision, **train_keys)
    assert np.all(np.isfinite(run))
    drift, bound = _drift(run, ref), DRIFT_MARGIN * ensemble_drift(precision)
    assert drift < bound, f"drift {drift:.4f} against {bound:.4f} from rounding-sized nudges"
    return run


# What the bf16 guard (holly.train.precision.FiniteGradients) says when a kernel returns a NaN
# gradient.
DEFECT = "non-finite gradients in"


def _rerun_on_avx2_onednn(test_id: str) -> None:
    """Run one test of this file again in a process whose oneDNN is capped at AVX2.

    oneDNN reads ONEDNN_MAX_CPU_ISA once, when it starts, so the cap needs a new process.
    """
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{test_id}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_training_drifts_like_rounding(tmp_path, reference, precision):
    try:
        run = _check_drift(tmp_path, reference, precision)
    except HollyError as err:
        # oneDNN's AVX-512 bf16 kernels return NaN weight gradients for the 1x1-pixel feature
        # maps of 32-px images on some CPUs (Intel with AMX, seen 2026-12). holly must stop
        # there with its clear error, and the same training on AVX2 kernels (the error's
        # remedy) must then drift like rounding, as it does on every other CPU.
        assert precision == "bf16" and DEFECT in str(err), err
        if os.environ.get("ONEDNN_MAX_CPU_ISA"):
            raise  # already capped: the defect is not the kernels' one
        _rerun_on_avx2_onednn(f"test_low_precision_training_drifts_like_rounding[{precision}]")
        return
    assert run[2, 0] < 0.9 * run[0, 0]  # and it learns (rows 0-2: the first sigma, 4 px)
    if precision == "fp16":
        state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
        assert state["grad_scaler"]["scale"] > 0  # the scaler's state is checkpointed


def test_channels_last_training_drifts_like_rounding(tmp_path, reference):
    _check_drift(tmp_path, reference, channels_last=True)


@pytest.mark.slow
def test_compiled_training_drifts_like_rounding(tmp_path, reference):
    _check_drift(tmp_path, reference, compile=True)


def test_channels_last_lays_out_the_encoder_and_keeps_its_outputs(tmp_path):
    trainer = Trainer(from_dict(_config()), tmp_path, CPU)
    model = trainer.model.eval()
    images = trainer.data.train.images(trainer.amortised.plan.batch_indices(0), 2.0)
    with torch.no_grad():
        ref = model(images, 2.0).hypotheses
        exact = copy.deepcopy(model).double()(images.double(), 2.0).hypotheses
    StepPrecision("fp32", CPU, channels_last=True).prepare(model)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = next(m for m in convs if m.in_channels > 1)  # one channel: both layouts agree
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    with torch.no_grad():
        nhwc = model(images, 2.0).hypotheses
    # the same float32 arithmetic summed in another order: as far from float64 as the
    # original layout is, up to the margin the gradients use (rotation entries lie in [-1, 1])
    eager_error = float((ref.double() - exact).abs().max())
    assert float((nhwc.double() - exact).abs().max()) < GRADIENT_MARGIN * max(
        eager_error, UNIT_ROUNDOFF["fp32"]
    )


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        StepPrecision("fp8", CPU)


def test_bf16_step_with_a_non_finite_gradient_stops_before_the_update(tmp_path):
    """The bf16 guard: a NaN gradient stops the step, names the parameter, keeps the weights."""
    trainer = Trainer(from_dict(_config(precision="bf16")), tmp_path, CPU)
    weight = trainer.model.encoder.convs[0].weight
    before = weight.detach().clone()
    weight.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(HollyError, match=rf"{DEFECT} encoder\.convs\.0\.weight .*ONEDNN_MAX"):
        trainer.train_step(0)
    assert torch.equal(weight.detach(), before)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_precision_holds_on_avx2_kernels():
    """This file again on ATen's AVX2 kernels with 2 threads: the other instruction path."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", HOLLY_TEST_THREADS="2")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not gpu"]
    cmd += [__file__, "-k", "not avx2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
