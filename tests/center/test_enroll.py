"""The center's CA and enrollment (issue #14): one-time tokens, CSRs signed with CN = the
gateway id, refusals (wrong, used and expired tokens; a CSR for another id; weak keys),
renewal by proof of the current key, the HTTP endpoint, the CLI, the pong to a test
transmission, the config editor's publish and the fleet's warnings."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from center.app import Center
from center.ca import CaError, init_ca, issue_pair, load_ca
from center.enroll import EnrollRefused, enroll, issue_token, renew, renewal_message
from center.fleet_health import warnings
from center.pong import PongResponder
from center.store.db import open_engine, upgrade, writer
from tests.center.conftest import REPO, add_user, center_config, publish_sync
from tests.support import wait_for

NOW = time.time()


def _csr(cn: str, key=None) -> tuple[str, ec.EllipticCurvePrivateKey]:  # type: ignore[no-untyped-def]
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


@pytest.fixture
def ca(tmp_path: Path):  # type: ignore[no-untyped-def]
    init_ca(tmp_path / "ca")
    return load_ca(tmp_path / "ca")


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = open_engine(f"sqlite:///{tmp_path}/c.db")
    upgrade(eng)
    yield eng
    eng.dispose()


def _token(db, gateway: str = "gw-7", ttl: float = 3600.0, now: float = NOW) -> str:  # type: ignore[no-untyped-def]
    with writer(db) as conn:
        return issue_token(conn, gateway, ttl_s=ttl, now=now)[0]


def test_ca_files_and_refusals(tmp_path: Path, ca) -> None:  # type: ignore[no-untyped-def]
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(CaError, match="refusing to overwrite"):
        init_ca(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").chmod(0o644)
    with pytest.raises(CaError, match="chmod 600"):
        load_ca(tmp_path / "ca")
    with pytest.raises(CaError, match="ca init"):
        load_ca(tmp_path / "nowhere")
    cert_path, key_path = issue_pair(ca, "localhost", tmp_path / "b", server=True,
                                     sans=["localhost", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert ca.issued_this(cert) and key_path.stat().st_mode & 0o777 == 0o600
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_enroll_signs_cn_and_uses_the_token_once(ca, db) -> None:  # type: ignore[no-untyped-def]
    token = _token(db)
    csr, key = _csr("gw-7")
    with writer(db) as conn:
        issued = enroll(conn, ca, token, csr, days=180, now=NOW)
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-7"
    assert ca.issued_this(cert) and issued.ca == ca.pem
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert 179 < (issued.not_after - NOW) / 86400 <= 180
    with writer(db) as conn, pytest.raises(EnrollRefused, match="already used"):
        enroll(conn, ca, token, _csr("gw-7")[0], days=180, now=NOW)


@pytest.mark.parametrize("case", ["unknown", "expired", "other id", "not pem", "weak rsa",
                                  "two names"])
def test_enroll_refusals_keep_the_token(ca, db, case: str) -> None:  # type: ignore[no-untyped-def]
    token = _token(db, ttl=60.0)
    now = NOW + 61 if case == "expired" else NOW
    csr = _csr("gw-8")[0] if case == "other id" else _csr("gw-7")[0]
    if case == "not pem":
        csr = "hello"
    if case == "weak rsa":
        csr = _csr("gw-7", rsa.generate_private_key(65537, 1024))[0]
    if case == "two names":
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "gw-7"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")])).sign(
                key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    reason = {"unknown": "unknown", "expired": "expired", "other id": "not for gateway 'gw-7'",
              "not pem": "not a PEM", "weak rsa": "2048", "two names": "exactly one CN"}[case]
    with writer(db) as conn, pytest.raises(EnrollRefused, match=reason):
        enroll(conn, ca, "wrong" if case == "unknown" else token, csr, days=180, now=now)
    if case != "expired":  # a refused request did not use the token up
        with writer(db) as conn:
            assert enroll(conn, ca, token, _csr("gw-7")[0], days=180, now=NOW).gateway == "gw-7"


def _enrolled(ca, db) -> tuple[str, ec.EllipticCurvePrivateKey]:  # type: ignore[no-untyped-def]
    csr, key = _csr("gw-7")
    token = _token(db)
    with writer(db) as conn:
        return enroll(conn, ca, token, csr, days=180, now=NOW).certificate, key


def _proof(key: ec.EllipticCurvePrivateKey, csr: str, at: int) -> str:
    return base64.b64encode(key.sign(renewal_message(csr, at), ec.ECDSA(hashes.SHA256()))).decode()


def test_renewal_needs_the_current_key(ca, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert_pem, key = _enrolled(ca, db)
    new_csr, new_key = _csr("gw-7")
    at = int(NOW)
    with writer(db) as conn:
        issued = renew(conn, ca, csr_pem=new_csr, cert_pem=cert_pem,
                       proof_b64=_proof(key, new_csr, at), signed_at=at, days=180, now=NOW + 5)
    new = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert new.public_key().public_numbers() == new_key.public_key().public_numbers()
    stranger = ec.generate_private_key(ec.SECP256R1())
    other_ca = init_ca(tmp_path / "other")
    foreign = x509.CertificateBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "gw-7")])).issuer_name(other_ca.cert.subject
        ).public_key(stranger.public_key()).serial_number(1).not_valid_before(
        dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).not_valid_after(
        dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).sign(other_ca.key, hashes.SHA256()
        ).public_bytes(serialization.Encoding.PEM).decode()
    cases = [  # (certificate, signing key, signed at, now, reason)
        (cert_pem, stranger, at, NOW, "not signed by the current certificate's key"),
        (cert_pem, key, at - 3600, NOW, "too far"),
        (foreign, stranger, at, NOW, "not issued by this center's CA"),
        (cert_pem, key, at + 200 * 86400, NOW + 200 * 86400, "expired"),
    ]
    for cert, signer, signed_at, now, reason in cases:
        with writer(db) as conn, pytest.raises(EnrollRefused, match=reason):
            renew(conn, ca, csr_pem=new_csr, cert_pem=cert,
                  proof_b64=_proof(signer, new_csr, signed_at), signed_at=signed_at, days=180,
                  now=now)


def test_enroll_token_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    out = subprocess.run([sys.executable, "-m", "center", "enroll-token", "--gateway", "gw-3",
                          "--db", db, "--ttl", "600", "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["gateway"] == "gw-3" and len(answer["token"]) >= 32
    bad = subprocess.run([sys.executable, "-m", "center", "enroll-token", "--gateway", "a/b",
                          "--db", db], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not a gateway id" in bad.stderr
    init = subprocess.run([sys.executable, "-m", "center", "ca", "init", "--dir",
                           str(tmp_path / "ca")], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert init.returncode == 0 and (tmp_path / "ca" / "ca.key").exists()


async def test_http_enroll_pong_and_config_publish(broker, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   mqtt_listener) -> None:
    init_ca(tmp_path / "ca")
    cfg = center_config(tmp_path / "c.db", broker.url,
                        enroll={"ca_dir": str(tmp_path / "ca"), "broker_url": "mqtts://b:8883"})
    pongs = mqtt_listener(broker, ["ecg/v1/gw-7/pong", "ecg/v1/gw-7/config"])
    async with Center(cfg) as center, aiohttp.ClientSession() as s:
        await wait_for(center.link.subscribed.is_set, "center subscribed")
        with writer(center.engine) as conn:
            token = issue_token(conn, "gw-7", ttl_s=600, now=time.time())[0]
        csr = _csr("gw-7")[0]
        async with s.post(f"{center.url}/api/enroll", json={"token": token, "csr": csr}) as r:
            assert r.status == 200, await r.text()
            got = await r.json()
        assert got["gateway"] == "gw-7" and got["broker_url"] == "mqtts://b:8883"
        assert "BEGIN CERTIFICATE" in got["certificate"]
        assert got["ca"] == load_ca(tmp_path / "ca").pem
        async with s.post(f"{center.url}/api/enroll", json={"token": token, "csr": csr}) as r:
            assert r.status == 403 and "already used" in (await r.json())["error"]
        async with s.post(f"{center.url}/api/enroll", data=b"[1]") as r:
            assert r.status == 400
        # the test transmission: a ping is answered on the gateway's pong topic
        ping = {"schema": "ecg-gateway/ping/v1", "ping_id": "p-1", "gateway_id": "gw-7"}
        publish_sync(broker, "ecg/v1/gw-7/ping", json.dumps(ping).encode())
        await wait_for(lambda: pongs.on("ecg/v1/gw-7/pong"), "pong")
        assert pongs.on("ecg/v1/gw-7/pong")[0].json()["ping_id"] == "p-1"
        assert center.ingest.stats.rejected == 0  # pings never reach the ingest
        # the config editor: supervisors publish the next version, retained
        pw = add_user(center.engine, "sup", "supervisor")
        async with s.post(f"{center.url}/api/login", json={"user": "sup", "password": pw}) as r:
            h = {"Authorization": f"Bearer {(await r.json())['token']}"}
        path = f"{center.url}/api/gateways/gw-7/config"
        async with s.post(path, json={"config": {"mqtt": {}}}, headers=h) as r:
            assert r.status == 400 and "gateway only" in (await r.json())["error"]
        async with s.post(path, json={"config": {"devices": []}}, headers=h) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["version"] == 1
        await wait_for(lambda: pongs.on("ecg/v1/gw-7/config"), "config message")
        msg = pongs.on("ecg/v1/gw-7/config")[0]
        assert msg.json()["version"] == 1 and msg.json()["config"] == {"devices": []}
        async with s.get(path, headers=h) as r:
            versions = (await r.json())["versions"]
        assert versions[0]["version"] == 1 and versions[0]["sent_at"] is not None
        async with s.get(f"{center.url}/gateway/gw-7/config", headers=h) as r:
            assert r.status == 200
        async with s.get(f"{center.url}/api/gateways", headers=h) as r:
            fleet = await r.json()
        assert fleet[0]["gateway"] == "gw-7" and fleet[0]["state"] == "enrolled"
        assert 179 < fleet[0]["certificate_days_left"] <= 180
    late = mqtt_listener(broker, "ecg/v1/gw-7/config")  # retained: a gateway coming later
    await wait_for(lambda: late.on("ecg/v1/gw-7/config"), "retained config")
    assert late.on("ecg/v1/gw-7/config")[0].retain


def test_pong_rate_limit_and_fleet_warnings() -> None:
    pong = PongResponder("ecg/v1", "c")
    ping = json.dumps({"schema": "ecg-gateway/ping/v1", "ping_id": "x"}).encode()
    answers = [pong("ecg/v1/gw/ping", ping, 100.5) for _ in range(7)]
    assert sum(a is not None for a in answers) == 5 and pong.dropped == 2
    assert pong("ecg/v1/gw/ping", b"junk", 101.0) is None
    assert pong("ecg/v1/gw/ping", ping, 101.0) is not None  # a new second
    health = {"disk": {"free_pct": 4.0}, "cpu": {"temp_c": 83.0, "throttled": {
        "under_voltage_now": True}}, "clock": {"synchronized": False},
        "certificate": {"days_left": 9.5},
        "remote_config": {"last": {"version": 3, "outcome": "rolled_back", "reason": "x"}}}
    devices = [{"device": "p1", "battery_pct": 15, "contact": False}, {"device": "p2",
                                                                      "battery_pct": 80}]
    w = warnings(health, devices, None, 0.0, cert_days=21, battery_pct=20)
    text = "\n".join(w)
    for part in ("p1: battery 15 %", "contact lost", "ends in 10 days", "disk 4 %", "83 °C",
                 "under-voltage", "clock not synchronised", "version 3 rolled back: x"):
        assert part in text, text
    assert warnings(None, [{"device": "p2", "battery_pct": 80}], {"not_after": 100 * 86400.0},
                    0.0, cert_days=21, battery_pct=20) == []
    expired = warnings(None, [], {"not_after": 10.0}, 20.0, cert_days=21, battery_pct=20)
    assert expired and "expired" in expired[0]
