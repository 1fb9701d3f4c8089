"""Which code made a run: ``provenance.git_commit`` from a checkout, from the image's
``HOLLY_REVISION``, or unknown, never another repository's commit."""

import subprocess

import pytest

from holly.run.provenance import git_commit
from tests.conftest import ROOT


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def test_the_holly_checkout_gives_its_commit(monkeypatch):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout (an exported copy): no commit to compare")
    monkeypatch.setenv("HOLLY_REVISION", "f" * 40)  # a checkout wins over the variable
    found = git_commit(ROOT / "holly")
    assert found["commit"] == head.stdout.strip()
    assert isinstance(found["dirty"], bool)


def test_an_untracked_folder_inside_another_repository_is_not_its_code(tmp_path, monkeypatch):
    """A package installed into a virtual environment inside the user's own repository."""
    monkeypatch.delenv("HOLLY_REVISION", raising=False)
    _git(tmp_path, "init", "-q")
    _git(
        tmp_path,
        "-c",
        "user.name=u",
        "-c",
        "user.email=u@x",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "user's project",
    )
    package = tmp_path / ".venv" / "lib" / "site-packages" / "holly"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert git_commit(package) == {"commit": None, "dirty": None}


def test_the_image_revision_when_there_is_no_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLLY_REVISION", "abc123")
    assert git_commit(tmp_path) == {"commit": "abc123", "dirty": None, "from": "HOLLY_REVISION"}
    monkeypatch.setenv("HOLLY_REVISION", "unknown")  # the Dockerfile's default: no revision
    assert git_commit(tmp_path)["commit"] is None
