"""The README's robustness table: how well holly reconstructs simulated localisation data as the
labelling, the localisation precision and the view range move away from a base condition.

``tools/robustness.py`` runs the sweep; this module holds everything it needs that can be tested
without training: the grid of cells, each cell's seed, the ``holly`` command lines of a cell, the
resumable loop over cells (the command runner is passed in), and the rows and tables made from
the finished cells' evaluations.

**The grid.** For each shape (the default workflow's cep152, tetrapod and helix, and the flat
sparse ``logo``) one factor at a time moves from the base condition, labelling 30 %, precision
10 % of the structure's size (``sigma_xy = sigma_z``), uniform views: labelling 100 / 50 %,
precision 5 / 20 %, views tilt <= 30 deg / in-plane. Seven cells per shape, the base counted
once. ``with_prior`` adds the tilt and in-plane cells once more with the pose prior that matches
their views (``model.pose_prior``), on the same simulated data (same seed).

**A cell** runs, each step through the ``holly`` command line as a user would:
``simulate-localisations`` → ``localise`` → ``train`` (with ``half_sets``: the two half-set runs
too, and ``compare``) → ``evaluate --locsim-truth`` (:mod:`holly.results.locsimtruth`). Its
record, ``OUT/cells/<cell>.json``, is written atomically when the cell ends, finished or
failed (with the error); a finished cell is skipped on a rerun, a failed one is tried again.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from holly.atomic import atomic_path, write_json
from holly.data.locsim import structure_nm
from holly.errors import HollyError
from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)

SHAPES = ("cep152", "tetrapod", "helix", "logo")  # config/config.yaml's three, and the flat one
BASE = {"labelling": 0.3, "precision": 0.10, "views": "uniform"}
MAX_TILT_DEG = 30.0
# (condition, the factor it moves, its value): one factor at a time around BASE
CONDITIONS = (
    ("base", None, None),
    ("label100", "labelling", 1.0),
    ("label50", "labelling", 0.5),
    ("prec5", "precision", 0.05),
    ("prec20", "precision", 0.20),
    ("tilt30", "views", "tilt"),
    ("inplane", "views", "inplane"),
)
# the pose prior that matches a cell's views (config keys of the model section)
PRIORS = {
    "tilt": {"pose_prior": "tilt", "max_tilt_deg": MAX_TILT_DEG},
    "inplane": {"pose_prior": "inplane"},
}
STATUS_DONE, STATUS_FAILED = "done", "failed"


@dataclass(frozen=True)
class Cell:
    """One cell of the sweep: a shape under one condition, with or without the pose prior."""

    shape: str
    condition: str
    labelling: float
    precision: float  # sigma_xy = sigma_z, as a fraction of the structure's size
    views: str
    prior: bool = False

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.condition}" + ("-prior" if self.prior else "")

    @property
    def data_name(self) -> str:
        """The simulated data's name: a cell and its prior variant share their data."""
        return f"{self.shape}-{self.condition}"


def grid(shapes: Sequence[str] = SHAPES, with_prior: bool = False) -> list[Cell]:
    """The cells, shape by shape in :data:`CONDITIONS` order (prior variants after their cell)."""
    cells = []
    for shape in shapes:
        size_nm(shape)  # an unknown shape is an error here, before any cell runs
        for condition, factor, value in CONDITIONS:
            values = dict(BASE) | ({factor: value} if factor else {})
            cell = Cell(shape, condition, values["labelling"], values["precision"], values["views"])
            cells.append(cell)
            if with_prior and cell.views in PRIORS:
                cells.append(Cell(**(asdict(cell) | {"prior": True})))
    return cells


def select(cells: list[Cell], names: Sequence[str] | None) -> list[Cell]:
    """The cells whose condition or full name is in ``names`` (all for None); HollyError
    naming the choices when a name matches nothing."""
    if not names:
        return cells
    known = {c.condition for c in cells} | {c.name for c in cells}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HollyError(f"--cells {unknown[0]!r}: not a cell; choose from {sorted(known)}")
    return [c for c in cells if c.condition in names or c.name in names]


def cell_seed(seed: int, cell: Cell) -> int:
    """The seed of a cell's simulation and training: a pure function of ``seed`` and the cell's
    data (``crc32`` of its name, the same on every platform and Python), so a cell's prior
    variant trains on the same particles and reruns reproduce it."""
    key = zlib.crc32(cell.data_name.encode())
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0] >> 1)


