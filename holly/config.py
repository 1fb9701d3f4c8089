"""The experiment configuration: frozen dataclasses with strict, validated loading.

A config is YAML or JSON with the sections below. Unknown keys, wrong types and out-of-range
values are errors that name the key. ``variant: paper`` (default) or ``variant: latest`` picks the
defaults of the two original code eras (PAPER mid-2021, which produced the published results, and
HEAD 2022); any key set explicitly overrides the variant's default.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from holly.errors import HollyError, one_line


def _spec(default: Any, *, lo=None, hi=None, choices=None, doc: str = "") -> Any:
    """A dataclass field with validation metadata (inclusive bounds, allowed values)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    source: str = _spec(
        "simulated",
        choices=("simulated", "zarr"),
        doc="simulated: rendered from `shape`; zarr: an image store",
    )
    shape: str = _spec("tetrapod", doc="built-in shape name or path to an OBJ/PLY/CSV file")
    fit_radius: float | None = _spec(
        None, lo=0.05, hi=2.0, doc="centre and scale the shape to this radius (model units)"
    )
    particles: int = _spec(2000, lo=1, doc="training particles (base samples)")
    test_particles: int = _spec(64, lo=1, doc="held-out particles")
    augment: int = _spec(1, lo=1, doc="in-plane rotated copies per particle (1 = none)")
    max_trans: float = _spec(0.1, lo=0.0, hi=1.0, doc="x/y translation range, model units")
    wobble: float = _spec(0.0, lo=0.0, hi=1.0, doc="Gaussian jitter of each fluorophore")
    dropout: float = _spec(0.0, lo=0.0, hi=0.99, doc="probability a vertex is missing")
    spawn_copies: int = _spec(1, lo=1, hi=64, doc="fluorophores per vertex (max_spawn)")
    spawn_rate: float = _spec(1.0, lo=0.0, hi=1.0, doc="probability each copy is present")
    store: str | None = _spec(None, doc="zarr image store (source: zarr)")
    test_fraction: float = _spec(0.05, lo=0.0, hi=0.9, doc="zarr: held-out fraction of particles")
    max_images: int | None = _spec(None, lo=1, doc="zarr: use at most this many images")
    preload: bool = _spec(True, doc="zarr: hold the current sigma level in memory (else stream)")


@dataclass(frozen=True)
class RenderConfig:
    height: int = _spec(128, lo=8, hi=4096)
    width: int = _spec(128, lo=8, hi=4096)
    order: str = _spec(
        "paper",
        choices=("paper", "latest"),
        doc="paper: translate then rotate; latest: rotate then translate",
    )
    data_blur: float | str = _spec(
        "auto",
        lo=0.0,
        hi=50.0,
        choices=("auto", "store"),
        doc="blur (pixels) the images carry beyond their sigma level, added in quadrature "
        "wherever the cloud is rendered: a localisation store's precision; 'store': the median "
        "localisation precision `holly localise` recorded in data.store (an error if none); "
        "'auto': that precision where data.store records one, else 0 (holly's own renders, "
        "FITS stores)",
    )


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = _spec("paper", choices=("paper", "latest"), doc="CNN layer table")
    rotation: str = _spec("axis_angle", choices=("axis_angle", "6d"), doc="rotation head")
    sigma_head: str = _spec(
        "softplus",
        choices=("softplus", "clamped", "none"),
        doc="softplus (paper), softplus clamped at 14 (latest), or none "
        "(render at the curriculum sigma)",
    )
    num_points: int = _spec(200, lo=1, hi=100000)
    pose_hypotheses: int = _spec(
        1,
        lo=1,
        hi=16,
        doc="rotation hypotheses per image (1: the original single pose); the loss takes the "
        "best-fitting one",
    )
    hypothesis_warmup: float = _spec(
        0.3,
        lo=0.0,
        hi=1.0,
        doc="fraction of the training steps over which the min over hypotheses is relaxed "
        "(non-winners share weight hypothesis_epsilon, decaying to 0)",
    )
    hypothesis_epsilon: float = _spec(
        0.5, lo=0.0, hi=0.99, doc="weight of the non-winning hypotheses at the start of warm-up"
    )
    pose_prior: str = _spec(
        "uniform",
        choices=("uniform", "tilt", "inplane"),
        doc="viewing directions the particles can show: uniform (any 3D view), tilt (within "
        "max_tilt_deg of the cloud's +z or -z: on a surface, either face up) or inplane (top "
        "views only: the cloud is kept flat and its z is reported unresolved); the CNN's poses, "
        "the pose search and the refinement keep to it (holly/method/viewprior.py)",
    )
    max_tilt_deg: float = _spec(
        30.0, lo=0.0, hi=90.0, doc="pose_prior tilt: the largest out-of-plane tilt, degrees"
    )


