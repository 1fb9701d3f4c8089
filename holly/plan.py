"""Planning a workflow run: the workflow config's bases, merging and checks before any job runs.

The Snakefile and ``workflow/rules/common.smk`` call these functions; they are plain Python so
that they are unit-tested without Snakemake. Every problem is a :class:`~holly.errors.HollyError`
naming the key (the workflow shows it as ``Invalid config: ...``).

Config inheritance (config/README.md, "Your own config"): a user's workflow config starts from a
*base* and its own keys win, nested mappings merged key by key:

``base: default`` (when ``base`` is not given)
    ``config/config.yaml``: the tuned defaults and the default experiments' settings; the
    base's ``experiments`` list is *not* inherited when the user's config has its own.
``base: paper``
    ``config/paper.yaml``: the paper's settings, exactly.
``base: none``
    nothing but the schema's defaults (the bare holly defaults of ``holly/config.py``).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path

from holly.config import from_dict, merge
from holly.errors import HollyError, one_line

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BASES = {"default": "config/config.yaml", "paper": "config/paper.yaml", "none": None}


def base_config_path(base: str, workdir: str | os.PathLike = ".") -> Path | None:
    """The file of a named base: ``workdir/config/...`` if present, else this repository's."""
    if base not in BASES:
        raise HollyError(f"base: must be one of {', '.join(BASES)}, got {base!r}")
    rel = BASES[base]
    if rel is None:
        return None
    for candidate in (Path(workdir) / rel, REPO / rel):
        if candidate.is_file():
            return candidate
    raise HollyError(
        f"base {base!r}: {rel} not found in {Path(workdir).resolve()} or {REPO}; "
        "run from a holly checkout or set `base: none`"
    )


def load_workflow_config(path: str | os.PathLike) -> dict:
    """A workflow config file (YAML) as a mapping; HollyError when missing, empty or corrupt."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HollyError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HollyError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    if data is None:
        raise HollyError(f"config file {path} is empty")
    if not isinstance(data, dict):
        raise HollyError(f"config file {path} must be a mapping of keys")
    return data


# -- bases -----------------------------------------------------------------------------------
def apply_base(config: dict, workdir: str | os.PathLike = ".") -> dict:
    """``config`` over its base (module docstring); the ``base`` key itself is removed.

    The base's own ``base`` is followed too (a chain ends at ``none``); a loop is an error.
    """
    config = dict(config)
    base = config.pop("base", "default")
    seen: list[Path] = []
    while base != "none":
        path = base_config_path(base, workdir)
        if path.resolve() in seen:
            raise HollyError(f"base {base!r}: {path} inherits from itself")
        seen.append(path.resolve())
        parent = load_workflow_config(path)
        base = parent.pop("base", "none")  # a shipped file without `base` is complete
        if "experiments" in config:
            parent.pop("experiments", None)  # the user's list replaces the base's
        config = merge(parent, config)
    return config


# -- checks of the whole config --------------------------------------------------------------
def check_finite(value, where: str = "config") -> None:
    """Every number anywhere in ``value`` (nested mappings and lists) is finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise HollyError(f"{where}: must be a finite number, got {value}")


# Names under the results folder that the workflow writes itself: no experiment may take them.
RESERVED_NAMES = ("summary.csv", "summary.html", "report.html", "figures")


def check_name(name: str) -> None:
    if name in RESERVED_NAMES or name.split(".")[0] in ("summary", "report"):
        raise HollyError(
            f"experiment name {name!r} is reserved: the workflow writes "
            f"{', '.join(RESERVED_NAMES)} in the results folder; choose another name"
        )


def resolve_downloads(config: dict) -> tuple[dict, dict, dict]:
    """Records, files picked from them and image stores; names cross-checked (no network)."""
    records = config.get("zenodo", {}).get("records", {})
    files, stores = {}, {}
    for key, entry in config.get("files", {}).items():
        if ".." in key.split("/"):
            raise HollyError(f"files: {key!r} must not contain '..'")
        if entry["record"] not in records:
            raise HollyError(
                f"files: {key!r} names record {entry['record']!r}, which is not under "
                f"zenodo.records ({', '.join(records) or 'none'})"
            )
        files[f"resources/{key}"] = entry
    for name, entry in config.get("stores", {}).items():
        if entry["record"] not in records:
            raise HollyError(
                f"stores: {name!r} names record {entry['record']!r}, which is not under "
                f"zenodo.records ({', '.join(records) or 'none'})"
            )
        stores[f"resources/{name}.zarr"] = dict(entry, name=name)
    return records, files, stores