# ---------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    """Data and training size of a sweep: particles and images, and the training config."""

    particles: int
    size_px: int
    perturbations: int
    sigmas: tuple[float, ...]
    test_fraction: float
    train: dict = field(default_factory=dict)  # config sections: model, loss, sigma, train, ...


_REFINE_DEFAULT = {"steps": 300, "images": 512, "table_rotations": 128, "search_rotations": 512}
_WORKFLOW = {  # config/config.yaml's defaults (tests/test_robustness.py keeps them equal)
    "model": {"num_points": 150, "rotation": "6d", "pose_hypotheses": 4},
    "loss": {"kind": "l1"},
    "sigma": {"values": [6.0, 4.0, 2.8, 2.0, 1.4, 1.0], "schedule": "geometric"},
    "train": {
        "batch_size": 32,
        "lr": 4.0e-4,
        "points_lr": 5.0e-3,
        "log_every": 100,
        "test_images": 256,
        "snapshot_every": 100,
        "checkpoint_every": 1000,
    },
    "refine": _REFINE_DEFAULT,
}
SIGMAS_64 = (6.0, 4.0, 2.8, 2.0, 1.4, 1.0)
SCALES = {
    # a few seconds of training: exercises the chain, learns nothing
    "tiny": Scale(
        particles=24,
        size_px=32,
        perturbations=2,
        sigmas=(3.0, 1.5),
        test_fraction=0.2,
        train={
            "model": {"num_points": 24},
            "sigma": {"values": [3.0, 1.5]},
            "train": {"steps": 8, "batch_size": 16, "log_every": 4, "snapshot_every": 4},
            "refine": {"steps": 4, "images": 16, "table_rotations": 16, "search_rotations": 32},
        },
    ),
    # a reconstruction in ~5 minutes on one thread: the workflow's method, 3/4 of its steps
    # (400 particles and 600 steps gave Chamfer/blob 0.65, pose error 90 deg: too short)
    "small": Scale(
        particles=600,
        size_px=64,
        perturbations=8,
        sigmas=SIGMAS_64,
        test_fraction=0.05,
        train=_WORKFLOW | {"train": _WORKFLOW["train"] | {"steps": 1500, "test_images": 128}},
    ),
    # the default workflow's training: 2,000 CNN steps (its 2 epochs of 32,000 images)
    "default": Scale(
        particles=1000,
        size_px=64,
        perturbations=8,
        sigmas=SIGMAS_64,
        test_fraction=0.05,
        train=_WORKFLOW | {"train": _WORKFLOW["train"] | {"steps": 2000}},
    ),
}


def size_nm(shape: str) -> float:
    """The simulated structure's diameter in nm (what the precision is a fraction of)."""
    return structure_nm(shape, None)[1]


LOCALISE = "localise"  # --set localise.NAME=VALUE: an option of `holly localise`


def localise_options(overrides: dict | None) -> list[str]:
    """``holly localise`` options from the ``localise.NAME`` keys of ``overrides``: ``--NAME
    VALUE``, or the bare flag for ``true`` (``localise.size_cut=true``; ``false`` leaves it out)."""
    argv = []
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section != LOCALISE:
            continue
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


def train_config(
    cell: Cell,
    scale: Scale,
    seed: int,
    store: Path,
    half: int | None,
    overrides: dict | None = None,
) -> dict:
    """The ``holly train --config-json`` of a cell (one thread; ``half``: a half-set run), with
    ``overrides`` (``{"section.key": value}``, e.g. ``{"loss.kind": "l2"}``) set last."""
    cfg = json.loads(json.dumps(scale.train))  # a deep copy
    cfg |= {"seed": seed, "device": "cpu"}
    cfg["data"] = {"source": "zarr", "store": str(store), "test_fraction": scale.test_fraction}
    # the localisations' precision, recorded by `holly localise`, blurs every rendering of
    # the cloud as it blurs the images (render.data_blur; without it the cloud spreads)
    cfg["render"] = {"height": scale.size_px, "width": scale.size_px, "data_blur": "store"}
    cfg["train"] = cfg.get("train", {}) | {"threads": 1, "test_images": _test_images(scale)}
    if cell.prior:
        cfg["model"] = cfg.get("model", {}) | PRIORS[cell.views]
    if half is not None:
        cfg["validation"] = {"half": half}
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section == LOCALISE:
            continue  # an option of `holly localise` (see :func:`commands`)
        if not name:
            raise HollyError(f"--set {key}: expected SECTION.KEY=VALUE, e.g. loss.kind=l2")
        cfg[section] = cfg.get(section, {}) | {name: value}
    return cfg


