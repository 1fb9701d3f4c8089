"""holly/commands/config_args.py: the experiment config of `holly train` and `holly simulate`."""

import argparse
import json

import pytest

from holly.commands import simulate, train
from holly.commands.config_args import config_overrides, load_experiment_config
from holly.config import load_config
from holly.errors import HollyError


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text("name: tiny\ndata:\n  particles: 64\ntrain:\n  epochs: 1\n")
    return path


def _args(config=None, config_json=None):
    return argparse.Namespace(config=config, config_json=config_json)


@pytest.mark.parametrize(
    "args, message",
    [
        (_args(), "no experiment config: pass --config FILE"),
        (_args(config_json="{"), "--config-json is not valid JSON"),
        (_args(config_json="[1]"), "--config-json must be a JSON mapping"),
    ],
)
def test_config_overrides_errors(args, message):
    with pytest.raises(HollyError, match=message):
        config_overrides(args)


def test_a_fault_in_the_json_is_named_as_such(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"epochs": 2}}))
    args = _args(str(cfg), json.dumps({"train": {"epochs": 0}}))
    with pytest.raises(HollyError, match=r"^--config-json \(merged over .*train\.epochs"):
        load_experiment_config(args, config_overrides(args))


def test_json_alone_and_merged_over_a_file(experiment):
    json_only = _args(config_json=json.dumps({"seed": 7}))
    assert load_experiment_config(json_only, config_overrides(json_only)).seed == 7
    both = _args(str(experiment), json.dumps({"seed": 7}))
    assert load_experiment_config(both, config_overrides(both)) == load_config(
        experiment, {"seed": 7}
    )


def test_train_and_simulate_take_the_same_config_flags(experiment):
    parsers = {}
    for module in (train, simulate):
        parsers[module] = argparse.ArgumentParser()
        module.add_args(parsers[module])
    flags = ["--config", str(experiment), "--config-json", '{"seed": 3}', "--out", "x"]
    args = parsers[train].parse_args(flags)
    cfg = load_experiment_config(args, config_overrides(args))
    assert train.resolve_config(args) == cfg  # no --device, --half or --max-steps given
    args = parsers[train].parse_args([*flags, "--max-steps", "5", "--half", "2"])
    assert train.resolve_config(args).train.max_steps == 5
    assert train.resolve_config(args).validation.half == 2
    assert parsers[simulate].parse_args(flags).config_json == '{"seed": 3}'
