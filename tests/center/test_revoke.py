"""Revoking a gateway (issue #14): its certificates are marked revoked, renewal is refused,
and a real mosquitto given the CA's CRL refuses it while another gateway still connects."""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from center.ca import init_ca, issue_pair
from center.cli import main
from center.enroll import EnrollRefused, enroll, issue_token, renew
from center.revoke import CRL_FILE, build_crl, revoke_gateway, revoked
from center.store.db import open_engine, upgrade, writer
from gateway.enroll import key_pem, make_csr, new_key, renewal_message
from tests.support import MOSQUITTO, Mosquitto


class CrlBroker(Mosquitto):
    """mosquitto trusting the center's CA and checking its CRL (``crlfile``)."""

    def __init__(self, directory: Path, ca_dir: Path, server: tuple[Path, Path]) -> None:
        self.ca_dir, self.server = ca_dir, server
        super().__init__(directory)

    def _write_config(self, acl):  # type: ignore[no-untyped-def]
        super()._write_config(acl)
        with self.conf_path.open("a") as f:
            f.write(f"cafile {self.ca_dir / 'ca.pem'}\ncrlfile {self.ca_dir / CRL_FILE}\n"
                    f"certfile {self.server[0]}\nkeyfile {self.server[1]}\n"
                    "require_certificate true\ntls_version tlsv1.2\n")

    def reload(self) -> None:
        """SIGHUP, as ``systemctl reload mosquitto`` does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


def _gateway(engine, ca, gateway: str, directory: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A gateway enrolled as provisioning does: its key, the certificate the center signed."""
    key = new_key()
    with writer(engine) as conn:
        token, _ = issue_token(conn, gateway, ttl_s=600, now=time.time())
        issued = enroll(conn, ca, token, make_csr(key, gateway), days=30, now=time.time())
    cert, key_path = directory / f"{gateway}.pem", directory / f"{gateway}.key"
    cert.write_text(issued.certificate)
    key_path.write_bytes(key_pem(key))
    return cert, key_path


