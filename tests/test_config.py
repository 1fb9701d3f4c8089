import json

import pytest

from holly.config import LATEST_DEFAULTS, describe, from_dict, load_config, merge, with_defaults
from holly.errors import HollyError


def test_defaults_are_the_paper_variant():
    cfg = from_dict({})
    assert cfg.render.order == "paper" and cfg.loss.kind == "masked_l1"
    assert cfg.loss.normalise == "batch" and cfg.sigma.schedule == "geometric"
    assert cfg.train.lr == 4e-4 and cfg.points_lr == 4e-4 and cfg.train.points_weight_decay == 0


def test_latest_variant_and_explicit_override():
    cfg = from_dict({"variant": "latest", "loss": {"kind": "masked_l1"}})
    assert cfg.render.order == "latest" and cfg.model.encoder == "latest"
    assert cfg.loss.normalise == "image" and cfg.loss.kind == "masked_l1"
    assert cfg.train.lr == LATEST_DEFAULTS["train"]["lr"] and cfg.points_lr == 4e-4


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"trian": {}}, "unknown key 'trian'"),
        ({"train": {"epoch": 3}}, "unknown key 'train.epoch'"),
        ({"train": {"epochs": 0}}, "'train.epochs' must be >= 1"),
        ({"render": {"height": -5}}, "'render.height' must be >= 8"),
        ({"model": {"rotation": "quat"}}, "'model.rotation' must be one of"),
        ({"data": {"dropout": "lots"}}, "'data.dropout' must be float"),
        ({"train": {"batch_size": 3.5}}, "'train.batch_size' must be int"),
        ({"train": {"batch_size": True}}, "'train.batch_size' must be int"),
        ({"sigma": {"values": []}}, "'sigma.values' must be a non-empty list"),
        ({"train": 3}, "'train' must be a mapping"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(HollyError, match=message):
        from_dict(raw)


def test_load_yaml_and_json(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("seed: 3\ntrain:\n  epochs: 2\n")
    assert load_config(y).seed == 3
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"seed": 4}))
    assert load_config(j, overrides={"train": {"epochs": 5}}).train.epochs == 5
    broken = tmp_path / "b.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(HollyError, match="b.yaml"):
        load_config(broken)
    with pytest.raises(HollyError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_dict():
    cfg = from_dict({"variant": "latest", "sigma": {"values": [3, 2]}, "seed": 9})
    assert from_dict(cfg.to_dict()) == cfg


def test_describe_covers_every_key():
    keys = {row["key"] for row in describe()}
    assert {"seed", "data.shape", "train.points_lr", "loss.mask_threshold"} <= keys
    assert all(row["doc"] is not None for row in describe())


def test_merge_is_deep_and_shares_nothing_with_its_inputs():
    base = {"train": {"lr": 1.0, "epochs": 2}, "sigma": {"values": [3.0, 1.0]}, "seed": 0}
    over = {"train": {"lr": 2.0}, "sigma": {"values": [2.0]}, "render": {"height": 32}}
    out = merge(base, over)
    assert out == {
        "train": {"lr": 2.0, "epochs": 2},  # nested mappings merged key by key
        "sigma": {"values": [2.0]},  # anything else replaced whole
        "seed": 0,
        "render": {"height": 32},
    }
    out["train"]["epochs"] = 9
    out["sigma"]["values"].append(1.0)
    out["render"]["height"] = 16
    assert base["train"]["epochs"] == 2 and over["sigma"]["values"] == [2.0]
    assert over["render"]["height"] == 32


def test_the_latest_defaults_are_not_changed_by_a_latest_config():
    before = json.dumps(LATEST_DEFAULTS, sort_keys=True)
    from_dict({"variant": "latest", "train": {"lr": 1e-3}, "model": {"encoder": "paper"}})
    assert json.dumps(LATEST_DEFAULTS, sort_keys=True) == before


def test_with_defaults_fills_only_what_a_recorded_config_lacks():
    """A run recorded before a key existed reads as that key's default (for its variant);
    what the run recorded is kept, whatever the defaults say now."""
    recorded = from_dict({"variant": "latest", "train": {"lr": 1e-3}}).to_dict()
    del recorded["model"]["pose_prior"], recorded["train"]["channels_last"]
    full = with_defaults(recorded)
    latest = from_dict({"variant": "latest"}).to_dict()
    assert full["model"]["pose_prior"] == latest["model"]["pose_prior"] == "uniform"
    assert full["train"]["channels_last"] is latest["train"]["channels_last"]
    assert full["train"]["lr"] == 1e-3 != latest["train"]["lr"]
    assert full["render"]["order"] == latest["render"]["order"] == "latest"
    assert "pose_prior" not in recorded["model"]  # the record itself is left alone
