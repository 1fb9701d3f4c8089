"""The Snakemake workflow: lint, format, schema, dry runs, bad configs, and the whole DAG on a
tiny config (CPU, about a minute) with its outputs, summary table and report checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from conftest import ROOT, body_errors, job_counts, viewer_states

from holly.commands.config_schema import experiment_schema, schema_text
from holly.config import describe

TINY = ROOT / "tests" / "config" / "tiny.yaml"
DEFAULT = ROOT / "config" / "config.yaml"
BIN = str(Path(sys.executable).parent)  # the `holly` script of this environment


def snakemake(*args, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(cwd),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


# ---------------------------------------------------------------- static checks


def test_lint_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_clean():
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    proc = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_experiment_schema_is_current():
    committed = (ROOT / "workflow" / "schemas" / "experiment.schema.yaml").read_text()
    assert committed == schema_text(), (
        "workflow/schemas/experiment.schema.yaml is out of date with holly/config.py; run "
        "`holly config-schema --out workflow/schemas/experiment.schema.yaml`"
    )


def test_experiment_schema_covers_every_key():
    schema = experiment_schema()
    for row in describe():
        node = schema
        for part in row["key"].split("."):
            assert node.get("additionalProperties") is False, row["key"]
            node = node["properties"][part]
        assert "default" not in node  # Snakemake would fill it in over the variant's default


def _workflow_validator():
    from referencing import Registry, Resource

    schemas = ROOT / "workflow" / "schemas"
    main = yaml.safe_load((schemas / "config.schema.yaml").read_text())
    exp = yaml.safe_load((schemas / "experiment.schema.yaml").read_text())
    registry = Registry().with_resource("experiment.schema.yaml", Resource.from_contents(exp))
    return jsonschema.Draft202012Validator(main, registry=registry)


@pytest.mark.parametrize("path", [DEFAULT, TINY])
def test_shipped_configs_valid(path):
    _workflow_validator().validate(yaml.safe_load(path.read_text()))


def test_a_config_of_only_experiments_gets_the_tuned_defaults(tmp_path):
    """issue: `--configfile my.yaml` holding only `experiments:` used holly's bare defaults."""
    (tmp_path / "my.yaml").write_text("experiments:\n  - name: mine\n    data: {shape: helix}\n")
    proc = snakemake("-n", "-p", "--cores", "1", "--configfile", "my.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    cfg = json.loads(re.search(r"--config-json '(\{.*?\})'", out).group(1))
    tuned = yaml.safe_load(DEFAULT.read_text())["defaults"]
    assert cfg["name"] == "mine" and cfg["model"]["rotation"] == tuned["model"]["rotation"] == "6d"
    assert cfg["render"] == tuned["render"] and cfg["loss"] == tuned["loss"]
    assert "results/mine/points.ply" in out and "cep152" not in out


def test_previous_defaults_overlay_plans_the_old_experiments(tmp_path):
    """config/examples/previous-defaults.yaml (the README's "before" row) over config.yaml:
    one pose head, no refinement, 3000 CNN steps (cep152 2000 on 4000 particles)."""
    overlay = ROOT / "config" / "examples" / "previous-defaults.yaml"
    args = ("-n", "-p", "--cores", "2", "--configfile", str(DEFAULT), str(overlay))
    proc = snakemake(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    found = re.findall(r"--config-json '(\{.*?\})' --out results/previous-defaults/(\w+)", out)
    configs = {name: json.loads(text) for text, name in found}
    assert configs.keys() == {"cep152", "tetrapod", "helix"}
    for cfg in configs.values():
        assert cfg["model"]["pose_hypotheses"] == 1 and cfg["refine"]["steps"] == 0
        assert cfg["model"]["rotation"] == "6d"  # the tuned defaults otherwise
    assert configs["tetrapod"]["train"]["epochs"] == 3
    assert (configs["cep152"]["train"]["epochs"], configs["cep152"]["data"]["particles"]) == (
        2,
        4000,
    )


def test_default_dry_run_lists_expected_jobs(tmp_path):
    proc = snakemake("-n", cwd=tmp_path)  # no config/ here: the repository's default is used
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {
        "train": 3,
        "evaluate": 3,
        "figures": 3,
        "viewer": 3,
        "summarise": 1,
        "report": 1,
        "all": 1,
    }
    # longest training first (cep152 trains on fewer particles), every training before the
    # light jobs (priority 0), so the shortest one runs last when two train at a time
    jobs = re.split(r"^(?:local)?rule (\w+):$", proc.stdout + proc.stderr, flags=re.M)[1:]
    priority = {}
    for rule, block in zip(jobs[::2], jobs[1::2], strict=True):
        value = re.search(r"^    priority: (\d+)$", block, re.M)
        if rule == "train":
            name = re.search(r"wildcards: experiment=(\w+)", block).group(1)
            priority[name] = int(value.group(1))
        else:
            assert value is None, f"{rule} has a priority"
    assert priority["tetrapod"] == priority["helix"] > priority["cep152"] >= 1, priority


def _bad(tmp_path, edit) -> subprocess.CompletedProcess:
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path)
    assert proc.returncode != 0
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    return proc


BAD_CONFIGS = {
    "typo in a key": (lambda c: c["defaults"]["train"].update(epoch=3), r"'epoch' was unexpected"),
    "negative size": (
        lambda c: c["defaults"]["render"].update(height=-32),
        r"-32 is less than the minimum of 8",
    ),
    # the plan-time checks of holly/plan.py, as a user meets them (the rest: tests/test_plan.py)
    "NaN learning rate": (
        lambda c: c["defaults"]["train"].update(lr=float("nan")),
        r"Invalid config: defaults\.train\.lr: must be a finite number",
    ),
    "reserved name": (
        lambda c: c["experiments"][0].update(name="summary.csv"),
        r"experiment name 'summary.csv' is reserved",
    ),
    "batch larger than the data": (
        lambda c: c["defaults"]["train"].update(batch_size=4096),
        r"fewer than one batch of 4096",
    ),
    "sigma 0": (lambda c: c["defaults"]["sigma"].update(values=[2.0, 0.0]), r"must be positive"),
    "unknown section": (lambda c: c.update(figure={"dpi": 3}), r"'figure' was unexpected"),
    "bad figure option": (lambda c: c["figures"].update(format="gif"), r"'gif' is not one of"),
    "no name": (lambda c: c["experiments"][0].pop("name"), r"'name' is a required property"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_fails_before_any_job(tmp_path, case):
    edit, message = BAD_CONFIGS[case]
    proc = _bad(tmp_path, edit)
    assert re.search(message, proc.stderr), proc.stderr[-3000:]


# ---------------------------------------------------------------- the whole DAG, tiny


def _have_train() -> bool:
    return importlib.util.find_spec("holly.commands.train") is not None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the whole workflow once on tests/config/tiny.yaml (2 cores) in a temp folder.

    The second experiment's shape is replaced by an OBJ file in the working folder, to cover
    shapes given as paths. The config used is left at ``<folder>/tiny.yaml``.
    """
    if not _have_train():
        pytest.skip("holly train not available")
    from holly.data.pointio import write_points
    from holly.data.shapes import builtin_shape

    work = tmp_path_factory.mktemp("workflow")
    write_points(work / "shape.obj", 3.0 * builtin_shape("cep152"))  # arbitrary units
    cfg = yaml.safe_load(TINY.read_text())
    cfg["experiments"][1]["data"] = {"shape": "shape.obj", "fit_radius": 1.5}
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake("--cores", "2", "--configfile", "tiny.yaml", "--show-failed-logs", cwd=work)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return work


EXPERIMENTS = ("tetrapod", "cep152-latest")


@pytest.mark.workflow
def test_tiny_declared_outputs(tiny_run):
    for name in EXPERIMENTS:
        run = tiny_run / "results" / name
        for f in (
            "points.ply",
            "metrics.csv",
            "samples.npz",
            "config.yaml",
            "provenance.json",
            "initial_points.ply",
            "checkpoints/last.pt",
            "evaluation.json",
            "viewer.html",
            "figures/loss.png",
            "figures/sigma.png",
            "figures/montage.png",
            "figures/views.png",
            "figures/pose_error.png",
        ):
            assert (run / f).is_file() and (run / f).stat().st_size > 0, f"{name}/{f}"
        assert list((run / "snapshots").glob("points_*.ply"))
        assert (tiny_run / "logs" / name / "train.log").is_file()
        bench = pd.read_csv(tiny_run / "benchmarks" / name / "train.tsv", sep="\t")
        assert bench["max_rss"].iloc[0] < 2048  # MB
    for f in ("summary.csv", "summary.html", "figures/comparison.png", "report.html"):
        assert (tiny_run / "results" / f).is_file(), f
    # each experiment got its own resolved config, variant defaults applied by holly
    cfg = yaml.safe_load((tiny_run / "results" / "cep152-latest" / "config.yaml").read_text())
    assert cfg["variant"] == "latest" and cfg["render"]["order"] == "latest"
    assert cfg["data"]["shape"] == "shape.obj" and cfg["render"]["height"] == 32


@pytest.mark.workflow
def test_tiny_summary_table(tiny_run):
    df = pd.read_csv(tiny_run / "results" / "summary.csv")
    assert list(df["experiment"]) == list(EXPERIMENTS)
    assert list(df["shape"]) == ["tetrapod", "shape.obj"]
    assert (df["num_points"] == 30).all()
    assert df["chamfer"].notna().all() and (df["chamfer"] > 0).all()
    assert df["blob_chamfer"].notna().all() and df["pose_error_median_deg"].notna().all()


@pytest.mark.workflow
def test_tiny_report(tiny_run):
    html = (tiny_run / "results" / "report.html").read_text()
    assert html.count('class="holly-viewer"') == 2
    assert html.count('src="data:image/png;base64,') == 2 * 5 + 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "holly tiny test run" in html


@pytest.mark.workflow
def test_tiny_report_in_browser(tiny_run, browser):
    dom, console = browser.load(tiny_run / "results" / "report.html")
    assert not [c for c in console if "Uncaught" in c or "rror" in c], console
    assert body_errors(dom) == 0
    states = viewer_states(dom)
    assert [s["data-status"] for s in states] == ["ok", "ok"]
    assert all(int(s["data-points-drawn"]) > 30 for s in states)


@pytest.mark.workflow
def test_tiny_snakemake_report(tiny_run):
    proc = snakemake("--configfile", "tiny.yaml", "--report", "smk-report.html", cwd=tiny_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tiny_run / "smk-report.html").read_text()
    assert "viewer.html" in html and "pose_error.png" in html


@pytest.mark.workflow
def test_tiny_rerun_only_what_changed(tiny_run, tmp_path):
    proc = snakemake("-n", "--configfile", "tiny.yaml", cwd=tiny_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout
    # a figure option reruns figures, summary and report, never training or evaluation
    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["figures"]["dpi"] = 61
    changed = tmp_path / "fig.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    counts = job_counts(snakemake("-n", "--configfile", str(changed), cwd=tiny_run).stdout)
    assert "train" not in counts and "evaluate" not in counts and counts["figures"] == 2
    # an experiment's key retrains that experiment only
    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["experiments"][1]["train"] = {"epochs": 5}
    changed.write_text(yaml.safe_dump(cfg))
    counts = job_counts(snakemake("-n", "--configfile", str(changed), cwd=tiny_run).stdout)
    assert counts["train"] == 1 and counts["evaluate"] == 1


def test_config_readme_explains_every_key():
    readme = (ROOT / "config" / "README.md").read_text()
    missing = [row["key"] for row in describe() if f"`{row['key']}`" not in readme]
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for section, sub in schema["properties"].items():
        if "properties" in sub:
            missing += [
                f"{section}.{k}" for k in sub["properties"] if f"`{section}.{k}`" not in readme
            ]
        elif f"`{section}`" not in readme:
            missing.append(section)
    assert not missing, f"config/README.md does not explain {missing}"


def test_rules_are_thin_cli_calls():
    """Each rule: a one-line docstring, a log, a `holly` shell call, file paths quoted (:q)."""
    rules = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.M | re.S):
            rules[m.group(1)] = m.group(2)
    assert set(rules) >= {"train", "evaluate", "figures", "viewer", "summarise", "report"}
    for name, body in rules.items():
        assert re.match(r'\s+"""[^\n]+"""\n', body), f"{name}: one-line docstring first"
        assert "\n    log:" in body and "\n    shell:" in body, name
        assert "\n    run:" not in body and "\n    script:" not in body, name
        shell = body.split("\n    shell:", 1)[1]
        assert re.search(r'^\s+"(OMP_NUM_THREADS=\{threads\} )?holly \w', shell, re.M), name
        for ref in re.findall(r"\{((?:input|output|log)[^}]*)\}", shell):
            assert ref.endswith(":q"), f"{name}: {{{ref}}} is not quoted with :q"