def resolve_localisations(config: dict, stores: dict) -> dict:
    """``resources/<name>.zarr -> entry`` of the `localisations` section (names unique)."""
    out = {}
    for name, entry in (config.get("localisations") or {}).items():
        path = f"resources/{name}.zarr"
        if path in stores:
            raise HollyError(f"localisations: {name!r} is also a name under `stores`")
        out[path] = dict(entry, name=name)
    return out


def variant_copies(raw: dict, variants: list[str] | None) -> list[tuple[str, dict]]:
    """``raw`` once per variant (as written when ``variants`` is empty): ``(name, config)``."""
    if not variants:
        return [(raw["name"], raw)]
    own = raw.get("variant", "paper")
    copies = []
    for variant in variants:
        name = raw["name"] if variant == own else f"{raw['name']}-{variant}"
        copies.append((name, merge(raw, {"name": name, "variant": variant})))
    return copies


def resolve_experiments(
    config: dict, files: dict | None = None, stores: dict | None = None
) -> tuple[dict, dict]:
    """``name -> experiment config`` (defaults merged with each experiment), every one checked.

    Also returns ``name -> published cloud`` for the experiments compared with one (copies made
    for `variants` share their experiment's). ``files``/``stores`` are the paths the workflow
    makes (:func:`resolve_downloads`): a shape or store among them need not exist yet.
    """
    files, stores = files or {}, stores or {}
    experiments, published = {}, {}
    published_cfg = config.get("published") or {}
    names = [entry["name"] for entry in config["experiments"]]
    for key in published_cfg:
        if key not in names:
            raise HollyError(f"published: {key!r} is not an experiment ({', '.join(names)})")
    for entry in config["experiments"]:
        base = merge(config.get("defaults") or {}, entry)
        for name, raw in variant_copies(base, config.get("variants")):
            if name in experiments:
                raise HollyError(f"experiment name {name!r} is used twice")
            check_name(name)
            check_experiment(name, raw, files, stores)
            experiments[name] = raw
            if entry["name"] in published_cfg:
                published[name] = published_cfg[entry["name"]]
    for name, path in published.items():
        if path not in files and not Path(path).is_file():
            raise HollyError(
                f"published cloud {path!r} of experiment {name!r} is neither a file nor made "
                f"by the workflow (keys of `files` are made as resources/<key>)"
            )
    return experiments, published


