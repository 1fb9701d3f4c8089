"""holly/plan.py: config bases, and every check that can be made before a workflow job runs."""

import copy

import pytest
import yaml
from conftest import ROOT

from holly.errors import HollyError
from holly.plan import apply_base, check_finite, plan

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
TINY = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
MINE = {"experiments": [{"name": "mine", "data": {"shape": "helix"}}]}


def test_a_config_with_only_experiments_gets_the_tuned_defaults(tmp_path):
    cfg = apply_base(MINE, tmp_path)
    assert cfg["defaults"] == DEFAULT["defaults"]  # 6d head, l1, 64 px, points_lr 5e-3
    assert cfg["defaults"]["model"]["rotation"] == "6d"
    assert cfg["experiments"] == MINE["experiments"]  # not the three default experiments
    assert cfg["container_image"] == DEFAULT["container_image"]
    experiments = plan(cfg)["experiments"]
    assert list(experiments) == ["mine"]
    assert experiments["mine"]["render"]["height"] == 64


def test_own_keys_win_and_merge_key_by_key(tmp_path):
    mine = {**MINE, "defaults": {"render": {"height": 32}}}
    cfg = apply_base(mine, tmp_path)
    assert cfg["defaults"]["render"] == {"height": 32, "width": 64}
    assert cfg["defaults"]["loss"] == DEFAULT["defaults"]["loss"]


def test_base_paper_and_none(tmp_path):
    paper = apply_base({**MINE, "base": "paper"}, tmp_path)
    assert paper["defaults"] == PAPER["defaults"]
    assert paper["defaults"]["model"]["rotation"] == "axis_angle"
    bare = apply_base({**MINE, "base": "none"}, tmp_path)
    assert bare == MINE
    with pytest.raises(HollyError, match="base: must be one of default, paper, none"):
        apply_base({**MINE, "base": "tuned"}, tmp_path)


def test_shipped_configs_are_their_own_base(tmp_path):
    # config/paper.yaml stays exactly the paper's settings: nothing of config.yaml leaks in
    assert PAPER["base"] == "none"
    assert apply_base(PAPER, tmp_path) == {k: v for k, v in PAPER.items() if k != "base"}
    assert apply_base(TINY, tmp_path) == {k: v for k, v in TINY.items() if k != "base"}
    assert apply_base(DEFAULT, tmp_path) == DEFAULT  # inheriting from itself changes nothing


def test_a_working_directory_config_folder_is_the_base(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("defaults: {seed: 7}\nexperiments: []\n")
    assert apply_base(MINE, tmp_path)["defaults"] == {"seed": 7}


def _tiny(edit):
    cfg = copy.deepcopy(TINY)
    cfg.pop("base", None)
    cfg.setdefault("zenodo", {"records": {}})
    edit(cfg)
    return cfg


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["defaults"]["train"].update(lr=float("nan")),
            r"defaults\.train\.lr: must be a finite number",
        ),
        (lambda c: c.setdefault("evaluation", {}).update(tau=float("inf")), "evaluation.tau"),
        (lambda c: c["experiments"][0].update(name="summary.csv"), "is reserved"),
        (lambda c: c["experiments"][0].update(name="report.html"), "is reserved"),
        (
            lambda c: c["defaults"]["train"].update(batch_size=4096),
            "fewer than one batch of 4096",
        ),
        (lambda c: c["defaults"]["sigma"].update(values=[2.0, 0.0]), "sigma"),
        (lambda c: c["defaults"]["sigma"].update(values="no/such.csv"), "sigma list"),
        (lambda c: c["experiments"][0]["data"].update(shape="tetrapd"), "unknown shape"),
        (
            lambda c: c["experiments"][0]["data"].update(shape="no/such.ply"),
            "shape file 'no/such.ply' does not exist",
        ),
        (lambda c: c["experiments"].append(copy.deepcopy(c["experiments"][0])), "used twice"),
        (
            lambda c: c["experiments"][0]["data"].update(source="zarr", store="none.zarr"),
            "image store 'none.zarr' does not exist",
        ),
        (
            lambda c: c["experiments"][0].update(refine={"fusion": True}),
            "refine.fusion is on, but data.source is not zarr",
        ),
        (
            lambda c: c.setdefault("evaluation", {}).update(structure={"nope": {"check": "flat"}}),
            r"evaluation\.structure\.nope: 'nope' is not an experiment",
        ),
        (
            lambda c: c.setdefault("evaluation", {}).update(
                structure={c["experiments"][0]["name"]: {"check": "ring", "model": "no.mat"}}
            ),
            "model file 'no.mat' does not exist",
        ),
        (
            lambda c: c.setdefault("evaluation", {}).update(
                structure={c["experiments"][0]["name"]: {"check": "cube"}}
            ),
            "'check' must be one of tetrahedron, ring, flat",
        ),
    ],
)
def test_plan_time_errors(edit, message):
    with pytest.raises(HollyError, match=message):
        plan(_tiny(edit))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no vertices|no points|empty"),
        ("x,y,z\n0,0,0\n0,0,0\n0,0,0\n", "no extent"),
        ("x,y,z\n0,0,0\n1e400,0,0\n0,1,0\n", "non-finite|NaN or infinite"),
        ("x,y,z\n50,0,0\n0,60,0\n0,0,70\n", "fit_radius"),
    ],
)
def test_shape_files_are_checked_before_any_job(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shape.csv").write_text(text)
    cfg = _tiny(lambda c: c["experiments"][0]["data"].update(shape="shape.csv"))
    with pytest.raises(HollyError, match=message):
        plan(cfg)


def test_fit_radius_brings_a_large_shape_into_the_frame(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shape.csv").write_text("x,y,z\n50,0,0\n0,60,0\n0,0,70\n10,10,10\n")
    cfg = _tiny(lambda c: c["experiments"][0]["data"].update(shape="shape.csv", fit_radius=1.0))
    assert "tetrapod" in plan(cfg)["experiments"]


def test_check_finite_names_the_key():
    with pytest.raises(HollyError, match=r"a\.b\[1\]"):
        check_finite({"a": {"b": [1.0, float("-inf")]}}, "")
    check_finite({"a": [1, 2.5, "x", None, True]}, "")


def test_structure_checks_follow_their_experiment_and_its_variant_copies():
    def edit(c):
        name = c["experiments"][0]["name"]
        c["variants"] = ["paper", "latest"]
        c.setdefault("evaluation", {})["structure"] = {name: {"check": "tetrahedron"}}

    cfg = _tiny(edit)
    name = cfg["experiments"][0]["name"]
    resolved = plan(cfg)["structure"]
    assert resolved == {name: {"check": "tetrahedron"}, f"{name}-latest": {"check": "tetrahedron"}}
