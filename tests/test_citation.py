"""LICENSE and CITATION.cff: present, consistent with the package, citing the paper."""

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from holly import __version__

ROOT = Path(__file__).resolve().parents[1]


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_license_matches_pyproject_and_citation():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert citation()["license"] == "MIT"


def test_citation_names_the_software_and_the_paper():
    cff = citation()
    for key in ("cff-version", "message", "title", "authors", "version"):
        assert cff.get(key), key
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == __version__
    paper = cff["preferred-citation"]
    assert paper["doi"] == "10.3389/fbinf.2021.740342"
    assert paper["journal"] == "Frontiers in Bioinformatics" and paper["year"] == 2021
    assert [a["family-names"] for a in paper["authors"]] == [
        "Blundell",
        "Sieben",
        "Manley",
        "Rosten",
        "Ch'ng",
        "Cox",
    ]
    assert [r["doi"] for r in cff["references"]] == ["10.5281/zenodo.5608206"]


@pytest.mark.skipif(
    shutil.which("cffconvert") is None,
    reason="cffconvert not installed (it pins jsonschema<4, which Snakemake cannot use; "
    "validate in its own venv: pip install cffconvert && cffconvert --validate)",
)
def test_citation_validates_against_the_cff_schema():
    proc = subprocess.run(
        ["cffconvert", "--validate", "-i", str(ROOT / "CITATION.cff")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