def check_experiment(name: str, raw: dict, files: dict, stores: dict) -> None:
    """The merged experiment is a valid holly config whose data can train (raises HollyError).

    Checked before any job runs: every key (:func:`holly.config.from_dict`), the shape (exists,
    finite, of non-zero extent, inside the frame), the sigma list, and a training set of at least
    one batch.
    """
    where = f"experiment {name!r}"
    cfg = from_dict(raw, where=where)
    try:
        from holly.data.shapes import BUILTIN_SHAPES, check_in_frame, is_shape_path, load_shape
        from holly.data.sigmas import load_sigma_list
    except ImportError as exc:  # e.g. Snakemake in its own environment without numpy (--sdm)
        log.warning("holly's modules are not importable here (%s): config checked less", exc)
        return
    d, r = cfg.data, cfg.render
    if cfg.refine.fusion and d.source != "zarr":
        raise HollyError(
            f"{where}: refine.fusion is on, but data.source is not zarr: a particle fusion is "
            "of the localisations in a `holly localise` store (localisations: in this config)"
        )
    if d.source == "simulated":
        if d.shape not in BUILTIN_SHAPES and not is_shape_path(d.shape):
            raise HollyError(
                f"{where}: unknown shape {d.shape!r}; use a built-in shape "
                f"({', '.join(sorted(BUILTIN_SHAPES))}) or a path to a .ply/.obj/.csv file"
            )
        made = d.shape in files
        if not made and not Path(d.shape).is_file() and d.shape not in BUILTIN_SHAPES:
            raise HollyError(
                f"{where}: shape file {d.shape!r} does not exist "
                f"(relative paths start in the working directory {Path.cwd()})"
            )
        if not made:
            try:
                xyz = load_shape(d.shape, d.fit_radius)
                check_in_frame(xyz, d.shape, r.height, r.width, d.max_trans)
            except HollyError as exc:
                raise HollyError(f"{where}: {exc}") from None
        images = d.particles * d.augment
        if images < cfg.train.batch_size:
            raise HollyError(
                f"{where}: the training set has {images} images (data.particles x data.augment), "
                f"fewer than one batch of {cfg.train.batch_size}: raise data.particles or "
                "data.augment, or lower train.batch_size"
            )
    else:
        if not d.store:
            raise HollyError(f"{where}: data.source is zarr but data.store is empty")
        if d.store not in stores and not Path(d.store).exists():
            raise HollyError(
                f"{where}: image store {d.store!r} does not exist and is not made by the "
                f"workflow (stores: {', '.join(stores) or 'none'})"
            )
        if d.max_images is not None and d.max_images < cfg.train.batch_size:
            raise HollyError(
                f"{where}: data.max_images {d.max_images} is less than one batch of "
                f"{cfg.train.batch_size}; raise it or lower train.batch_size"
            )
    try:
        load_sigma_list(cfg.sigma.values)
    except HollyError as exc:
        raise HollyError(f"{where}: {exc}") from None


STRUCTURE_CHECKS = ("tetrahedron", "ring", "flat")


def resolve_structure(config: dict, experiments: dict, files: dict | None = None) -> dict:
    """``name -> structure check`` (``evaluation.structure``; holly evaluate ``--structure``).

    Keys are experiment names as written; the copies made for ``variants`` share their
    experiment's check. A check names ``tetrahedron``, ``ring`` or ``flat``; a ``model`` (ring: a
    file; tetrahedron: a folder of per-particle model files) must exist or be made by the
    workflow (a key of ``files``).
    """
    files = files or {}
    wanted = (config.get("evaluation") or {}).get("structure") or {}
    names = [entry["name"] for entry in config["experiments"]]
    out = {}
    for key, spec in wanted.items():
        where = f"evaluation.structure.{key}"
        if key not in names:
            raise HollyError(f"{where}: {key!r} is not an experiment ({', '.join(names)})")
        if not isinstance(spec, dict) or spec.get("check") not in STRUCTURE_CHECKS:
            raise HollyError(f"{where}: 'check' must be one of {', '.join(STRUCTURE_CHECKS)}")
        model = spec.get("model")
        # ring: a file of the model's sites; tetrahedron: a folder of each particle's posed model
        folder = spec["check"] == "tetrahedron"
        exists = model is not None and (Path(model).is_dir() if folder else Path(model).is_file())
        if model is not None and model not in files and not exists:
            raise HollyError(
                f"{where}: model {'folder' if folder else 'file'} {model!r} does not exist "
                f"(relative paths start in the working directory {Path.cwd()})"
            )
        if model is not None and spec["check"] == "flat":
            raise HollyError(f"{where}: 'model' is used by the ring and tetrahedron checks only")
        for name in experiments:
            if name == key or (name.startswith(key + "-") and name not in names):
                out[name] = dict(spec)
    return out


def plan(config: dict) -> dict:
    """Every plan-time check of a validated workflow config; returns the resolved pieces.

    Keys: ``records``, ``files``, ``stores``, ``localised`` (stores made by `holly localise`),
    ``experiments``, ``published``, ``structure`` (:func:`resolve_structure`), ``configs``
    (:func:`resolve_configs`) and ``half_sets`` (:func:`half_set_experiments`).
    """
    check_finite(config, "")
    records, files, stores = resolve_downloads(config)
    localised = resolve_localisations(config, stores)
    experiments, published = resolve_experiments(config, files, {**stores, **localised})
    configs = resolve_configs(experiments)
    return {
        "structure": resolve_structure(config, experiments, files),
        "configs": configs,
        "half_sets": half_set_experiments(configs),
        "records": records,
        "files": files,
        "stores": stores,
        "localised": localised,
        "experiments": experiments,
        "published": published,
    }


