"""The paper-length configs (issue 14): the paper's bunny-baseline settings on a built-in shape,
and their counterpart with holly's improved defaults, differ only where they say they do."""

from __future__ import annotations

import yaml
from conftest import ROOT

from holly.config import from_dict
from holly.plan import merge

CONFIG = ROOT / "config"


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolved(raw: dict) -> dict:
    return flat(from_dict(raw).to_dict())


def paper_bunny_baseline() -> dict:
    paper = yaml.safe_load((CONFIG / "paper.yaml").read_text())
    (exp,) = [e for e in paper["experiments"] if e["name"] == "bunny-baseline"]
    return resolved(merge(paper["defaults"], exp))


def load(name: str) -> dict:
    return resolved(yaml.safe_load((CONFIG / name).read_text()))


def differences(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_paper_length_is_bunny_baseline_on_a_builtin_shape():
    ours, paper = load("paper-length-tetrapod.yaml"), paper_bunny_baseline()
    # the shape and name, and how often files are written; nothing that changes what is learned
    allowed = {"name", "data.shape", "train.checkpoint_every", "train.snapshot_every"}
    assert differences(ours, paper) <= allowed, differences(ours, paper) - allowed
    presentations = ours["data.particles"] * ours["data.augment"] * ours["train.epochs"]
    assert presentations == 1_600_000
    assert ours["model.rotation"] == "axis_angle" and ours["loss.kind"] == "masked_l1"


def test_improved_counterpart_changes_only_the_improvements():
    base, improved = load("paper-length-tetrapod.yaml"), load("paper-length-tetrapod-improved.yaml")
    assert differences(base, improved) == {
        "name",
        "model.rotation",
        "model.pose_hypotheses",
        "loss.kind",
        "train.points_lr",
        "refine.steps",
        "refine.images",
        "refine.points_lr",
    }
    assert (improved["model.rotation"], improved["loss.kind"]) == ("6d", "l1")
    assert improved["model.pose_hypotheses"] == 4 and improved["refine.steps"] > 0
