"""The systemd unit parses cleanly and stays hardened.

``systemd-analyze verify`` exits 0 even on some parse errors, so its stderr is
checked too (see shared/FACTS.md).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "ecg-gateway.service"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    # Point ExecStart at an executable that exists here so verify checks the rest.
    text = UNIT.read_text().replace("/usr/local/bin/ecg-gateway", sys.executable)
    out = tmp_path / UNIT.name
    out.write_text(text)
    return out


def test_unit_verifies_without_complaints(unit: Path):
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr


def test_unit_is_hardened(unit: Path):
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0, res.stdout
