# Config validation (the schema here, the rest in holly/plan.py), the workflow's targets and its
# input and params functions; the resource estimates are holly/plan.py's. No rules here: the root
# Snakefile's `rule all` must stay the first rule (the default target).
import json
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from holly.errors import HollyError
from holly.plan import (
    HALVES,
    output_roots,
    plan,
    run_config,
    training_mem_mb,
    training_priority,
    training_runtime,
    training_threads,
)
from holly.results.figurekeys import RUN_FIGURES

# 1. Structure, types and ranges (unknown keys rejected); fills the optional sections' defaults.
validate(config, "../schemas/config.schema.yaml")

# Results go to RESULTS (config `results`, default results/), logs and benchmarks beside them.
RESULTS, LOGS, BENCHMARKS = output_roots(config["results"])
CAPTIONS = str(Path(workflow.basedir) / "workflow" / "report")
FIG_FORMAT = config["figures"]["format"]
EXTRA_CAPTIONS = ("evolution", "vs_published", "published", "fusion")


# 2. Everything else that can be known before a job runs (holly/plan.py, unit-tested there):
# finite numbers everywhere, download and localisation names cross-checked, each experiment a
# valid holly config whose shape exists, is finite and inside the frame, whose sigma list is
# valid and whose data fill a batch, and no experiment named like a file the workflow writes.
try:
    _PLAN = plan(config)
except HollyError as exc:
    raise WorkflowError(f"Invalid config: {exc}") from None
RECORDS, FILES, STORES = _PLAN["records"], _PLAN["files"], _PLAN["stores"]
LOCALISED = _PLAN["localised"]
EXPERIMENTS, PUBLISHED = _PLAN["experiments"], _PLAN["published"]
STRUCTURE = _PLAN["structure"]
CONFIGS, HALF_SETS = _PLAN["configs"], _PLAN["half_sets"]


def run_dir(experiment):
    return f"{RESULTS}/{experiment}"


def experiment_json(wildcards):
    """The run's config as `holly train --config-json` takes it (stable key order)."""
    half = getattr(wildcards, "half", None)
    return json.dumps(
        run_config(EXPERIMENTS[wildcards.experiment], half),
        sort_keys=True,
        separators=(",", ":"),
    )


def half_dir(experiment, half):
    return f"{RESULTS}/{experiment}/halves/{half}"


def halfset_paths(experiment):
    """The comparison of an experiment's two half-set runs and its FSC figure."""
    if experiment not in HALF_SETS:
        return []
    return [
        f"{RESULTS}/{experiment}/halfsets.json",
        f"{RESULTS}/{experiment}/figures/fsc.{FIG_FORMAT}",
    ]


def train_inputs(wildcards):
    """Files the training reads: a shape file, a sigma list file or an image store."""
    raw = EXPERIMENTS[wildcards.experiment]
    data, sigma = raw.get("data", {}), raw.get("sigma", {})
    inputs = {}
    shape = data.get("shape")
    if data.get("source", "simulated") == "simulated" and shape and Path(shape).suffix:
        inputs["shape"] = shape
    if data.get("source") == "zarr":
        inputs["store"] = data["store"]
    values = sigma.get("values")
    if isinstance(values, str) and Path(values).suffix:
        inputs["sigma"] = values
    return inputs


# -- training jobs' threads and resources


def train_threads(wildcards):
    """--cores shared among the trainings, which run in parallel (1 without --cores)."""
    try:
        cores = workflow.cores
    except WorkflowError:  # e.g. `snakemake --report` or --lint: no --cores given
        return 1
    return training_threads(cores, EXPERIMENTS, HALF_SETS)


def train_mem_mb(wildcards, attempt):
    return training_mem_mb(CONFIGS[wildcards.experiment], attempt)


def train_runtime(wildcards, attempt):
    return training_runtime(CONFIGS[wildcards.experiment], attempt)


def train_priority(wildcards):
    return training_priority(CONFIGS[wildcards.experiment])


def evaluation_options(wildcards):
    """Extra `holly evaluate` options from the config's evaluation section."""
    tau = config["evaluation"]["tau"]
    return f"--tau {float(tau)!r}" if tau is not None else ""


def structure_options(wildcards):
    """`holly evaluate --structure ...` for an experiment with `evaluation.structure`."""
    spec = STRUCTURE.get(wildcards.experiment)
    if not spec:
        return ""
    options = ["--structure", spec["check"]]
    if spec.get("model"):
        options += ["--structure-model", spec["model"]]
    for key in ("model_nm_per_unit", "precision"):
        if spec.get(key) is not None:
            options += [f"--{key.replace('_', '-')}", repr(float(spec[key]))]
    return " ".join(shlex.quote(str(o)) for o in options)


