"""The CPU image, really built and really run (the ``container`` tier: ``pytest -m container``).

One module-scoped build, then two runs of the default workflow from fresh copies of this
repository (tracked and untracked, not ignored, files; no results, no .venv):

- inside the image: ``docker run --network none``, the copy bind-mounted at ``/data``, a non-root
  uid, the image's own default command (``snakemake --cores all`` on the baked-in
  ``config/config.yaml``);
- on the host: ``snakemake --cores <same count>`` with this environment's packages and the copy's
  code.

Both have to produce ``results/summary.csv`` and ``results/report.html``, and the two summaries
must agree exactly in every column but the timings: same torch 2.13.0+cpu wheel, same numpy and
scipy wheels, same seed, same thread count (``train_threads``: cores shared among the
experiments) and the same CPU, so the float operations are the same ones. If they ever differ,
suspect a different wheel (the lock vs this environment) or a different CPU code path (MKL/oneDNN
pick kernels by CPU flags, and the container sees the same CPU); that is a finding, not noise.

The tier fails, with the reason, when Docker cannot be installed or started
(tools/docker-engine.sh); it is not skipped. Where the pinned base image cannot be pulled,
tools/base-image.sh builds a Debian bookworm stand-in with debootstrap. Site build inputs
(docs/containers.md): the system CA bundle goes in as ``build-inputs/ca.crt``, and the CPU torch
wheel as ``build-inputs/wheels/`` when this machine's pip can fetch it (a local wheel directory or
PyTorch's index); then PyTorch's index is not asked during the build.

The repository is copied once (``snapshot``) and the build context and both runs start from that
copy: a first version copied the checkout per run, picked up a merge made while the container ran,
and compared two different versions of the code (the numbers then differed by ~1 %).

Cost: one image build (~5 min cold, ~1 min with cached dependency layers) and two runs of the
default workflow (~6 min each on 2 quiet cores). Wall times are printed, never asserted.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "holly-test:cpu"
TIMINGS = ("train_seconds", "wall_seconds")  # the only columns allowed to differ
RESULTS = ("results/summary.csv", "results/report.html")

pytestmark = [pytest.mark.container, pytest.mark.timeout(5400)]


def _run(argv, *, timeout, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def _tail(proc: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


def fresh_copy(dest: Path) -> Path:
    """Copy the files git would commit (tracked, plus untracked not ignored) to ``dest``."""
    proc = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, _tail(proc)
    for rel in filter(None, proc.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def pinned_base() -> str:
    text = (ROOT / "Dockerfile").read_text()
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)[1]


def cpu_torch_pin() -> str:
    text = (ROOT / "requirements" / "lock-cpu.txt").read_text()
    return re.search(r"^(torch==\S+)", text, re.M)[1]


@pytest.fixture(scope="module")
def engine():
    """A Docker daemon that answers, installed and started if need be; else the tier fails."""
    proc = _run(["bash", str(ROOT / "tools" / "docker-engine.sh")], timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine, so the container tier cannot run:\n{proc.stderr}")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """One copy of the repository, taken once: the build context and both runs start from it, so
    an edit to the checkout while the tier runs (it takes many minutes) cannot make the image and
    the host run use different code."""
    return fresh_copy(tmp_path_factory.mktemp("snapshot"))


def copy_of(snapshot: Path, dest: Path) -> Path:
    shutil.copytree(snapshot, dest, symlinks=True, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="module")
def image(engine, snapshot, tmp_path_factory) -> str:
    """The CPU image built from the snapshot, with this site's build inputs."""
    context = copy_of(snapshot, tmp_path_factory.mktemp("context"))
    proc = _run(["bash", "tools/base-image.sh", pinned_base()], cwd=context, timeout=900)
    assert proc.returncode == 0, "no base image:\n" + _tail(proc)
    base = proc.stdout.strip()
    args = ["--build-arg", "TORCH_VARIANT=cpu", "--build-arg", f"PYTHON_IMAGE={base}"]
    inputs = context / "build-inputs"
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.is_file():
        shutil.copy(ca, inputs / "ca.crt")
    wheels = inputs / "wheels"
    get = _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels)]
        + [cpu_torch_pin()],
        timeout=900,
    )
    if get.returncode == 0:  # the wheel is here: do not ask PyTorch's index
        args += ["--build-arg", "TORCH_CPU_INDEX="]
    else:
        print(f"no local {cpu_torch_pin()} wheel; the build asks PyTorch's index")
    start = time.monotonic()
    build = _run(
        ["docker", "build", "--network", "host", "-t", IMAGE, *args, "."],
        cwd=context,
        timeout=3000,
    )
    print(f"docker build (base {base}): {time.monotonic() - start:.0f} s")
    assert build.returncode == 0, _tail(build)
    size = _run(["docker", "image", "inspect", "-f", "{{.Size}}", IMAGE], timeout=60)
    print(f"{IMAGE}: {int(size.stdout) / 1e9:.2f} GB")
    shutil.rmtree(context, ignore_errors=True)
    return IMAGE