def _handshake(broker: Mosquitto, ca_dir: Path, cert: tuple[Path, Path]) -> bool:
    """Whether the broker completes a TLS handshake with this client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal arrives in the handshake
    try:
        with socket.create_connection((broker.host, broker.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"\x10\x00")  # anything: a refused client sees the alert at once
            tls.recv(1)
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return False
    return True


def test_revoked_gateway_refused_by_the_broker_and_for_renewal(tmp_path: Path) -> None:
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip("mosquitto not installed")
    ca_dir, db = tmp_path / "ca", f"sqlite:///{tmp_path}/c.db"
    ca = init_ca(ca_dir)
    server = issue_pair(ca, "localhost", tmp_path / "issued", server=True,
                        sans=["localhost", "127.0.0.1"])
    engine = open_engine(db)
    upgrade(engine)
    gw1 = _gateway(engine, ca, "gw1", tmp_path)
    gw2 = _gateway(engine, ca, "gw2", tmp_path)
    assert main(["ca", "crl", "--dir", str(ca_dir), "--db", db]) == 0
    broker = CrlBroker(tmp_path / "mosquitto", ca_dir, server)
    broker.start()
    try:
        assert _handshake(broker, ca_dir, gw1) and _handshake(broker, ca_dir, gw2)
        assert main(["ca", "revoke", "gw1", "--dir", str(ca_dir), "--db", db]) == 0
        broker.reload()
        deadline = time.monotonic() + 10
        while _handshake(broker, ca_dir, gw1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _handshake(broker, ca_dir, gw1), "the revoked gateway still connects"
        assert _handshake(broker, ca_dir, gw2), "another gateway is refused too"
    finally:
        broker.stop()
    crl = x509.load_pem_x509_crl((ca_dir / CRL_FILE).read_bytes())
    gw1_serial = x509.load_pem_x509_certificate(gw1[0].read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(gw1_serial) is not None
    assert crl.is_signature_valid(ca.key.public_key())
    # the current certificate of a revoked gateway cannot renew itself
    key = serialization.load_pem_private_key(gw1[1].read_bytes(), None)
    csr, at = make_csr(new_key(), "gw1"), int(time.time())
    proof = key.sign(renewal_message(csr, at), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
    with writer(engine) as conn, pytest.raises(EnrollRefused, match="revoked"):
        renew(conn, ca, csr_pem=csr, cert_pem=gw1[0].read_text(),
              proof_b64=base64.b64encode(proof).decode(), signed_at=at, days=30, now=time.time())


def test_revoking_twice_and_an_unknown_gateway(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    engine = open_engine(f"sqlite:///{tmp_path}/c.db")
    upgrade(engine)
    _gateway(engine, ca, "gw1", tmp_path)
    _gateway(engine, ca, "gw1", tmp_path)  # enrolled again: two certificates
    with writer(engine) as conn:
        first = revoke_gateway(conn, "gw1", 1000.0)
        assert len(first) == 2
        assert revoke_gateway(conn, "gw1", 2000.0) == []
        assert revoke_gateway(conn, "nobody", 2000.0) == []
        listed = revoked(conn)
    assert sorted(s for s, _ in listed) == sorted(first)
    assert {at for _, at in listed} == {1000.0}
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    crl = build_crl(ca, listed, now, days=10)
    assert len(list(crl)) == 2
    assert crl.next_update_utc == now + dt.timedelta(days=10)


async def test_console_revokes_a_gateway(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The configuration page's button: supervisors only, the id typed again, audited; the
    CRL lists the serials and the certificate list shows them revoked."""
    import aiohttp
    import sqlalchemy as sa

    from center.app import Center
    from center.store import schema as t
    from tests.center.conftest import add_user, center_config

    ca_dir = tmp_path / "ca"
    ca = init_ca(ca_dir)
    cfg = center_config(tmp_path / "c.db", broker.url, enroll={"ca_dir": str(ca_dir)})
    async with Center(cfg) as center, aiohttp.ClientSession() as s:
        _gateway(center.engine, ca, "gw-lost", tmp_path)
        _gateway(center.engine, ca, "gw-kept", tmp_path)
        tokens = {}
        for user, role in (("tech", "technician"), ("boss", "supervisor")):
            pw = add_user(center.engine, user, role)
            async with s.post(f"{center.url}/api/login", json={"user": user, "password": pw}) as r:
                tokens[role] = {"Authorization": f"Bearer {(await r.json())['token']}"}
        url = f"{center.url}/api/gateways/gw-lost"
        async with s.post(f"{url}/revoke", json={"confirm": "gw-lost"},
                          headers=tokens["technician"]) as r:
            assert r.status == 403  # technicians do not revoke
        async with s.post(f"{url}/revoke", json={"confirm": "gw-kept"},
                          headers=tokens["supervisor"]) as r:
            assert r.status == 400 and "gw-lost" in (await r.json())["error"]
        async with s.post(f"{url}/revoke", json={"confirm": "gw-lost"},
                          headers=tokens["supervisor"]) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        assert len(answer["revoked"]) == 1 and "reload the broker" in answer["next"]
        async with s.get(f"{url}/certificates", headers=tokens["technician"]) as r:
            listed = await r.json()
        assert listed["can_revoke"] and [c["serial"] for c in listed["certificates"]] == answer[
            "revoked"] and listed["certificates"][0]["revoked_at"] is not None  # fmt: skip
        async with s.get(f"{center.url}/gateway/gw-lost/config",
                         headers=tokens["supervisor"]) as r:
            assert r.status == 200 and 'id="revoke-form"' in await r.text()
    crl = x509.load_pem_x509_crl((ca_dir / CRL_FILE).read_bytes())
    assert [format(e.serial_number, "x") for e in crl] == [
        format(int(s_, 16), "x") for s_ in answer["revoked"]]  # fmt: skip
    with center.engine.connect() as conn:
        audit = conn.execute(sa.select(t.audit.c.action, t.audit.c.actor)).all()
        assert ("cert_revoke", "boss") in [tuple(a) for a in audit]
        assert [s_ for s_, _ in revoked(conn)] == answer["revoked"]
