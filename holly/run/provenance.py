"""What a result folder records about how it was made."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = (
    "holly",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "zarr",
    "snakemake",
    "astropy",
    "h5py",
    "plyfile",
)


def package_versions() -> dict[str, str | None]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(where: str | os.PathLike | None = None) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the checkout holding ``where`` (default: the holly package).

    An installed package is no checkout: in the container image the commit it was built from
    comes from ``HOLLY_REVISION`` (the Dockerfile sets it from its ``REVISION`` build
    argument), else it is unknown (None) rather than guessed.
    """
    found = _checkout_commit(Path(where or Path(__file__).parent))
    if found["commit"] is None:
        revision = os.environ.get("HOLLY_REVISION", "").strip()
        if revision and revision != "unknown":
            return {"commit": revision, "dirty": None, "from": "HOLLY_REVISION"}
    return found


def _checkout_commit(where: Path) -> dict[str, str | bool | None]:
    try:
        # the folder must be tracked by that checkout: a package installed into a virtual
        # environment inside some other repository is not that repository's code
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", "."],
            cwd=where,
            capture_output=True,
            timeout=10,
            check=True,
        )
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return {"commit": sha, "dirty": bool(dirty.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def provenance(config: dict, device: torch.device, inputs: dict, seed: int) -> dict:
    """The provenance record of a run: config, versions, git, device, seed, input checksums."""
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": config,
        "seed": seed,
        "device": device_description(device),
        "threads": torch.get_num_threads(),  # torch's intra-op CPU threads (also under CUDA)
        "versions": package_versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "inputs": inputs,
    }
