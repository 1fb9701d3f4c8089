"""The SLURM workflow profile against a real single-node SLURM (slurmctld + slurmd on 127.0.0.1).

Two tiers share one cluster (tests/slurm_cluster.py starts it and always stops it):

1. a throwaway two-rule workflow that mimics holly's shape (a CPU rule that fails once, then a
   ``train`` rule) checks the profile itself: partitions from the environment, one GPU and CPUs per
   GPU for training, attempt-scaled memory on the retry, one log per job;
2. the real workflow on ``tests/config/tiny.yaml`` through ``snakemake --executor slurm`` with
   ``workflow/profiles/slurm``: every job submitted with sbatch and completed, outputs produced.

Skipped, with the reason, only where SLURM cannot start here (not root, packages missing: run
``tools/system-deps.sh``) or the SLURM executor plugin is not installed. The cluster has no
accounting database, so job states are read with ``squeue``/``scontrol`` (the plugin is told to use
``squeue``) and from the job completion log.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import PARTITIONS, SlurmUnavailable, missing_requirements, start_cluster

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
TINY = ROOT / "tests" / "config" / "tiny.yaml"
SNAKEMAKE_TIMEOUT = 480  # seconds, per workflow run

# Starting a SLURM cluster and running Snakemake through it is the workflow tier.
pytestmark = [pytest.mark.workflow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster():
    reason = missing_requirements()
    if reason:
        pytest.skip(f"SLURM cannot start here: {reason}")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (tools/system-deps.sh)")
    try:
        c = start_cluster(timeout=60)
    except SlurmUnavailable as e:
        pytest.skip(f"SLURM did not start: {e}")
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.root, ignore_errors=True)


def run_snakemake(
    cluster, workdir: Path, *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``snakemake --executor slurm`` with the workflow profile, against the test cluster."""
    env = cluster.env
    for key in [k for k in env if k.startswith("HOLLY_SLURM_")]:
        del env[key]
    # Partitions as a user would give them: CPU jobs to "cpu", training to "gpu".
    env["HOLLY_SLURM_PARTITION"], env["HOLLY_SLURM_GPU_PARTITION"] = PARTITIONS
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `holly` for the jobs
    env.pop("SNAKEMAKE_SLURM_PARTITIONS", None)
    env.update(env_extra or {})
    cmd = [
        sys.executable, "-m", "snakemake",
        "--directory", str(workdir),
        "--executor", "slurm",
        "--workflow-profile", str(PROFILE),
        "--jobs", "4",
        # No accounting database here: job states from squeue, and no account to guess.
        "--slurm-status-command", "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "5",
        *args,
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"snakemake did not finish in {SNAKEMAKE_TIMEOUT} s\n{e.stderr}\n{cluster.logs_tail()}"
        )
    (workdir / "snakemake.stderr").write_text(proc.stderr)
    return proc


def our_jobs(cluster, since: float) -> list[dict[str, str]]:
    """Jobs of the run that started at ``since`` (epoch seconds), from the controller."""
    out = []
    for job in cluster.jobs():
        submitted = time.mktime(time.strptime(job["SubmitTime"], "%Y-%m-%dT%H:%M:%S"))
        if submitted >= int(since) - 1:
            out.append(job)
    return out


def rule_of(job: dict[str, str]) -> str:
    """The plugin puts ``rule_<name>[_wildcards_...]`` into the job's comment."""
    return job["Comment"].removeprefix("rule_").split("_wildcards")[0]


TOY_SNAKEFILE = """
rule all:
    input: "trained.txt"

rule prepare:
    output: "prepared.txt"
    shell:
        # Fail on the first attempt: the profile's `retries` resubmits the job to SLURM with
        # attempt-scaled memory and runtime. (A rule-level `retries:` would instead retry inside
        # the same SLURM job.)
        "if [ ! -e attempt1 ]; then touch attempt1; exit 3; fi; "
        "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION > {output}"

rule train:
    input: "prepared.txt"
    output: "trained.txt"
    log: "logs/train.log"
    shell:
        "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION "
        "gpus=${{SLURM_GPUS_ON_NODE:-}} cpus=$SLURM_CPUS_ON_NODE > {output} 2> {log}"
"""