@dataclass(frozen=True)
class LossConfig:
    normalise: str = _spec(
        "batch",
        choices=("batch", "image", "none"),
        doc="batch: batch sums to 1000 (paper); image: each image to 100",
    )
    kind: str = _spec(
        "masked_l1",
        choices=("masked_l1", "l1", "l2", "poisson"),
        doc="masked_l1 (paper), l1, l2 (squared: its optimum is the mean image, not the "
        "median), or poisson (the deviance: the localisations' likelihood under the rendered "
        "density, also mean-seeking; for sparse labelling, holly/method/loss.py)",
    )
    mask_threshold: float = _spec(1e-4, lo=0.0, doc="masked_l1: pixels with target above this")


@dataclass(frozen=True)
class SigmaConfig:
    values: str | list[float] = _spec("bunny", doc="shipped list name or explicit list (pixels)")
    schedule: str = _spec("geometric", choices=("epoch", "geometric", "linear"))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _spec(40, lo=1, doc="passes over the training images (unless steps is set)")
    steps: int | None = _spec(
        None,
        lo=1,
        doc="CNN steps of the amortised phase: the epochs are derived from the data size "
        "(the fewest whole epochs giving at least this many) and epochs is ignored; null: "
        "use epochs",
    )
    batch_size: int = _spec(32, lo=1)
    lr: float = _spec(4e-4, lo=0.0, hi=1.0, doc="CNN learning rate")
    points_lr: float | None = _spec(None, lo=0.0, hi=1.0, doc="points learning rate (default lr)")
    weight_decay: float = _spec(0.01, lo=0.0, doc="AdamW weight decay of the CNN")
    points_weight_decay: float = _spec(0.0, lo=0.0, doc="AdamW weight decay of the points")
    log_every: int = _spec(100, lo=1, doc="steps between metric rows")
    test_images: int = _spec(256, lo=1, doc="held-out images scored at each log step")
    checkpoint_every: int = _spec(1000, lo=1)
    keep_checkpoints: int | None = _spec(
        3,
        lo=0,
        doc="newest periodic checkpoints kept besides last.pt (null: all, 0: last.pt only)",
    )
    snapshot_every: int = _spec(500, lo=1, doc="steps between point-cloud snapshots")
    max_steps: int | None = _spec(None, lo=1, doc="stop after this many steps (for tests)")
    threads: int | None = _spec(None, lo=1, doc="CPU threads for torch (default: all)")
    precision: str = _spec(
        "fp32",
        choices=("fp32", "bf16", "fp16"),
        doc="the pose CNN's arithmetic (renderer, loss and points stay fp32)",
    )
    compile: bool = _spec(False, doc="torch.compile the pose CNN (first steps slower)")
    channels_last: bool = _spec(
        False, doc="the pose CNN in channels-last memory layout (faster on some CPUs)"
    )


