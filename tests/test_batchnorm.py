"""BatchNorm statistics recomputed at the current weights before the CNN is evaluated."""

import copy

import torch

from holly.config import from_dict
from holly.method.model import HollyModel
from holly.train.calibration import CALIBRATION_BATCHES
from holly.train.trainer import Trainer
from tests.test_train import TINY


def _model(seed=0):
    return HollyModel(from_dict(TINY), torch.Generator().manual_seed(seed))


def _batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_recalibrated_statistics_are_those_of_the_batch():
    model = _model()
    x = torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        want = reference.encoder(x)  # normalised by the batch's own statistics
        features = model.encoder.convs[0](x[:, None])  # what the first BatchNorm sees
    model.train()
    model.recalibrate_batchnorm([x])
    assert model.training  # the mode and the momentum are as they were
    assert all(m.momentum == 0.1 for m in _batchnorms(model))
    first = _batchnorms(model)[0]
    torch.testing.assert_close(first.running_mean, features.mean((0, 2, 3)))
    torch.testing.assert_close(first.running_var, features.var((0, 2, 3), unbiased=True))
    model.eval()
    with torch.no_grad():
        got = model.encoder(x)
        far = reference.eval().encoder(x)  # running averages after one batch: far off
    # not equal: eval mode divides by the unbiased variance, which differs from the batch's
    # biased one by n / (n - 1), with n only 16 where this 32 px encoder is 1 x 1
    assert (far - want).abs().max() > 5 * (got - want).abs().max()


def test_recalibration_forgets_the_earlier_statistics():
    batches = [torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(s)) for s in (2, 3)]
    clean, dirty = _model(), _model()
    for m in _batchnorms(dirty):
        m.running_mean.fill_(5.0)
        m.running_var.fill_(0.01)
        m.num_batches_tracked.fill_(1000)
    clean.recalibrate_batchnorm(batches)
    dirty.recalibrate_batchnorm(batches)
    for a, b in zip(clean.state_dict().values(), dirty.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the cumulative average of both batches, not an exponential one weighted to the last
    only_last = _model()
    only_last.recalibrate_batchnorm(batches[1:])
    first = _batchnorms(clean)[0].running_mean
    assert not torch.allclose(first, _batchnorms(only_last)[0].running_mean)


def _trained(tmp_path, steps=6):
    trainer = Trainer(from_dict(TINY), tmp_path / "run", torch.device("cpu"))
    for step in range(steps):
        trainer.train_step(step)
    return trainer


def test_held_out_loss_and_poses_do_not_depend_on_the_running_averages(tmp_path):
    trainer = _trained(tmp_path)
    assert len(trainer.amortised.calibration.recent_inputs) == CALIBRATION_BATCHES
    sigma = trainer.amortised.plan.schedule.sigma_at(5)
    images = trainer.data.test.images(trainer.amortised.evaluation.test_idx, sigma)
    loss, poses = (
        trainer.amortised.evaluation.test_loss(sigma),
        trainer.amortised.evaluation.hypotheses(images, sigma),
    )
    for m in _batchnorms(trainer.model):  # what a lagging exponential average can look like
        m.running_mean.add_(0.5)
        m.running_var.mul_(3.0)
    assert trainer.amortised.evaluation.test_loss(sigma) == loss
    assert torch.equal(trainer.amortised.evaluation.hypotheses(images, sigma), poses)


def test_without_recent_batches_fixed_training_batches_are_used(tmp_path):
    # a run resumed where no training step is left calibrates from seeded training batches
    a = Trainer(from_dict(TINY), tmp_path / "a", torch.device("cpu"))
    b = Trainer(from_dict(TINY), tmp_path / "b", torch.device("cpu"))
    batches = a.amortised.calibration.batches()
    assert len(batches) == CALIBRATION_BATCHES
    assert all(x.shape == (16, 32, 32) for x in batches)
    for x, y in zip(batches, b.amortised.calibration.batches(), strict=True):
        assert torch.equal(x, y)
