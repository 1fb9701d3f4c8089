"""The test tiers: markers that mean what they say, and tools/run-tiers (what `make test` runs)."""

import importlib.machinery
import importlib.util
import re
import sys
import tomllib

from conftest import ROOT

TESTS = ROOT / "tests"


def load_runner():
    loader = importlib.machinery.SourceFileLoader("run_tiers", str(ROOT / "tools" / "run-tiers"))
    spec = importlib.util.spec_from_loader("run_tiers", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def declared_markers() -> set[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {m.split(":")[0] for m in cfg["markers"]}


def test_markers_are_the_tiers_and_carried_by_tests():
    assert declared_markers() == {"slow", "workflow", "container", "gpu"}
    text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    for marker in ("slow", "workflow", "gpu"):  # `container`: tests/test_image.py
        assert re.search(rf"pytest\.mark\.{marker}\b", text), f"no test carries {marker}"
    runner = load_runner()
    assert set(runner.TIERS) == {"fast"} | declared_markers()
    fast = runner.TIERS["fast"]
    assert all(f"not {m}" in fast for m in declared_markers())


def test_plain_pytest_is_the_fast_tier():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert load_runner().TIERS["fast"] in cfg["addopts"]
    # end-to-end Snakemake and SLURM runs are not in it
    slurm = (TESTS / "test_slurm.py").read_text()
    assert "pytestmark = [pytest.mark.workflow" in slurm


def test_runner_reports_each_tier_and_no_tests_passes(capsys, monkeypatch):
    runner = load_runner()
    # a tier that selects nothing (pytest exit 5) passes, and the summary names it with its time
    code = runner.main(["gpu", "--", "-q", "-p", "no:cacheprovider", str(TESTS / "test_style.py")])
    out = capsys.readouterr().out
    if runner.skip_reason("gpu"):
        assert "gpu" in out and "not run: nvidia-smi" in out
    else:
        assert re.search(r"gpu\s+[0-9.]+ s\s+passed \(no tests\)", out), out
    assert code == 0
    assert runner.main(["nonsense"]) == 2


def test_gpu_tier_needs_nvidia_smi_and_container_always_runs_on_linux(monkeypatch, tmp_path):
    runner = load_runner()
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    assert "nvidia-smi" in runner.skip_reason("gpu")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    assert runner.skip_reason("gpu")  # present but failing: not run
    if sys.platform.startswith("linux"):
        assert runner.skip_reason("container") is None  # fails, never skips, without Docker
    assert runner.skip_reason("fast") is None and runner.skip_reason("workflow") is None


def test_ci_runs_the_readme_test_command_then_the_container_and_gpu_tiers():
    ci = (ROOT / ".ci" / "run").read_text()
    readme_command = re.search(r"^make test$", ci, re.M)
    rest = re.search(r'^make test TIERS="container gpu"$', ci, re.M)
    assert readme_command and rest and readme_command.start() < rest.start()
    # the README's command: every tier but the container build and the GPU (~15 min, 2 cores)
    runner = load_runner()
    assert runner.DEFAULT_TIERS == ("fast", "workflow", "slow")
    assert set(runner.DEFAULT_TIERS) | {"container", "gpu"} == set(runner.TIERS)
    assert "tools/run-tiers" in (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for tier in ("slow", "workflow", "container", "gpu"):
        assert f"-m {tier}" in readme, tier