def _test_images(scale: Scale) -> int:
    return int(scale.train.get("train", {}).get("test_images", 8))


def commands(
    cell: Cell, scale: Scale, seed: int, work: Path, overrides: dict | None = None
) -> list[tuple[str, list[str]]]:
    """The ``holly`` command lines of a cell, in order, as ``(step, argv after "holly")``;
    ``overrides`` as in :func:`train_config`, where ``localise.NAME`` keys become ``holly
    localise --NAME VALUE`` options instead (e.g. ``{"localise.centre": "centroid"}``)."""
    sim, store, run = work / "sim.csv", work / "store.zarr", RunFolder(work / "run")
    sigma = cell.precision * size_nm(cell.shape)
    simulate = ["simulate-localisations", "--out", str(sim), "--shape", cell.shape]
    simulate += ["--particles", str(scale.particles), "--labelling", str(cell.labelling)]
    simulate += ["--sigma-xy-nm", f"{sigma:g}", "--sigma-z-nm", f"{sigma:g}"]
    simulate += ["--views", cell.views, "--max-tilt", f"{MAX_TILT_DEG:g}", "--seed", str(seed)]
    localise = ["localise", str(sim), "--particle-column", "particle", "--out", str(store)]
    localise += ["--sigmas", ",".join(f"{s:g}" for s in scale.sigmas)]
    localise += ["--size", str(scale.size_px), "--perturbations", str(scale.perturbations)]
    localise += ["--seed", str(seed)]
    localise += localise_options(overrides)
    steps = [("simulate", simulate), ("localise", localise)]
    for half, folder in ((None, run), (1, run.half(1)), (2, run.half(2))):
        cfg = json.dumps(train_config(cell, scale, seed, store, half, overrides))
        name = "train" if half is None else f"train_half{half}"
        steps.append((name, ["train", "--config-json", cfg, "--out", str(folder.root)]))
    compare = ["compare", str(run.half(1).root), str(run.half(2).root)]
    steps.append(("compare", compare + ["--out", str(run.halfsets), "--seed", "0"]))
    steps.append(("evaluate", ["evaluate", str(run.root), "--locsim-truth", str(sim)]))
    return steps


# ---------------------------------------------------------------- running cells

Runner = Callable[[list[str], Path], None]  # (argv after "holly", log file); raises on failure


def cell_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.name}.json"


def read_cell(out: Path, cell: Cell) -> dict | None:
    """A cell's record, or None when it has none (or an unreadable one: it is run again)."""
    path = cell_path(out, cell)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): the cell runs again", path, exc)
        return None


def run_cell(
    cell: Cell,
    out: Path,
    scale_name: str,
    seed: int,
    runner: Runner,
    half_sets: bool,
    overrides: dict | None = None,
) -> dict:
    """Run one cell afresh in ``OUT/work/<cell>`` and write its record (done or failed);
    ``overrides`` as in :func:`train_config`."""
    cseed = cell_seed(seed, cell)
    work = Path(out) / "work" / cell.name
    shutil.rmtree(work, ignore_errors=True)  # an interrupted attempt leaves nothing to trust
    work.mkdir(parents=True)
    steps = cell_steps(cell, out, scale_name, seed, half_sets, overrides)
    record = {"cell": cell.name, **asdict(cell), "seed": cseed, "base_seed": seed}
    record |= {"scale": scale_name, "half_sets": half_sets, "size_nm": size_nm(cell.shape)}
    record["overrides"] = dict(overrides or {})
    record |= {"commands": [["holly", *argv] for _, argv in steps], "timings_s": {}}
    try:
        for step, argv in steps:
            # a cell trains for minutes: say what runs, and where its log is to follow it
            log.info("cell %s: %s (log: %s)", cell.name, step, work / "logs" / f"{step}.log")
            start = time.perf_counter()
            runner(argv, work / "logs" / f"{step}.log")
            record["timings_s"][step] = time.perf_counter() - start
        record |= {"status": STATUS_DONE, "error": None, **cell_scores(work, half_sets)}
        log.info(
            "cell %s done in %.1f min: Chamfer / blob %s, pose error median %s deg",
            cell.name,
            sum(record["timings_s"].values()) / 60,
            _fmt(record.get("chamfer_ratio_to_blob"), "{:.2f}"),
            _fmt(record.get("pose_error_median_deg"), "{:.1f}"),
        )
    except Exception as exc:  # a failed cell is recorded, with its error, and the sweep goes on
        log.error("cell %s failed: %s", cell.name, exc)
        record |= {"status": STATUS_FAILED, "error": f"{type(exc).__name__}: {exc}"}
        record["traceback"] = traceback.format_exc()
    record["minutes"] = sum(record["timings_s"].values()) / 60
    write_json(cell_path(out, cell), record)
    return record


