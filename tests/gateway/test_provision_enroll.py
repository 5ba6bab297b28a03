"""The gateway's side of enrollment (issue #14) against a real in-process center: a key
made here (0600) and a CSR signed with CN = the gateway id; wrong, used and expired tokens and
a CSR for another id refused with the center's reason; renewal with a new key by proof of the
current one, without a token; the https rule."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from center.app import Center
from center.ca import init_ca
from center.enroll import issue_token
from center.store.db import writer
from gateway.enroll import EnrollError, cert_info, enroll, enroll_url, needs_renewal, renew
from tests.center.conftest import CenterBroker, center_config


@pytest.fixture
async def center(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A center with a CA on a plaintext broker (the enrollment endpoint is plain HTTP on
    loopback); the gateway's calls run in a thread (urllib blocks) so the center answers."""
    broker = CenterBroker(tmp_path / "mosquitto")
    broker.start()
    init_ca(tmp_path / "ca")
    cfg = center_config(tmp_path / "c.db", broker.url,
                        enroll={"ca_dir": str(tmp_path / "ca"), "cert_days": 30})
    try:
        async with Center(cfg) as c:
            yield c
    finally:
        broker.stop()


def _token(center: Center, gateway: str, ttl: float = 600.0) -> str:
    with writer(center.engine) as conn:
        return issue_token(conn, gateway, ttl_s=ttl, now=time.time())[0]


def _files(d: Path) -> dict[str, Path]:
    return {"cert_file": d / "client.pem", "key_file": d / "client.key", "ca_file": d / "ca.pem"}


async def test_enroll_then_renew_without_a_token(center: Center, tmp_path: Path) -> None:
    files = _files(tmp_path / "tls")
    done = await asyncio.to_thread(enroll, center.url, _token(center, "gw-9"), "gw-9", **files)
    assert done.gateway == "gw-9" and files["key_file"].stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    first = cert_info(files["cert_file"])
    assert first.cn == "gw-9" and 29 < first.days_left(time.time()) <= 30
    assert needs_renewal(first, time.time(), 31) and not needs_renewal(first, time.time(), 20)
    old_key = files["key_file"].read_bytes()
    again = await asyncio.to_thread(renew, **files)  # the center's URL was kept with the cert
    second = cert_info(files["cert_file"])
    assert again.serial == second.serial != first.serial and second.cn == "gw-9"
    assert files["key_file"].read_bytes() != old_key  # a new key for each certificate


@pytest.mark.parametrize("case", ["wrong token", "used token", "expired token", "other id"])
async def test_refusals_carry_the_centers_reason(center: Center, tmp_path: Path,
                                                 case: str) -> None:
    token = _token(center, "gw-9", ttl=0.01 if case == "expired token" else 600.0)
    if case == "used token":
        await asyncio.to_thread(enroll, center.url, token, "gw-9", **_files(tmp_path / "first"))
    if case == "expired token":
        time.sleep(0.05)
    reason = {"wrong token": "unknown enrollment token", "used token": "already used",
              "expired token": "expired", "other id": "not for gateway 'gw-9'"}[case]
    with pytest.raises(EnrollError, match=reason):
        await asyncio.to_thread(enroll, center.url, "nope" if case == "wrong token" else token,
                                "gw-1" if case == "other id" else "gw-9",
                                **_files(tmp_path / "tls"))
    assert not (tmp_path / "tls" / "client.key").exists()  # nothing written on a refusal


def test_https_is_required_off_loopback() -> None:
    assert enroll_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/api/enroll"
    assert enroll_url("https://c.example.org/") == "https://c.example.org/api/enroll"
    with pytest.raises(EnrollError, match="https"):
        enroll_url("http://c.example.org")
    with pytest.raises(EnrollError, match="not an http"):
        enroll_url("ftp://x")
    with pytest.raises(EnrollError, match="cannot reach"):
        enroll("http://127.0.0.1:9", "t", "gw-1", cert_file=Path("/nonexistent/c"),
               key_file=Path("/nonexistent/k"), ca_file=Path("/nonexistent/a"))