def test_profile_on_toy_workflow(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    start = time.time()
    proc = run_snakemake(
        cluster,
        tmp_path,
        "--snakefile",
        str(tmp_path / "Snakefile"),
        env_extra={"HOLLY_SLURM_TRAIN_RUNTIME": "90"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:] + cluster.logs_tail()

    jobs = our_jobs(cluster, start)
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        by_rule.setdefault(rule_of(job), []).append(job)
    assert sorted(by_rule) == ["prepare", "train"], jobs
    # prepare: failed once, resubmitted with twice the memory, on the CPU partition, no GPU.
    prep = sorted(by_rule["prepare"], key=lambda j: int(j["JobId"]))
    assert [j["JobState"] for j in prep] == ["FAILED", "COMPLETED"], prep
    assert [j["MinMemoryNode"] for j in prep] == ["4000M", "8000M"], prep
    assert all(j["Partition"] == "cpu" and "gpu" not in j.get("TresPerJob", "") for j in prep)
    assert [j["TimeLimit"] for j in prep] == ["01:00:00", "02:00:00"]
    # train: one GPU with four CPUs, on the GPU partition, runtime from HOLLY_SLURM_TRAIN_RUNTIME.
    (train,) = by_rule["train"]
    assert train["JobState"] == "COMPLETED" and train["Partition"] == "gpu", train
    assert train["TimeLimit"] == "01:30:00", train
    assert train["TresPerJob"].endswith("gpu:1"), train
    assert train.get("CpusPerTres", "") == "gres:gpu:4" or train["NumCPUs"] == "4", train

    # The outputs were written inside those SLURM jobs.
    assert (tmp_path / "trained.txt").read_text().startswith(f"job={train['JobId']} partition=gpu")
    assert (tmp_path / "prepared.txt").read_text().startswith(f"job={prep[1]['JobId']} ")
    # One SLURM log per job, kept after success.
    logs = {p.stem for p in (tmp_path / "logs" / "slurm").rglob("*.log")}
    assert {j["JobId"] for j in jobs} <= logs, (logs, jobs)
    # And the completion log (independent of squeue) saw them all finish.
    done = {j["JobId"]: j["JobState"] for j in cluster.completed_jobs()}
    assert all(done.get(j["JobId"]) == j["JobState"] for j in jobs), (done, jobs)


def real_workflow_missing() -> str | None:
    needed = [ROOT / "Snakefile", TINY, ROOT / "holly" / "commands" / "train.py"]
    missing = [str(p.relative_to(ROOT)) for p in needed if not p.exists()]
    return f"not in this checkout: {', '.join(missing)}" if missing else None


def test_tiny_workflow_through_slurm(cluster, tmp_path):
    reason = real_workflow_missing()
    if reason:
        pytest.skip(reason)
    start = time.time()
    proc = run_snakemake(
        cluster, tmp_path, "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(TINY)
    )
    assert proc.returncode == 0, proc.stderr[-6000:] + cluster.logs_tail()

    jobs = our_jobs(cluster, start)
    assert jobs, "no job reached SLURM"
    states = {(rule_of(j), j["JobState"]) for j in jobs}
    assert all(state == "COMPLETED" for _, state in states), states
    rules = {rule for rule, _ in states}
    assert "train" in rules, rules
    for job in jobs:
        gpu = "gpu" in job.get("TresPerJob", "")
        assert gpu == (rule_of(job) == "train"), job
        assert job["Partition"] == ("gpu" if gpu else "cpu"), job
    done = {j["JobId"] for j in cluster.completed_jobs()}
    assert {j["JobId"] for j in jobs} <= done

    # Outputs: every finished training run ends with points.ply; nothing left to do.
    assert list((tmp_path / "results").rglob("points.ply")), sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()
    )
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(TINY), "--dry-run",
         "--workflow-profile", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout
