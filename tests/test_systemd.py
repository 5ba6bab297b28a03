"""The systemd unit parses cleanly, stays hardened, and says what the gateway does.

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

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def settings() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, values in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).strip())
    return out


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    # Point ExecStart at an executable that exists here so verify checks the rest.
    text = UNIT.read_text().replace("/usr/local/bin/ecg-gateway", sys.executable)
    out = tmp_path / UNIT.name
    out.write_text(text)
    return out


@needs_analyze
def test_unit_verifies_without_complaints(unit: Path):
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr


@needs_analyze
def test_unit_is_hardened(unit: Path):
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 1.6, res.stdout


def test_unit_is_notified_and_watched():
    """Type=notify with a watchdog the gateway feeds (gateway/systemd_notify.py): READY=1
    and WATCHDOG=1 only from the main process, a ping every WatchdogSec/2."""
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    [watchdog] = s["WatchdogSec"]
    m = re.fullmatch(r"(\d+)s", watchdog)
    assert m and 10 <= int(m.group(1)) <= 60, watchdog  # longer than an SD-card fsync stall


def test_unit_refuses_a_bad_configuration_once():
    """run exits 78 on what config check finds, and 78 is not restarted; no ExecStartPre=,
    whose failure RestartPreventExitStatus= would not see (it restarts forever)."""
    from gateway.cli import EXIT_CONFIG
    from gateway.preflight import SERVICE_USER

    s = settings()
    assert "ExecStartPre" not in s
    assert s["ExecStart"] == [
        "/usr/local/bin/ecg-gateway run --config /etc/ecg-gateway/gateway.toml"
    ]
    assert s["RestartPreventExitStatus"] == [str(EXIT_CONFIG)] and s["Restart"] == ["always"]
    assert s["User"] == [SERVICE_USER] == s["Group"]
    assert s["StateDirectoryMode"] == ["0700"] and s["UMask"] == ["0077"]
