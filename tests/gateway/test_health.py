"""Health facts (issue #14): the parsers, a device's health from its last events, the host
facts from files made to look like a Raspberry Pi's, the certificate's days left, and the
status carrying them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway import health
from gateway.health import (
    HostHealth,
    device_health,
    parse_cpu_temp,
    parse_ntp_synchronized,
    parse_openssl_enddate,
    parse_throttled,
)
from gateway.status import status_payload


def test_parsers() -> None:
    assert parse_cpu_temp("48312\n") == 48.3 and parse_cpu_temp("n/a") is None
    flags = parse_throttled("throttled=0x50005")
    assert flags is not None and flags["under_voltage_now"] and flags["throttled_now"]
    assert flags["under_voltage_since_boot"] and flags["throttled_since_boot"]
    assert not flags["freq_capped_now"] and not flags["soft_temp_limit_since_boot"]
    assert parse_throttled("0x0") == {k: False for k in flags}
    assert parse_throttled("zz") is None
    assert parse_ntp_synchronized("NTPSynchronized=yes\n") is True
    assert parse_ntp_synchronized("no") is False and parse_ntp_synchronized("Foo=1") is None
    assert parse_openssl_enddate("notAfter=Dec  1 17:59:08 2036 GMT\n") == 2111767148.0
    assert parse_openssl_enddate("garbage") is None


def test_device_health_from_last_events() -> None:
    now = 1000.0
    assert device_health({}, now) == {"battery_pct": None, "contact": None, "rssi_dbm": None,
                                      "link_up_s": None}
    events = {"battery": {"percent": 41, "lead_off": False}, "connected": {"time": 400.0}}
    assert device_health(events, now) == {"battery_pct": 41, "contact": True, "rssi_dbm": None,
                                          "link_up_s": 600.0}
    events["disconnected"] = {"time": 900.0}  # down now
    events["lead_off"] = {"leads": ["ECG"]}
    got = device_health(events, now)
    assert got["link_up_s"] is None and got["contact"] is False
    from core.events import SignalStrength
    from gateway.payloads import event_facts

    polar = {"heart_rate": {"contact": False},
             "rssi": event_facts(SignalStrength(source="p", time=1.0, dbm=-71))}
    assert device_health(polar, now)["contact"] is False
    assert device_health(polar, now)["rssi_dbm"] == -71


def _cert(path: Path, days: float) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_host_facts_like_a_pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "temp").write_text("71500\n")
    (tmp_path / "throttled").write_text("0x50000\n")
    monkeypatch.setattr(health, "CPU_TEMP_PATH", tmp_path / "temp")
    monkeypatch.setattr(health, "THROTTLED_PATHS", (tmp_path / "throttled",))
    _cert(tmp_path / "client.pem", 12.0)
    asked = []
    host = HostHealth(tmp_path, 5000.0, tmp_path / "client.pem", "1.2.3",
                      config_version=lambda: {"config_version": 4},
                      read_clock=lambda: asked.append(1) or False)
    facts = host.facts()
    assert facts["cpu"]["temp_c"] == 71.5
    assert facts["cpu"]["throttled"]["under_voltage_since_boot"]
    assert not facts["cpu"]["throttled"]["under_voltage_now"]
    assert facts["clock"] == {"synchronized": False}
    assert 11.9 <= facts["certificate"]["days_left"] <= 12.0
    assert facts["disk"]["free_mb"] > 0 and facts["disk"]["quota_mb"] == 5000.0
    assert facts["software_version"] == "1.2.3" and facts["config_version"] == 4
    host.facts()
    assert len(asked) == 1  # the clock state is cached (a subprocess on a Pi)
    _cert(tmp_path / "client.pem", 300.0)  # renewed: read again
    assert host.facts()["certificate"]["days_left"] > 299
    monkeypatch.setattr(health, "CPU_TEMP_PATH", tmp_path / "absent")
    monkeypatch.setattr(health, "THROTTLED_PATHS", (tmp_path / "absent",))
    none = HostHealth(tmp_path / "absent", 1.0, None, "x", read_clock=lambda: None).facts()
    assert none["cpu"] == {"temp_c": None, "throttled": None} and none["disk"] is None
    assert none["certificate"] is None
    body = json.loads(status_payload("gw", "online", now=0.0, health=facts))
    assert body["health"]["cpu"]["temp_c"] == 71.5


def test_the_runtime_does_not_load_cryptography(tmp_path: Path) -> None:
    """The certificate's days come from openssl: the gateway process stays lean."""
    import subprocess
    import sys

    _cert(tmp_path / "c.pem", 5.0)
    code = ("import sys, gateway.app\nfrom pathlib import Path\n"
            "from gateway.health import read_cert_not_after\n"
            f"assert read_cert_not_after(Path({str(tmp_path / 'c.pem')!r}))\n"
            "print(any(m.startswith('cryptography') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_this_machines_clock_state_is_read() -> None:
    # no systemd here: timedatectl fails and the kernel's adjtimex state answers
    assert health.read_clock_synchronized() in (True, False)
