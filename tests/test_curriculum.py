import pytest

from holly.data.sigmas import load_sigma_list
from holly.errors import HollyError
from holly.method.curriculum import SigmaSchedule


def test_shipped_lists():
    assert len(load_sigma_list("bunny")) == 20
    assert load_sigma_list("bunny")[-1] == 1.41
    cep = load_sigma_list("cep")
    assert len(cep) == 40 and cep[:4] == [10.0] * 4 and cep[-1] == 3.28
    assert load_sigma_list("quick") == [10, 8, 6.4, 5, 4, 3.2, 2.4, 1.9, 1.5, 1.2]
    assert load_sigma_list("default") == [10.0, 1.25]


def test_bad_lists(tmp_path):
    with pytest.raises(HollyError, match="neither a shipped list"):
        load_sigma_list("nope")
    with pytest.raises(HollyError, match="positive"):
        load_sigma_list([3.0, -1.0])
    bad = tmp_path / "s.csv"
    bad.write_text("3, x, 1")
    with pytest.raises(HollyError, match="s.csv"):
        load_sigma_list(str(bad))


def end_of_epoch(schedule, epochs):
    return [schedule.sigma_at(schedule.steps_per_epoch * (e + 1)) for e in range(epochs)]


def test_original_reference_values_10_epochs():
    bunny = tuple(load_sigma_list("bunny"))
    geo = end_of_epoch(SigmaSchedule(bunny, "geometric", 10, 200), 3)
    assert geo == pytest.approx([8.1857, 6.7, 5.4851], abs=3e-3)
    lin = end_of_epoch(SigmaSchedule(bunny, "linear", 10, 200), 3)
    assert lin == pytest.approx([8.2, 6.7, 5.4], abs=0.1)


def test_paper_bunny_schedule_40_epochs():
    """The bunny scripts: 40 epochs, 40,000 images, batch 32 -> 1250 steps per epoch."""
    schedule = SigmaSchedule(tuple(load_sigma_list("bunny")), "geometric", 40, 1250)
    expected = [
        9.51,
        9.05,
        8.61,
        8.19,
        7.79,
        7.41,
        7.05,
        6.70,
        6.37,
        6.06,
        5.76,
        5.48,
        5.21,
        4.96,
        4.72,
        4.49,
        4.27,
        4.06,
        3.86,
        3.75,
        3.65,
        3.55,
        3.38,
        3.21,
        3.05,
        2.90,
        2.76,
        2.63,
        2.50,
        2.38,
        2.26,
        2.15,
        2.05,
        1.95,
        1.85,
        1.76,
        1.67,
        1.59,
        1.51,
        1.44,
    ]
    assert end_of_epoch(schedule, 40) == pytest.approx(expected, abs=0.006)
    assert schedule.sigma_at(0) == pytest.approx(10.0)


def test_epoch_schedule_is_a_lookup():
    schedule = SigmaSchedule((5.0, 3.0, 2.0), "epoch", 5, 10)
    assert [schedule.sigma_at(10 * e + 3) for e in range(5)] == [5.0, 3.0, 2.0, 2.0, 2.0]


def test_linear_hits_list_values_at_interval_ends():
    schedule = SigmaSchedule((8.0, 4.0, 2.0), "linear", 4, 25)
    assert schedule.sigma_at(0) == 8.0
    assert schedule.sigma_at(50) == pytest.approx(4.0)
    assert schedule.sigma_at(100) == pytest.approx(2.0)
    assert schedule.sigma_at(25) == pytest.approx(6.0)


def test_schedules_decrease_monotonically():
    values = tuple(load_sigma_list("quick"))
    for kind in ("epoch", "geometric", "linear"):
        schedule = SigmaSchedule(values, kind, 9, 7)
        sig = [schedule.sigma_at(s) for s in range(schedule.total_steps)]
        assert all(b <= a + 1e-12 for a, b in zip(sig, sig[1:], strict=False)), kind


# -- training length (train.epochs or train.steps) -----------------------------------------


def _default_workflow_experiments():
    from conftest import ROOT

    from holly.plan import apply_base, load_workflow_config, plan

    config = apply_base(load_workflow_config(ROOT / "config" / "config.yaml"), ROOT)
    return plan(config)["experiments"]


def test_default_workflow_training_length_is_unchanged():
    """config/config.yaml's experiments resolve to the steps and sigma schedule they had before
    train.steps existed (2 epochs; cep152 3,000 particles, the others 4,000, x 8, batch 32)."""
    from holly.config import from_dict
    from holly.method.curriculum import training_length

    expected = {"cep152": (750, 1500), "tetrapod": (1000, 2000), "helix": (1000, 2000)}
    sigma_at = {  # SigmaSchedule(values, "geometric", 2, spe) before train.steps existed
        750: [6.0, 4.279652775734651, 2.177324215807269, 0.9399183036804428],
        1000: [6.0, 4.281099061624734, 2.177324215807269, 0.9396547936138611],
    }
    experiments = _default_workflow_experiments()
    assert sorted(experiments) == sorted(expected)
    for name, raw in experiments.items():
        cfg = from_dict(raw)
        t, d = cfg.train, cfg.data
        assert t.steps is None, name
        length = training_length(t.epochs, t.steps, d.particles * d.augment, t.batch_size)
        spe, steps = expected[name]
        assert (length.epochs, length.steps_per_epoch, length.steps) == (2, spe, steps), name
        assert length.source == "train.epochs" and not length.short
        schedule = SigmaSchedule(
            tuple(load_sigma_list(cfg.sigma.values)), cfg.sigma.schedule, length.epochs, spe
        )
        assert schedule == SigmaSchedule((6.0, 4.0, 2.8, 2.0, 1.4, 1.0), "geometric", 2, spe)
        got = [schedule.sigma_at(k) for k in (0, spe // 3, spe, 2 * spe - 1)]
        assert got == sigma_at[spe], name


def test_train_steps_derives_the_epochs_from_the_data_size():
    from holly.method.curriculum import TUNED_STEPS, training_length

    # the case: 500 particles x 8 copies, 95 % for training, batch 32 -> 118 per epoch
    by_epochs = training_length(2, None, 3800, 32)
    assert (by_epochs.epochs, by_epochs.steps) == (2, 236) and by_epochs.short
    assert "set train.steps: 2000" in by_epochs.warning()
    by_steps = training_length(2, TUNED_STEPS, 3800, 32)
    assert by_steps.epochs == 17 and by_steps.steps == 2006  # ceil(2000 / 118) epochs
    assert by_steps.source == "train.steps" and not by_steps.short
    assert by_steps.warning() is None
    # a large set: steps that are a whole number of epochs give exactly those
    assert training_length(40, 2000, 32000, 32).epochs == 2
    # a short train.steps is warned about, naming that key
    short = training_length(2, 100, 32000, 32)
    assert short.steps == 1000 and not short.short  # one epoch at least
    tiny = training_length(2, 100, 320, 32)
    assert tiny.steps == 100 and "raise train.steps" in tiny.warning()
    record = tiny.record()
    assert record["source"] == "train.steps" and record["tuned_steps"] == TUNED_STEPS
    with pytest.raises(HollyError, match="fewer than one batch"):
        training_length(2, 2000, 20, 32)