def cell_steps(
    cell: Cell, out: Path, scale_name: str, seed: int, half_sets: bool, overrides: dict | None
) -> list[tuple[str, list[str]]]:
    """The steps :func:`run_cell` runs for ``cell`` (:func:`commands`, without the half-set
    runs unless ``half_sets``)."""
    work = Path(out) / "work" / cell.name
    steps = commands(cell, SCALES[scale_name], cell_seed(seed, cell), work, overrides)
    if not half_sets:
        steps = [s for s in steps if not s[0].startswith(("train_half", "compare"))]
    return steps


def cell_scores(work: Path, half_sets: bool) -> dict:
    """A finished cell's resolved training config and its scores (:func:`scores`)."""
    run = RunFolder(work / "run")
    halves = run.read_halfsets() if half_sets else None
    return {"config": run.read_config(), **scores(run.read_evaluation(), halves)}


def scores(evaluation: dict, halfsets: dict | None = None) -> dict:
    """The table's numbers from a cell's ``evaluation.json`` (with ``--locsim-truth``) and,
    with half sets, its ``halfsets.json``."""
    pose = evaluation.get("pose_error_deg") or {}
    views = evaluation.get("views") or {}
    truth = evaluation.get("locsim_truth") or {}
    out = {
        "chamfer_ratio_to_blob": evaluation.get("chamfer_ratio_to_blob"),
        "fscore": (evaluation.get("reconstruction") or {}).get("fscore"),
        "pose_error_median_deg": pose.get("median"),
        "pose_error_amortised_median_deg": pose.get("amortised_median"),
        "flatness": views.get("flatness"),
        "tilt_p90_deg": (views.get("tilt_deg") or {}).get("p90"),
        "cone_deg": (views.get("tilt_deg") or {}).get("cone_deg"),
        "views_verdict": views.get("verdict"),
        "unresolved_z": views.get("unresolved_z"),
        "tilt_p90_simulated_deg": (truth.get("simulated_tilt_deg") or {}).get("p90"),
        "resolution_0143": None,
        "resolution_0143_nm": None,
        "resolution_0143_fraction": None,
    }
    if halfsets:
        res, res_nm = halfsets.get("resolution_0143"), halfsets.get("resolution_0143_nm")
        size = truth.get("size_model_units")
        out["resolution_0143"], out["resolution_0143_nm"] = res, res_nm
        out["resolution_0143_fraction"] = res / size if res is not None and size else None
    return out


def run_cells(
    cells: Sequence[Cell],
    out: Path,
    scale: str,
    seed: int,
    runner: Runner,
    half_sets: bool = False,
    jobs: int = 1,
    overrides: dict | None = None,
) -> list[dict]:
    """Every cell's record: finished ones read back, the others run (``jobs`` at a time); a
    record made with other ``overrides`` (:func:`train_config`) is run again."""
    if scale not in SCALES:
        raise HollyError(f"--scale {scale!r}: choose from {', '.join(SCALES)}")
    overrides = dict(overrides or {})
    todo = [c for c in cells if _unfinished(out, c, scale, half_sets, overrides)]
    log.info("%d of %d cells to run (%s scale)", len(todo), len(cells), scale)
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(jobs) as pool:
            list(
                pool.map(
                    lambda c: run_cell(c, out, scale, seed, runner, half_sets, overrides), todo
                )
            )
    else:
        for c in todo:
            run_cell(c, out, scale, seed, runner, half_sets, overrides)
    return [read_cell(out, c) for c in cells]