async def test_publisher_takes_a_renewed_certificate_at_its_next_connection(
        center: Center, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from gateway.config import MqttConfig
    from gateway.mqtt.tls_files import TlsFiles

    files = _files(tmp_path / "tls")
    await asyncio.to_thread(enroll, center.url, _token(center, "gw-9"), "gw-9", **files)
    cfg = MqttConfig(url="mqtts://127.0.0.1:1", **files)
    pub = SimpleNamespace(tls_files=TlsFiles(cfg), client=SimpleNamespace(ssl_context=None))
    assert not pub.tls_files.reload_into(pub.client)  # nothing changed
    key = files["key_file"].read_bytes()
    files["key_file"].write_text("half-way through a renewal")
    assert not pub.tls_files.reload_into(pub.client) and pub.client.ssl_context is None
    files["key_file"].write_bytes(key)
    await asyncio.to_thread(renew, **files)
    assert pub.tls_files.reload_into(pub.client) and pub.client.ssl_context is not None
    client = SimpleNamespace(ssl_context=None)  # the watch task does the same every period
    await asyncio.to_thread(renew, **files)
    task = asyncio.create_task(pub.tls_files.watch(lambda: client, period_s=0.01))
    await asyncio.sleep(0.2)
    task.cancel()
    assert client.ssl_context is not None


def test_renew_command_and_its_systemd_units(tmp_path: Path) -> None:
    """``provision --renew`` does nothing far from the end, says why it cannot without a
    certificate; the timer's units verify cleanly and the service is hardened."""
    import re
    import shutil
    import subprocess
    import sys

    from gateway.cli import build_parser
    from gateway.provision import renew_command

    (tmp_path / "g.toml").write_text(
        f'[gateway]\nid = "gw-9"\nstate_dir = "{tmp_path}/s"\n[mqtt]\nurl = "mqtts://b:8883"\n')
    out: list[str] = []
    args = build_parser().parse_args(["provision", "--renew", "--config", str(tmp_path / "g.toml")])
    assert renew_command(args, out.append) == 78 and "cert_file" in out[0]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    units = Path(__file__).resolve().parents[2] / "systemd"
    for name in ("ecg-gateway-renew.service", "ecg-gateway-renew.timer"):
        text = (units / name).read_text().replace("/usr/local/bin/ecg-gateway", sys.executable)
        (tmp_path / name).write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "ecg-gateway-renew.timer"),
                          str(tmp_path / "ecg-gateway-renew.service")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true",
                          str(tmp_path / "ecg-gateway-renew.service")], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", sec.stdout + sec.stderr)
    assert m and float(m.group(1)) <= 2.0, sec.stdout


async def test_renewal_when_due(center: Center, tmp_path: Path) -> None:
    from gateway.cli import build_parser
    from gateway.provision import renew_command

    files = _files(tmp_path / "tls")
    await asyncio.to_thread(enroll, center.url, _token(center, "gw-9"), "gw-9", **files)
    (tmp_path / "g.toml").write_text(
        f'[gateway]\nid = "gw-9"\nstate_dir = "{tmp_path}/s"\n[mqtt]\nurl = "mqtts://b:8883"\n'
        + "".join(f'{k} = "{v}"\n' for k, v in files.items()))
    before = cert_info(files["cert_file"]).serial
    out: list[str] = []
    far = build_parser().parse_args(["provision", "--renew", "--config", str(tmp_path / "g.toml"),
                                     "--renew-days", "10"])
    assert await asyncio.to_thread(renew_command, far, out.append) == 0
    assert "nothing to do" in out[-1] and cert_info(files["cert_file"]).serial == before
    due = build_parser().parse_args(["provision", "--renew", "--config", str(tmp_path / "g.toml"),
                                     "--renew-days", "31"])  # 30-day certificates here
    assert await asyncio.to_thread(renew_command, due, out.append) == 0
    assert "renewed" in out[-1] and cert_info(files["cert_file"]).serial != before
