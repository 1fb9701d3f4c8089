"""holly/plan.py: what the workflow's rules take from it besides the checks: the output folders,
each run's config, the half-set experiments and the training jobs' threads and resources."""

import copy

import pytest
import yaml
from conftest import ROOT

from holly.config import from_dict
from holly.plan import (
    HALVES,
    half_set_experiments,
    output_roots,
    plan,
    resolve_configs,
    run_config,
    training_images,
    training_mem_mb,
    training_priority,
    training_runtime,
    training_threads,
)

# The default config's helix experiment: 4000 particles (+32 test) x 8, 64 px, 2 epochs, batch 32.
HELIX = {
    "data": {"shape": "helix", "particles": 4000, "test_particles": 32, "augment": 8},
    "render": {"height": 64, "width": 64},
    "train": {"epochs": 2, "batch_size": 32},
}
STORE = {"data": {"source": "zarr", "store": "resources/npc.zarr"}}


@pytest.mark.parametrize(
    "results, roots",
    [
        ("results", ("results", "logs", "benchmarks")),
        ("results/", ("results", "logs", "benchmarks")),
        ("results/paper/", ("results/paper", "logs/paper", "benchmarks/paper")),
        ("elsewhere", ("elsewhere", "logs/elsewhere", "benchmarks/elsewhere")),
    ],
)
def test_logs_and_benchmarks_sit_beside_the_results(results, roots):
    assert output_roots(results) == roots


def test_a_run_config_leaves_half_sets_out_and_sets_the_half():
    raw = {"name": "x", "validation": {"half_sets": True}, "seed": 1}
    before = copy.deepcopy(raw)
    assert run_config(raw) == {"name": "x", "seed": 1}  # toggling half_sets never retrains
    assert run_config(raw, "half2") == {"name": "x", "seed": 1, "validation": {"half": 2}}
    assert [run_config(raw, h)["validation"]["half"] for h in HALVES] == [1, 2]
    assert raw == before  # the experiment itself is not changed
    assert run_config({"name": "x"}) == {"name": "x"}


def test_half_sets_are_on_for_image_stores_unless_the_config_says():
    raws = {
        "sim": HELIX,
        "sim-on": {**HELIX, "validation": {"half_sets": True}},
        "store": STORE,
        "store-off": {**STORE, "validation": {"half_sets": False}},
    }
    assert half_set_experiments(resolve_configs(raws)) == ["sim-on", "store"]


def test_plan_returns_the_resolved_configs_and_half_sets():
    tiny = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    tiny.pop("base", None)
    planned = plan({"zenodo": {"records": {}}, **tiny})
    assert list(planned["configs"]) == list(planned["experiments"])
    name = next(iter(planned["experiments"]))
    assert planned["configs"][name] == from_dict(planned["experiments"][name])
    assert planned["half_sets"] == []


@pytest.mark.parametrize(
    "cores, half_sets, threads", [(4, [], 1), (12, [], 4), (12, ["a"], 2), (1, ["a", "b"], 1)]
)
def test_the_cores_are_shared_among_every_training(cores, half_sets, threads):
    experiments = {"a": {}, "b": {}, "c": {}}
    assert training_threads(cores, experiments, half_sets) == threads


def test_training_images_follow_epochs_steps_and_max_steps():
    assert training_images(from_dict(HELIX)) == 2 * 4000 * 8
    steps = copy.deepcopy(HELIX)
    steps["train"]["steps"] = 1000
    assert training_images(from_dict(steps)) == 1000 * 32
    steps["train"]["max_steps"] = 10
    assert training_images(from_dict(steps)) == 10 * 32
    store = from_dict({**STORE, "train": {"epochs": 3}})
    assert training_images(store) == 3 * 100_000  # the store's size is not known: an estimate
    store = from_dict({"data": {**STORE["data"], "max_images": 500}, "train": {"epochs": 3}})
    assert training_images(store) == 3 * 500


def test_the_default_helix_job_resources():
    """The numbers `snakemake -n` shows for the default config's helix training."""
    cfg = from_dict(HELIX)
    # 4032 x 8 images of 64 x 64 float32: 528.5 MB, twice over a 2 GB base
    assert [training_mem_mb(cfg, attempt) for attempt in (1, 2)] == [3056, 6112]
    assert [training_runtime(cfg, attempt) for attempt in (1, 2)] == [35, 70]  # 64000 images
    assert training_priority(cfg) == 1 + 64000 * 64 * 64 // 10**6 == 263


def test_an_image_store_job_gets_a_fixed_memory_per_attempt():
    cfg = from_dict(STORE)
    assert [training_mem_mb(cfg, attempt) for attempt in (1, 3)] == [8000, 24000]


def test_the_shortest_training_has_the_lowest_priority_but_above_the_light_jobs():
    tiny = from_dict({**HELIX, "data": {"particles": 4, "augment": 1}, "train": {"batch_size": 4}})
    assert 1 <= training_priority(tiny) < training_priority(from_dict(HELIX))
