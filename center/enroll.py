"""Enrollment of gateways: one-time tokens, signing their CSRs, renewing certificates.

A field engineer asks the center for a token for one gateway id
(``ecg-center enroll-token --gateway gw-0042``: random, 192 bits, valid ``ttl_s``; only its
SHA-256 is stored). On the Pi, ``ecg-gateway provision`` makes a key that never leaves it and
sends ``POST /api/enroll {"token", "csr"}``. The center signs the CSR when the token exists,
is unused and unexpired, and the CSR's CN is the token's gateway id; the token is used up in
the same transaction that records the certificate. Anything else is refused with a reason
(and audited), and a refused request does not use the token up.

Renewal goes the same way without a token: ``{"csr", "certificate", "proof", "signed_at"}``
where ``certificate`` is the gateway's current certificate (issued by this CA, recorded here,
not revoked, not expired) and ``proof`` an ECDSA/SHA-256 signature by its key over
:func:`renewal_message` (CSR digest and the time, within ``PROOF_WINDOW_S`` of ours): only
the holder of the current key can get the next certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from center.ca import Ca, CsrRefused, parse_csr
from center.store import schema as t

__all__ = [
    "PROOF_WINDOW_S",
    "EnrollRefused",
    "Issued",
    "enroll",
    "issue_token",
    "renew",
    "renewal_message",
]

PROOF_WINDOW_S = 600.0
"""A renewal proof's time may differ from the center's by this much, s."""
_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class EnrollRefused(Exception):
    """The request is refused; ``status`` is the HTTP status, ``str()`` the reason."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Issued:
    """A signed certificate as the gateway receives it (PEM texts, POSIX seconds)."""

    gateway: str
    certificate: str
    ca: str
    serial: str
    not_after: float

    def as_json(self, broker_url: str | None) -> dict[str, Any]:
        return {"gateway": self.gateway, "certificate": self.certificate, "ca": self.ca,
                "serial": self.serial, "not_after": self.not_after, "broker_url": broker_url}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def renewal_message(csr_pem: str | bytes, signed_at: int) -> bytes:
    """What a renewal proof signs: a fixed label, the CSR's SHA-256 (of its DER) and the time."""
    csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    digest = hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest()
    return f"ecg-gateway-renew/v1\n{digest}\n{int(signed_at)}".encode()


def check_gateway_id(gateway: str) -> str:
    """A gateway id as topics allow it (1-64 of ``A-Za-z0-9_.-``, not starting with . - _)."""
    if not 0 < len(gateway) <= 64 or not set(gateway) <= _ID_OK or gateway[0] in "._-":
        raise ValueError(f"{gateway!r} is not a gateway id (1-64 of A-Z a-z 0-9 _ . -)")
    return gateway


def issue_token(conn: sa.Connection, gateway: str, *, ttl_s: float, now: float,
                created_by: str | None = None) -> tuple[str, float]:
    """A new one-time token for ``gateway``: (token, expires_at POSIX s). Only its hash is
    stored; earlier unused tokens of the same gateway stay valid until they expire."""
    check_gateway_id(gateway)
    token = "ecg" + secrets.token_urlsafe(24)  # never starts with "-" (a command-line flag)
    conn.execute(t.enroll_tokens.insert().values(
        token_hash=_hash(token), gateway=gateway, created_at=now, expires_at=now + ttl_s,
        created_by=created_by))
    return token, now + ttl_s


def _record(conn: sa.Connection, cert: x509.Certificate, gateway: str, kind: str,
            now: float) -> str:
    serial = format(cert.serial_number, "x")
    conn.execute(t.certificates.insert().values(
        serial=serial, gateway=gateway, kind=kind, issued_at=now,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex()))
    return serial


def _issued(ca: Ca, cert: x509.Certificate, gateway: str, serial: str) -> Issued:
    return Issued(gateway, cert.public_bytes(serialization.Encoding.PEM).decode(), ca.pem, serial,
                  cert.not_valid_after_utc.timestamp())


