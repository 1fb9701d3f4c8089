"""House style: ruff lint and format are clean on the package and the tests."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff") or shutil.which("ruff", path=Path(sys.executable).parent)


@pytest.mark.skipif(RUFF is None, reason="ruff not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff_clean(args):
    proc = subprocess.run(
        [RUFF, *args, "holly", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