def structure_inputs(wildcards):
    """The structure check's model file, an input of `evaluate` (none without one)."""
    model = (STRUCTURE.get(wildcards.experiment) or {}).get("model")
    return {"model": model} if model else {}


def figure_paths(experiment):
    return [f"{RESULTS}/{experiment}/figures/{key}.{FIG_FORMAT}" for key in RUN_FIGURES]


def extra_figure_paths(experiment):
    """The optional figures of one experiment: evolution, comparison with a published cloud,
    the run's own particle fusion (refine.fusion)."""
    keys = ["evolution"] if config["figures"]["evolution"] else []
    keys += ["vs_published"] if experiment in PUBLISHED else []
    keys += (
        ["fusion"]
        if (EXPERIMENTS[experiment].get("refine") or {}).get("fusion")
        else []
    )
    return [f"{RESULTS}/{experiment}/figures/{key}.{FIG_FORMAT}" for key in keys]


def published_jsons():
    return [f"{RESULTS}/{name}/vs_published.json" for name in PUBLISHED]


# -- downloads (the rules in data.smk)


def fetch_flag(record):
    return f"resources/zenodo/{record}.fetched.json"


def fetch_options(wildcards):
    """`holly fetch` options of one record: files, manifest, extraction, API (shell-quoted)."""
    from shlex import quote

    entry = RECORDS[wildcards.record]
    options = []
    if entry.get("files"):
        options += ["--files", *map(quote, entry["files"])]
    if entry.get("manifest"):
        options += ["--manifest", quote(entry["manifest"])]
    if entry.get("extract", True):
        options.append("--extract")
    if config["zenodo"]["api"]:
        options += ["--api", quote(config["zenodo"]["api"])]
    return " ".join(options)


def fetch_inputs(wildcards):
    entry = RECORDS[wildcards.record]
    return [entry["manifest"]] if entry.get("manifest") else []


def pick_flag(wildcards):
    return fetch_flag(FILES[f"resources/{wildcards.file}"]["record"])


def pick_dir(wildcards):
    return f"resources/zenodo/{FILES[f'resources/{wildcards.file}']['record']}"


def store_entry(wildcards):
    return STORES[f"resources/{wildcards.store}.zarr"]


def ingest_options(wildcards):
    entry = store_entry(wildcards)
    options = [f"--perturbations {int(entry.get('perturbations', 10))}"]
    options.append("--flip" if entry.get("flip", True) else "--no-flip")
    if entry.get("skip_bad", False):
        options.append("--skip-bad")
    return " ".join(options)


def localise_entry(wildcards):
    return LOCALISED[f"resources/{wildcards.locstore}.zarr"]


def localise_inputs(wildcards):
    """The localisation file or folder, and the accepted list and sigma file if any."""
    entry = localise_entry(wildcards)
    inputs = {"locs": entry["path"]}
    if entry.get("accepted"):
        inputs["accepted"] = entry["accepted"]
    sigmas = entry["sigmas"]
    if isinstance(sigmas, str) and Path(sigmas).suffix:
        inputs["sigmas"] = sigmas
    return inputs


def localise_options(wildcards):
    """`holly localise` options of one `localisations` entry (shell-quoted)."""
    from shlex import quote

    entry = localise_entry(wildcards)
    sigmas = entry["sigmas"]
    if isinstance(sigmas, list):
        sigmas = ",".join(repr(float(s)) for s in sigmas)
    options = ["--sigmas", quote(str(sigmas))]
    flags = {
        "format": "--format",
        "size": "--size",
        "perturbations": "--perturbations",
        "particle_column": "--particle-column",
        "pixel_size": "--pixel-size",
        "accepted": "--accepted",
        "max_points": "--max-points",
        "min_localisations": "--min-localisations",
        "outlier_factor": "--outlier-factor",
        "margin": "--margin",
        "mat_order": "--mat-order",
        "seed": "--seed",
    }
    for key, flag in flags.items():
        if entry.get(key) is not None:
            options += [flag, quote(str(entry[key]))]
    if entry.get("size_cut"):
        options.append("--size-cut")
    return " ".join(options)


def run_options(wildcards=None):
    """`--run=NAME=RUN_DIR` for every experiment, in config order (quote each with :q)."""
    return [f"--run={name}={run_dir(name)}" for name in EXPERIMENTS]


def all_targets():
    targets = [f"{RESULTS}/summary.csv", f"{RESULTS}/report.html"]
    for name in EXPERIMENTS:
        targets += [
            f"{RESULTS}/{name}/evaluation.json",
            f"{RESULTS}/{name}/viewer.html",
        ]
        targets += figure_paths(name) + extra_figure_paths(name) + halfset_paths(name)
    return targets + published_jsons()
