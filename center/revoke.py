"""Revoking a gateway's certificates and the CRL the broker checks (issue #14).

A Pi that is lost, stolen or retired must not reach the broker again. ``ecg-center ca revoke
GATEWAY`` marks every unrevoked certificate of that gateway revoked (``certificates.revoked_at``,
so renewal is refused at once: :mod:`center.enroll`) and writes the CA's certificate
revocation list, ``crl.pem`` in the CA directory, which mosquitto reads through ``crlfile``
(docs/broker.md). OpenSSL refuses every client once a loaded CRL is past its ``nextUpdate``,
so the list is made with a long validity (``CRL_DAYS``) and rewritten by ``ecg-center ca crl``
and at each ``ecg-center serve`` start; the broker reads it when it (re)starts or reloads.

Pure parts (:func:`build_crl`) take the CA and the revoked serials; the database and file
parts are thin.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from center.ca import CLOCK_SKEW, Ca, load_ca
from center.store import schema as t
from center.store.db import writer
from center.store.queue import add_audit
from core.atomic_file import write_atomic

__all__ = [
    "CRL_DAYS",
    "CRL_FILE",
    "build_crl",
    "certificates_of",
    "refresh_crl",
    "revoke_and_publish",
    "revoke_gateway",
    "revoked",
    "write_crl",
]

CRL_FILE = "crl.pem"
CRL_DAYS = 365.0
"""Validity of a CRL, days: rewritten far sooner (every ``serve`` start, every revocation)."""


def revoke_gateway(conn: sa.Connection, gateway: str, now: float) -> list[str]:
    """Revoke every unrevoked certificate of ``gateway`` at ``now`` (POSIX s); the serials
    (hex) revoked by this call, oldest first (empty: nothing left to revoke)."""
    c = t.certificates.c
    serials = [
        r.serial
        for r in conn.execute(
            sa.select(c.serial)
            .where(c.gateway == gateway, c.revoked_at.is_(None))
            .order_by(c.issued_at)
        )
    ]
    if serials:
        conn.execute(t.certificates.update().where(c.serial.in_(serials)).values(revoked_at=now))
    return serials


def revoked(conn: sa.Connection) -> list[tuple[str, float]]:
    """Every revoked certificate: (serial hex, revoked_at POSIX s), by serial."""
    c = t.certificates.c
    rows = conn.execute(
        sa.select(c.serial, c.revoked_at).where(c.revoked_at.is_not(None)).order_by(c.serial)
    )
    return [(r.serial, float(r.revoked_at)) for r in rows]


def build_crl(
    ca: Ca, entries: list[tuple[str, float]], now: dt.datetime, *, days: float = CRL_DAYS
) -> x509.CertificateRevocationList:
    """The CA's CRL listing ``entries`` (serial hex, revoked at POSIX s), valid ``days``
    from ``now`` (capped by the CA's own validity); its CRL number is ``now`` in seconds,
    so a newer list always has a larger number."""
    next_update = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for serial, at in entries:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def write_crl(directory: Path, crl: x509.CertificateRevocationList) -> Path:
    """``crl.pem`` in ``directory`` (0644: the broker reads it), replaced atomically."""
    path = Path(directory) / CRL_FILE
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return path


def refresh_crl(engine: sa.Engine, directory: Path, now: float) -> Path:
    """Rewrite ``crl.pem`` in the CA ``directory`` from the database's revocations."""
    with engine.connect() as conn:
        entries = revoked(conn)
    ca = load_ca(directory)
    return write_crl(directory, build_crl(ca, entries, dt.datetime.fromtimestamp(now, dt.UTC)))


def revoke_and_publish(
    engine: sa.Engine,
    gateway: str,
    directory: Path,
    now: float,
    *,
    actor: str | None,
    ip: str | None = None,
) -> tuple[list[str], Path]:
    """Revoke ``gateway`` (audited as ``cert_revoke`` by ``actor`` when anything was left to
    revoke), then rewrite the CRL in the CA ``directory``: the serials revoked and the CRL's
    path. What ``ecg-center ca revoke`` and the console's button both do."""
    with writer(engine) as conn:
        serials = revoke_gateway(conn, gateway, now)
        if serials:
            add_audit(conn, now, "cert_revoke", actor=actor, ip=ip,
                      detail={"gateway": gateway, "serials": serials})
    return serials, refresh_crl(engine, directory, now)


def certificates_of(conn: sa.Connection, gateway: str) -> list[dict[str, Any]]:
    """Every certificate issued to ``gateway``, newest first: serial (hex), kind, issued_at,
    not_after and revoked_at (POSIX s; revoked_at None while valid)."""
    c = t.certificates.c
    rows = conn.execute(
        sa.select(c.serial, c.kind, c.issued_at, c.not_after, c.revoked_at)
        .where(c.gateway == gateway)
        .order_by(c.issued_at.desc())
    ).mappings()
    return [dict(r) for r in rows]