# -- the workflow's folders and runs ---------------------------------------------------------
def output_roots(results: str) -> tuple[str, str, str]:
    """The results, logs and benchmarks folders of the config's ``results`` folder.

    Logs and benchmarks of ``results/X`` go to ``logs/X`` and ``benchmarks/X``, so that two
    configs with their own results folders can share one working directory.
    """
    results = results.rstrip("/")
    below = os.path.relpath(results, "results")
    if below == ".":
        return results, "logs", "benchmarks"
    below = below.replace("../", "")
    return results, f"logs/{below}", f"benchmarks/{below}"


def resolve_configs(experiments: dict) -> dict:
    """``name -> ExperimentConfig`` (every default filled in) of :func:`resolve_experiments`'s
    experiments; resolved once here, not once per job and resource function."""
    return {name: from_dict(raw, where=f"experiment {name!r}") for name, raw in experiments.items()}


def half_set_experiments(configs: dict) -> list[str]:
    """The experiments with half-set validation (by default those trained on an image store),
    in config order."""
    return [name for name, cfg in configs.items() if cfg.half_sets]


# The half-set runs of an experiment, results/<experiment>/halves/<half>.
HALVES = ("half1", "half2")


def run_config(raw: dict, half: str | None = None) -> dict:
    """The config the workflow trains an experiment's own run with, or one of its half-set runs
    (``half`` one of :data:`HALVES`: ``validation.half`` is then 1 or 2).

    ``validation.half_sets`` is left out: the config is a parameter of the training job, so a
    change reruns it, and turning half-set validation on or off must not retrain the run.
    """
    raw = copy.deepcopy(raw)
    validation = raw.pop("validation", None) or {}
    validation.pop("half_sets", None)
    if half is not None:
        validation["half"] = HALVES.index(half) + 1
    return dict(raw, validation=validation) if validation else raw


# -- resources of a training job (estimates for a cluster's scheduler) -----------------------
def training_threads(cores: int, experiments: dict, half_sets: list[str]) -> int:
    """Threads of one training job: ``cores`` shared among every training (the experiments'
    own runs and their half-set runs), which run in parallel."""
    jobs = len(experiments) + len(HALVES) * len(half_sets)
    return max(1, int(cores) // max(1, jobs))


def training_mem_mb(cfg, attempt: int) -> int:
    """Memory of a training job (MB): a base plus twice the simulated images, grown per retry.

    An image store's size is not known before the workflow makes it: a fixed 8 GB per attempt.
    """
    if cfg.data.source != "simulated":
        return 8000 * attempt
    d, r = cfg.data, cfg.render
    image_mb = (d.particles + d.test_particles) * d.augment * r.height * r.width * 4 / 1e6
    return int(2000 + 2 * image_mb) * attempt


def training_images(cfg) -> int:
    """Training images the CNN phase presents (an estimate for an image store)."""
    images = cfg.train.epochs * cfg.data.particles * cfg.data.augment
    if cfg.data.source != "simulated":
        images = cfg.train.epochs * (cfg.data.max_images or 100_000)
    # train.steps: the epochs are derived, about `steps` batches whatever the data size
    if cfg.train.steps:
        images = cfg.train.steps * cfg.train.batch_size
    if cfg.train.max_steps:
        images = min(images, cfg.train.max_steps * cfg.train.batch_size)
    return images


def training_runtime(cfg, attempt: int) -> int:
    """Time limit of a training job (minutes), assuming at least 200 images/s; more per retry."""
    return int(30 + training_images(cfg) / 200 / 60) * attempt


def training_priority(cfg) -> int:
    """Longest training first, and every training before the light jobs after one (priority 0).

    With fewer cores than trainings (the default workflow on 2 cores: two trainings at a time),
    the last training to start sets the wall time, so it should be the shortest; and a finished
    training's evaluate/figures jobs should not hold the core a waiting training needs. The work
    estimate is images presented x pixels per image, in millions (1 at least).
    """
    return 1 + training_images(cfg) * cfg.render.height * cfg.render.width // 10**6