def _unfinished(out: Path, cell: Cell, scale: str, half_sets: bool, overrides: dict) -> bool:
    record = read_cell(out, cell)
    if record is None or record.get("status") != STATUS_DONE:
        return True
    if record.get("overrides", {}) != overrides:
        log.warning("%s was run with other --set overrides: it runs again", cell.name)
        return True
    if record.get("scale") != scale or (half_sets and not record.get("half_sets")):
        log.warning("%s was run at another scale or without half sets: it runs again", cell.name)
        return True
    seed, halves = record.get("base_seed", 0), bool(record.get("half_sets"))
    steps = cell_steps(cell, out, scale, seed, halves, overrides)
    if record.get("commands") != [["holly", *argv] for _, argv in steps]:
        log.warning("%s was run with other commands (older settings): it runs again", cell.name)
        return True
    log.info("%s is finished: skipped", cell.name)
    return False


# ---------------------------------------------------------------- tables

# (record key, markdown header, format) of robustness.md, after shape and condition
TABLE_COLUMNS = (
    ("chamfer_ratio_to_blob", "Chamfer / blob", "{:.2f}"),
    ("pose_error_median_deg", "pose error median (°)", "{:.1f}"),
    ("resolution", "half-set resolution (% size / nm)", None),
    ("flatness", "flatness", "{:.2f}"),
    ("tilt_p90", "tilt p90 reported / simulated (°)", None),
    ("minutes", "minutes", "{:.1f}"),
)
CSV_COLUMNS = (
    "cell",
    "shape",
    "condition",
    "prior",
    "labelling",
    "precision",
    "views",
    "status",
    "chamfer_ratio_to_blob",
    "fscore",
    "pose_error_median_deg",
    "pose_error_amortised_median_deg",
    "resolution_0143",
    "resolution_0143_nm",
    "resolution_0143_fraction",
    "flatness",
    "tilt_p90_deg",
    "tilt_p90_simulated_deg",
    "cone_deg",
    "views_verdict",
    "minutes",
    "seed",
    "error",
)


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return spec.format(value)


def table_cell(record: dict, key: str, spec: str | None) -> str:
    """One markdown table entry of a finished cell's record."""
    if key == "resolution":
        frac, nm = record.get("resolution_0143_fraction"), record.get("resolution_0143_nm")
        return "–" if frac is None else f"{100 * frac:.0f} % / {_fmt(nm, '{:.0f}')} nm"
    if key == "tilt_p90":
        reported, simulated = record.get("tilt_p90_deg"), record.get("tilt_p90_simulated_deg")
        return f"{_fmt(reported, '{:.0f}')} / {_fmt(simulated, '{:.0f}')}"
    return _fmt(record.get(key), spec)


def markdown(records: Sequence[dict]) -> str:
    """``robustness.md``: a row per shape and condition; a failed cell shows its error."""
    headers = ["shape", "condition", *(h for _, h, _ in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in records:
        condition = r["condition"] + (" + prior" if r.get("prior") else "")
        if r.get("status") == STATUS_DONE:
            entries = [table_cell(r, key, spec) for key, _, spec in TABLE_COLUMNS]
        else:
            error = (r.get("error") or "not run").replace("|", "/").splitlines()[0][:80]
            entries = [f"failed: {error}"] + [""] * (len(TABLE_COLUMNS) - 1)
        lines.append("| " + " | ".join([r["shape"], condition, *entries]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, records: Sequence[dict]) -> tuple[Path, Path]:
    """``OUT/robustness.csv`` (every column of :data:`CSV_COLUMNS`) and ``OUT/robustness.md``."""
    import pandas as pd

    rows = [{k: r.get(k) for k in CSV_COLUMNS} for r in records]
    csv_path, md_path = Path(out) / "robustness.csv", Path(out) / "robustness.md"
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(records))
    return csv_path, md_path


def placeholder(cell: Cell) -> dict:
    """The record of a cell that has none (never run): shown as failed, not dropped."""
    return {"cell": cell.name, **asdict(cell), "status": "not run", "error": "not run"}


def records_or_placeholders(out: Path, cells: Sequence[Cell]) -> list[dict]:
    """Each cell's record, or :func:`placeholder` where it has none."""
    return [read_cell(out, c) or placeholder(c) for c in cells]