def test_image_runs_as_non_root_without_network(image):
    proc = _run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c"]
        + ["id -u; holly --version; python -c 'import torch; print(torch.__version__)'"],
        timeout=300,
    )
    assert proc.returncode == 0, _tail(proc)
    uid, version, torch = (proc.stdout.splitlines() + ["", "", ""])[:3]
    assert uid == "1000", proc.stdout
    assert version.split()[-1] == "0.1.0" or "holly" in version, version
    assert torch == cpu_torch_pin().split("==")[1], proc.stdout


def same_kernels() -> dict[str, str]:
    """The environment that picks the CPU kernels, the same inside the image and on the host.

    The summaries agree to the last digit only where both sides run the same float operations.
    Some machines of this kind set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), because older
    OpenBLAS builds compute wrong results on their CPUs; a container does not inherit it, picks
    another BLAS kernel and differs in the 16th digit of every float64 score (seen on an AMD
    EPYC with OPENBLAS_CORETYPE=Haswell). So the host's kernel choices go into the container,
    and both sides run single-threaded jobs outside the training rules (which set their own
    OMP_NUM_THREADS).
    """
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    env = {name: os.environ[name] for name in names if os.environ.get(name)}
    return {**env, "OMP_NUM_THREADS": "1"}


def _summary(run_dir: Path) -> list[dict]:
    with open(run_dir / "results" / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def container_run(image, snapshot, tmp_path_factory) -> tuple[Path, str]:
    """The default workflow inside the image: the image's own CMD, no network, non-root."""
    work = copy_of(snapshot, tmp_path_factory.mktemp("in-container"))
    uid = os.getuid() if os.getuid() != 0 else 1000
    if os.getuid() == 0:  # root: hand the copy to the image's user
        _run(["chown", "-R", f"{uid}:{uid}", str(work)], timeout=60).check_returncode()
    start = time.monotonic()
    proc = _run(
        ["docker", "run", "--rm", "--network", "none", "-u", f"{uid}:{uid}"]
        + [arg for name, value in same_kernels().items() for arg in ("-e", f"{name}={value}")]
        + ["-v", f"{work}:/data", image],
        timeout=4000,
    )
    print(f"default workflow in the container: {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, _tail(proc)
    return work, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def host_run(container_run, snapshot, tmp_path_factory) -> Path:
    """The same default workflow on the host, with the same core count (after the container
    run, so the two do not compete for the CPU)."""
    _, log = container_run
    cores = re.search(r"Provided cores: (\d+)", log)
    assert cores, "the container's Snakemake log names no core count"
    work = copy_of(snapshot, tmp_path_factory.mktemp("on-host"))
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ, PYTHONPATH=str(work), **same_kernels())
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    proc = _run(
        [str(venv_bin / "snakemake"), "--cores", cores[1], "--configfile", "config/config.yaml"],
        cwd=work,
        env=env,
        timeout=4000,
    )
    print(f"default workflow on the host ({cores[1]} cores): {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, _tail(proc)
    return work


def test_default_workflow_in_the_container(container_run):
    work, _ = container_run
    for rel in RESULTS:
        assert (work / rel).is_file(), f"{rel} missing after the container run"
    rows = _summary(work)
    names = [row["experiment"] for row in rows]
    assert len(names) >= 1 and all(
        (work / "results" / name / "evaluation.json").is_file() for name in names
    )
    assert all(row["device"].startswith("cpu:") for row in rows), [r["device"] for r in rows]


def test_container_and_host_agree(container_run, host_run):
    inside, outside = _summary(container_run[0]), _summary(host_run)
    assert [r["experiment"] for r in inside] == [r["experiment"] for r in outside]
    for a, b in zip(inside, outside, strict=True):
        assert a.keys() == b.keys()
        differ = {k: (a[k], b[k]) for k in a if k not in TIMINGS and a[k] != b[k]}
        assert not differ, f"{a['experiment']}: container vs host {differ}"
        # the numbers compared are real numbers, not empty columns
        for key in ("chamfer", "final_train_loss"):
            if key in a:
                assert a[key] and float(a[key]) > 0, (key, a[key])