def enroll(conn: sa.Connection, ca: Ca, token: str, csr_pem: str, *, days: float,
           now: float) -> Issued:
    """Sign ``csr_pem`` for the token's gateway and use the token up (one transaction)."""
    row = conn.execute(sa.select(t.enroll_tokens).where(
        t.enroll_tokens.c.token_hash == _hash(token))).mappings().first()
    if row is None:
        raise EnrollRefused("unknown enrollment token (check it, or ask the center for a new one)")
    if row["used_at"] is not None:
        raise EnrollRefused("this enrollment token was already used; ask the center for a new one")
    if row["expires_at"] <= now:
        raise EnrollRefused("this enrollment token has expired; ask the center for a new one")
    gateway = row["gateway"]
    try:
        cert = ca.sign_csr(csr_pem, gateway, days=days, now=_dt(now))
    except CsrRefused as exc:
        raise EnrollRefused(str(exc), 400) from None
    tok = t.enroll_tokens.c
    used = conn.execute(
        t.enroll_tokens.update()
        .where(tok.token_hash == row["token_hash"], tok.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    if used != 1:  # another request used it between our read and this update
        raise EnrollRefused("this enrollment token was already used; ask the center for a new one")
    return _issued(ca, cert, gateway, _record(conn, cert, gateway, "enroll", now))


def _dt(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _current_certificate(conn: sa.Connection, ca: Ca, cert_pem: str, now: float
                         ) -> tuple[x509.Certificate, str]:
    """The presented certificate and its gateway, if ours, recorded, valid and not revoked."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise EnrollRefused("the current certificate is not PEM", 400) from None
    if not ca.issued_this(cert):
        raise EnrollRefused("the current certificate was not issued by this center's CA")
    if not cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp():
        raise EnrollRefused("the current certificate has expired: enroll again with a new token")
    row = conn.execute(sa.select(t.certificates.c.gateway, t.certificates.c.revoked_at).where(
        t.certificates.c.serial == format(cert.serial_number, "x"))).first()
    if row is None or row.revoked_at is not None:
        raise EnrollRefused("the current certificate is unknown here or revoked")
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != row.gateway:
        raise EnrollRefused("the current certificate's CN is not its gateway")
    return cert, row.gateway


def renew(conn: sa.Connection, ca: Ca, *, csr_pem: str, cert_pem: str, proof_b64: str,
          signed_at: int, days: float, now: float) -> Issued:
    """The next certificate for the holder of a current one (see the module docstring)."""
    if abs(now - signed_at) > PROOF_WINDOW_S:
        raise EnrollRefused("the renewal proof's time is too far from the center's (check the "
                            "gateway's clock)")
    cert, gateway = _current_certificate(conn, ca, cert_pem, now)
    try:
        parse_csr(csr_pem)
        message = renewal_message(csr_pem, signed_at)
        signature = base64.b64decode(proof_b64, validate=True)
    except (CsrRefused, ValueError) as exc:
        raise EnrollRefused(f"bad renewal request: {exc}", 400) from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EnrollRefused("renewal needs an EC certificate key")
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EnrollRefused("the renewal proof is not signed by the current certificate's key") \
            from None
    try:
        new = ca.sign_csr(csr_pem, gateway, days=days, now=_dt(now))
    except CsrRefused as exc:
        raise EnrollRefused(str(exc), 400) from None
    return _issued(ca, new, gateway, _record(conn, new, gateway, "renew", now))


def gateway_certificates(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Each gateway's newest unrevoked certificate: serial, not_after, issued_at, kind."""
    c = t.certificates.c
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(sa.select(c.gateway, c.serial, c.not_after, c.issued_at, c.kind)
                          .where(c.revoked_at.is_(None)).order_by(c.not_after)).mappings():
        out[r["gateway"]] = dict(r)
    return out