@dataclass(frozen=True)
class ValidationConfig:
    half_sets: bool | None = _spec(
        None,
        doc="also train two reconstructions on disjoint halves of the particles and report "
        "their FSC resolution (docs/validation.md); null: on for data.source zarr, off for "
        "simulated",
    )
    half: int | None = _spec(
        None,
        lo=1,
        hi=2,
        doc="train on this half (1 or 2) of the training particles only, with a seed derived "
        "from `seed` (`holly train --half`; the workflow sets it for the half-set runs)",
    )


@dataclass(frozen=True)
class RefineConfig:
    steps: int = _spec(
        0, lo=0, doc="per-image pose refinement steps after the amortised phase (0: none)"
    )
    images: int = _spec(
        512, lo=1, doc="training images in the pose table (a seeded subset; cost scales with it)"
    )
    batch_size: int = _spec(64, lo=1, doc="images per refinement batch")
    pose_lr: float = _spec(0.01, lo=0.0, hi=1.0, doc="Adam learning rate of the pose table")
    pose_steps: int = _spec(3, lo=1, hi=100, doc="pose updates per cloud update")
    points_lr: float = _spec(
        1e-3, lo=0.0, hi=1.0, doc="Adam learning rate of the cloud during refinement"
    )
    rescore_every: int = _spec(
        0, lo=0, doc="steps between re-scoring every table image's local candidates (0: never)"
    )
    global_steps: int = _spec(
        0,
        lo=0,
        doc="the first refinement steps in which each batch's poses are drawn afresh from a "
        "search over refine.table_rotations new random rotations against the current cloud "
        "(the best refine.table_keep refined by refine.ladder_steps pose steps), their old "
        "poses dropped: poses and cloud can then leave a wrong first cloud (0: the table's "
        "first search only)",
    )
    rebuild_rounds: int = _spec(
        0,
        lo=0,
        doc="rounds before the refinement steps, each searching every table image's pose "
        "afresh against the cloud (as refine.global_steps searches) and then rebuilding the "
        "cloud from a blob at those poses, held (its old points dropped): hard EM with a "
        "global refit; on the fully labelled simulated helix it left the CNN's mix of the "
        "shape and its mirror image, which the refinement keeps (0: none)",
    )
    rebuild_steps: int = _spec(
        800, lo=1, doc="refine.rebuild_rounds: batches of refine.batch_size that fit each cloud"
    )
    symmetries: int = _spec(
        12, lo=1, hi=64, doc="near-symmetries of the cloud tried as candidates (incl. identity)"
    )
    flips: bool = _spec(True, doc="also try the in-plane 180 deg turn and the mirrors")
    search_rotations: int = _spec(
        1024, lo=0, doc="held-out images: seeded random rotations added to the candidates"
    )
    search_sigma: float = _spec(
        3.0, lo=0.1, hi=50.0, doc="blur (pixels) at which candidates are scored"
    )
    table_rotations: int = _spec(
        256, lo=0, doc="pose table: seeded random rotations added to every image's candidates"
    )
    search_keep: int = _spec(
        4, lo=1, hi=16, doc="held-out images: distinct best candidates refined before choosing"
    )
    table_keep: int = _spec(
        2, lo=1, hi=16, doc="pose table: distinct best candidates refined before choosing"
    )
    ladder_steps: int = _spec(
        20, lo=0, doc="pose steps at each of three blur levels (search_sigma to the final one)"
    )
    fusion: bool = _spec(
        False,
        doc="start the refinement from a particle fusion of the run's own training particles "
        "(data.store's localisations, `holly fuse`'s method, kept as fusion.json in the run "
        "folder): the pose table at each image's in-plane pose in the fused frame, the cloud at "
        "the fused localisations' clusters; for top views (model.pose_prior: inplane)",
    )
    fusion_sigma: float | None = _spec(
        None,
        lo=1e-9,
        doc="fusion's registration kernel, in the store's localisation units (nm where it "
        "records them); null: the localisation precision, at least 3 % of the median particle "
        "width",
    )
    fusion_method: str = _spec(
        "both",
        choices=("both", "anneal", "pairs"),
        doc="fusion: anneal (every particle against a template of all others, annealed EM), "
        "pairs (pairwise registrations, angular synchronisation, bootstrap), or both (each, "
        "keeping the one whose particles fit each other better)",
    )
    fusion_rounds: int = _spec(12, lo=1, doc="fusion (anneal): annealing rounds")
    fusion_starts: int = _spec(
        3, lo=1, doc="fusion (anneal): random starts, the one fitting best kept"
    )
    fusion_mirror: bool = _spec(
        True,
        doc="fusion (anneal): a particle may lie face down (an origami on glass lands on "
        "either face; seen from the top it is the mirror image), so each one's mirror image is "
        "tried too (twice the annealing's time); its images then start the refinement from the "
        "other face. false: turns only, as the pairs are",
    )
    fusion_partners: int = _spec(
        64, lo=1, doc="fusion (pairs): random partners each particle is registered onto"
    )
    fusion_bootstrap: int = _spec(
        5, lo=0, doc="fusion (pairs): leave-one-out re-registration rounds onto the fused particle"
    )
    symmetry: int = _spec(
        1,
        lo=1,
        doc="the structure's N-fold rotational symmetry about its axis, declared (never "
        "inferred), e.g. 8 for nuclear pores: the refinement keeps the cloud N-fold symmetric "
        "about the model's z axis (model.num_points a multiple of N; refine.steps > 0), and "
        "the fusion (anneal) "
        "averages its template over the N turns; must divide the fusion's 72 rotations; 1: none",
    )
    fusion_sites: int = _spec(
        0,
        lo=0,
        doc="fusion (anneal): a template of this many discrete sites of equal weight, in "
        "orbits of refine.symmetry (e.g. 8 for a pore's corners), instead of the free density "
        "of all particles; for particles that each show a few sites; 0: the density",
    )
    start_points: str | None = _spec(
        None,
        doc="a point file (PLY, OBJ or CSV) in the model's units, e.g. an earlier run's "
        "points.ply or a reference model, whose points replace the CNN's cloud when the "
        "refinement starts (model.num_points of them, a seeded subset if it holds more; its "
        "checksum is recorded in provenance.json); null: the CNN's cloud",
    )


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = _spec("experiment")
    variant: str = _spec("paper", choices=("paper", "latest"))
    seed: int = _spec(0, lo=0)
    device: str = _spec("auto", choices=("auto", "cpu", "cuda"))
    data: DataConfig = field(default_factory=DataConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sigma: SigmaConfig = field(default_factory=SigmaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def points_lr(self) -> float:
        return self.train.lr if self.train.points_lr is None else self.train.points_lr

    @property
    def half_sets(self) -> bool:
        """Whether half-set validation runs: ``validation.half_sets``, or by default for an
        image store (real data) but not for simulated data."""
        v = self.validation.half_sets
        return self.data.source == "zarr" if v is None else v


# Defaults of HOLLy's HEAD (2022) era, applied under ``variant: latest`` before the user's keys.
LATEST_DEFAULTS = {
    "render": {"order": "latest"},
    "model": {"encoder": "latest", "sigma_head": "clamped"},
    "loss": {"normalise": "image", "kind": "l1"},
    "sigma": {"schedule": "linear"},
    "train": {"lr": 4e-3, "points_lr": 4e-4},
}


def merge(base: dict, over: dict) -> dict:
    """Deep merge of two config mappings: ``over`` wins, nested mappings are merged key by key.

    The result is a deep copy: changing it never changes ``base`` or ``over`` (e.g.
    :data:`LATEST_DEFAULTS`, or a workflow config's ``defaults`` shared by its experiments).
    """
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_defaults(recorded: dict) -> dict:
    """A run's recorded config with every key it lacks at today's default for its variant.

    A key missing from a run's ``config.yaml`` or checkpoint was added to holly after the run
    was made, so the run used what is now that key's default: resuming (holly/run/checkpoint.py)
    and comparing half-set runs (holly/results/halfsets.py) read it so."""
    defaults = from_dict({"variant": recorded.get("variant", "paper")}).to_dict()
    return merge(defaults, recorded)


def from_dict(raw: dict, where: str = "config") -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from plain data.

    Raises
    ------
    HollyError
        Naming the first offending key, e.g. ``config key 'train.epochs': must be >= 1``.
    """
    if not isinstance(raw, dict):
        raise HollyError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    variant = raw.get("variant", "paper")
    if variant == "latest":
        raw = merge(LATEST_DEFAULTS, raw)
    cfg = _build(ExperimentConfig, raw, where, prefix="")
    _check_symmetry(cfg, where)
    _check_rebuild(cfg, where)
    _check_start_points(cfg, where)
    return _rendered_data_blur(cfg)


FUSION_ROTATIONS = 72  # rotations the refinement's fusion tries (FusionParams.n_angles)


def fusion_prior_problem(
    symmetry: int, sites: int, method: str, rotations: int
) -> tuple[str, str] | None:
    """What is wrong with a fusion's declared symmetry and site count: the setting
    (``symmetry`` or ``sites``) and the words that follow its name, or None. The one rule
    behind the config's keys, ``holly fuse``'s options and :class:`FusionParams`."""
    if symmetry < 1 or rotations % symmetry:
        return "symmetry", (
            f"must be a whole number dividing the {rotations} rotations tried "
            f"(2, 3, 4, 6, 8, 9, 12, ...), got {symmetry}"
        )
    if sites < 0 or sites % symmetry:
        return "sites", (
            f"must be 0 (a free density) or a multiple of the symmetry ({symmetry}), the sites "
            f"forming its orbits; got {sites}"
        )
    if sites and method == "pairs":
        return "sites", (
            "is a template of the annealed fusion, not of pairs: choose the method anneal, "
            "or both (which then anneals only)"
        )
    return None


def _check_symmetry(cfg: ExperimentConfig, where: str) -> None:
    """``refine.symmetry`` agrees with the cloud, the fusion's rotations and its sites."""
    rc, points = cfg.refine, cfg.model.num_points
    problem = fusion_prior_problem(rc.symmetry, rc.fusion_sites, rc.fusion_method, FUSION_ROTATIONS)
    if problem:
        key = {"symmetry": "refine.symmetry", "sites": "refine.fusion_sites"}[problem[0]]
        raise HollyError(f"{where}: key '{key}' {problem[1]}")
    if points % rc.symmetry:
        raise HollyError(
            f"{where}: key 'model.num_points' ({points}) must be a multiple of "
            f"'refine.symmetry' ({rc.symmetry}): the cloud is {rc.symmetry} turns of one part; "
            f"e.g. {points - points % rc.symmetry} or {points + rc.symmetry - points % rc.symmetry}"
        )
    if rc.symmetry > 1 and rc.steps == 0:
        raise HollyError(
            f"{where}: key 'refine.symmetry' ({rc.symmetry}) acts in the refinement, which "
            "'refine.steps: 0' leaves out; set refine.steps (e.g. 300) or leave symmetry at 1"
        )


def _check_rebuild(cfg: ExperimentConfig, where: str) -> None:
    """``refine.rebuild_rounds`` is part of the refinement."""
    rc = cfg.refine
    if rc.rebuild_rounds and rc.steps == 0:
        raise HollyError(
            f"{where}: key 'refine.rebuild_rounds' ({rc.rebuild_rounds}) runs when the "
            "refinement starts, which 'refine.steps: 0' leaves out; set refine.steps (e.g. 300) "
            "or leave rebuild_rounds at 0"
        )


def _check_start_points(cfg: ExperimentConfig, where: str) -> None:
    """``refine.start_points`` needs a refinement, and is the only first cloud it is given."""
    rc = cfg.refine
    if rc.start_points is None:
        return
    if rc.steps == 0:
        raise HollyError(
            f"{where}: key 'refine.start_points' is where the refinement starts, which "
            "'refine.steps: 0' leaves out; set refine.steps (e.g. 300) or remove it"
        )
    if rc.fusion:
        raise HollyError(
            f"{where}: keys 'refine.start_points' and 'refine.fusion' both give the refinement "
            "its first cloud; keep one of them"
        )


def _rendered_data_blur(cfg: ExperimentConfig) -> ExperimentConfig:
    """``render.data_blur: auto`` as 0 for data that holly renders itself: they carry no blur
    beyond their level, and saying so here keeps their resolved configs (and so the runs the
    workflow compares against) as they were. On an image store ``auto`` is resolved when
    training starts, from what the store records (:func:`holly.data.datasets.resolve_data_blur`)."""
    if cfg.render.data_blur == "auto" and cfg.data.source != "zarr":
        return dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, data_blur=0.0))
    return cfg


