import pytest

from holly.curriculum import SigmaSchedule, load_sigma_list
from holly.errors import HollyError


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
