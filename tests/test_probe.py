"""The bad-input probe of issue 9 (tools/probe_bad_inputs.py), its quick half: every case must
end with one `error:` line and exit 2 (or succeed where the input is not read), no traceback,
no data loss. The full probe (with figures and training) is in the slow tier."""

import subprocess
import sys

import pytest
from conftest import ROOT

PROBE = ROOT / "tools" / "probe_bad_inputs.py"


def _probe(*args):
    proc = subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    counts = proc.stdout.strip().splitlines()[-1]
    tried = int(counts.split("tried: ")[1].split(";")[0])
    assert "not well: 0" in counts
    return tried


def test_quick_probe_every_bad_input_ends_well():
    assert _probe("--quick") >= 345  # issue 9's 134 cases and more, issue 24's included


@pytest.mark.slow
def test_full_probe_every_bad_input_ends_well():
    assert _probe() >= 396  # with training: resume at every stage, interrupted commands