def _build(cls, raw: dict, where: str, prefix: str):
    if not isinstance(raw, dict):
        raise HollyError(f"{where}: key '{prefix.rstrip('.')}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise HollyError(
            f"{where}: unknown key '{prefix}{unknown[0]}'; allowed keys here: {sorted(fields)}"
        )
    values = {}
    for name, value in raw.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, where, key + ".")
        else:
            values[name] = _check(value, hint, fields[name].metadata, key, where)
    return cls(**values)


def _check(value, hint, meta, key: str, where: str):
    def fail(msg: str):
        raise HollyError(f"{where}: key '{key}' {msg}")

    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        fail("must not be empty")
    ok = None
    for opt in options:
        origin = typing.get_origin(opt)
        if opt is bool and isinstance(value, bool):
            ok = value
        elif opt is int and isinstance(value, int) and not isinstance(value, bool):
            ok = value
        elif opt is float and isinstance(value, int | float) and not isinstance(value, bool):
            ok = float(value)
        elif opt is str and isinstance(value, str):
            ok = value
        elif origin is list and isinstance(value, list):
            if not value or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                fail("must be a non-empty list of numbers")
            ok = [float(v) for v in value]
            if not all(math.isfinite(v) for v in ok):
                fail(f"must hold finite numbers only, got {value!r}")
        if ok is not None:
            break
    if ok is None:
        names = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
        fail(f"must be {names}, got {value!r}")
    # choices name the allowed strings; a field that also takes a number takes any in range
    if meta.get("choices") and isinstance(ok, str) and ok not in meta["choices"]:
        fail(f"must be one of {list(meta['choices'])}, got {ok!r}")
    if isinstance(ok, float) and not math.isfinite(ok):
        fail(f"must be a finite number, got {value!r}")
    if isinstance(ok, int | float) and not isinstance(ok, bool):
        if meta.get("lo") is not None and ok < meta["lo"]:
            fail(f"must be >= {meta['lo']}, got {ok}")
        if meta.get("hi") is not None and ok > meta["hi"]:
            fail(f"must be <= {meta['hi']}, got {ok}")
    return ok


def load_config(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """Read a YAML or JSON experiment config file, apply ``overrides``, and validate."""
    path = Path(path)
    if not path.is_file():
        raise HollyError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HollyError(f"config file {path} is not valid YAML/JSON: {one_line(exc)}") from None
    if raw is None or raw == {}:
        raise HollyError(
            f"config file {path} is empty; start from the tuned defaults with "
            "`holly config-default > my.yaml`"
        )
    if overrides:
        raw = merge(raw, overrides)
    return from_dict(raw, where=str(path))


def describe() -> list[dict]:
    """Every key with type, default, bounds and doc: drives config/README.md and schema tests."""
    rows = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], prefix + f.name + ".")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append(
                {
                    "key": prefix + f.name,
                    "type": str(hints[f.name]),
                    "default": default,
                    **{k: f.metadata.get(k) for k in ("lo", "hi", "choices", "doc")},
                }
            )

    walk(ExperimentConfig, "")
    return rows
