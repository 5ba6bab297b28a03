"""Enrollment and certificate renewal of this gateway (``cryptography`` + ``urllib``).

The gateway's private key is made here (EC P-256), written 0600 and never sent anywhere:
the center receives a certificate signing request (CSR, CN = the gateway id) and answers
with the certificate its CA signed and the CA certificate (which the gateway then trusts for
the broker). Two ways to ask (``POST {center}/api/enroll``, docs/provisioning.md):

- **enrollment**: ``{"token", "csr"}`` with the one-time token from
  ``ecg-center enroll-token --gateway ID``;
- **renewal** (no visit, no token): ``{"csr", "certificate", "proof", "signed_at"}``, the
  proof an ECDSA/SHA-256 signature by the *current* key over :func:`renewal_message`. A new
  key is made for each renewal; the key is replaced before the certificate (a reader in
  between fails to load the pair and keeps what it had: the gateway's publisher only swaps
  its TLS context for a pair that loads).

Why ``urllib`` and not aiohttp: one request per enrollment or renewal, made by a command
(``ecg-gateway provision``), not by the running gateway; the standard library verifies TLS
(system CAs, or the center's CA file) and keeps aiohttp off the Pi's dependencies.

The center's URL must be ``https://`` except on the loopback interface (tests, a center on
the same machine): the token is a credential.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.atomic_file import write_atomic

__all__ = [
    "CertInfo",
    "EnrollError",
    "Enrolled",
    "cert_info",
    "enroll",
    "enroll_url",
    "make_csr",
    "needs_renewal",
    "new_key",
    "renew",
    "renewal_message",
    "write_atomic",
]

META = "enroll.json"
"""Next to the certificate: the center's URL and what was issued (for renewal)."""


class EnrollError(Exception):
    """Enrollment or renewal failed; ``str()`` says why in words for the field engineer."""


@dataclass(frozen=True)
class CertInfo:
    """What matters of a certificate: its CN and validity (aware UTC datetimes)."""

    cn: str | None
    not_before: dt.datetime
    not_after: dt.datetime
    serial: str

    def days_left(self, now: float) -> float:
        """Days until it ends (negative: expired) at ``now`` (POSIX s)."""
        return (self.not_after.timestamp() - now) / 86400.0


@dataclass(frozen=True)
class Enrolled:
    """Where the enrollment put things, and what the center said."""

    gateway: str
    cert_file: Path
    key_file: Path
    ca_file: Path
    not_after: float
    serial: str
    broker_url: str | None


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key (never leaves the Pi)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(key: ec.EllipticCurvePrivateKey, gateway_id: str) -> str:
    """A CSR whose subject is exactly ``CN=<gateway_id>``, PEM text."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def renewal_message(csr_pem: str, signed_at: int) -> bytes:
    """What a renewal proof signs (the same bytes the center checks)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    digest = hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest()
    return f"ecg-gateway-renew/v1\n{digest}\n{int(signed_at)}".encode()


def cert_info(path: Path) -> CertInfo:
    """CN and validity of the PEM certificate at ``path``."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else None
    return CertInfo(cn, cert.not_valid_before_utc, cert.not_valid_after_utc,
                    format(cert.serial_number, "x"))


def needs_renewal(info: CertInfo, now: float, window_days: float) -> bool:
    """True when fewer than ``window_days`` remain (pure)."""
    return info.days_left(now) < window_days


def enroll_url(center_url: str) -> str:
    """``{center}/api/enroll`` for a center's base URL (or the endpoint itself); https
    required except on loopback (:class:`EnrollError`)."""
    parts = urlsplit(center_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollError(f"{center_url!r} is not an http(s) URL of the center")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise EnrollError("the center must be reached over https:// (the token is a secret); "
                          "http:// is only allowed on this machine's loopback")
    base = center_url.strip().rstrip("/")
    return base if base.endswith("/api/enroll") else f"{base}/api/enroll"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def post_json(url: str, body: dict[str, Any], *, ca_file: Path | None = None,
              timeout_s: float = 20.0) -> dict[str, Any]:
    """POST JSON, return the JSON answer; :class:`EnrollError` with the center's reason."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        raise EnrollError(f"the center refused ({exc.code}): {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        raise EnrollError(f"cannot reach the center at {url}: {why}") from None


def _store(answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, gateway: str, url: str,
           cert_file: Path, key_file: Path, ca_file: Path) -> Enrolled:
    """Check the answer is a certificate for our key and id; write key, cert, CA, meta."""
    try:
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
        ca = x509.load_pem_x509_certificate(answer["ca"].encode())
    except (KeyError, AttributeError, ValueError):
        raise EnrollError("the center's answer holds no usable certificate") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise EnrollError("the center's certificate is not for our key")
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != gateway:
        raise EnrollError(f"the center's certificate is not for gateway {gateway}")
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        raise EnrollError("the certificate was not signed by the CA the center sent") from None
    for path in (cert_file, key_file, ca_file):
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(key_file, key_pem(key), 0o600)
    write_atomic(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write_atomic(ca_file, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    meta = {"center_url": url, "gateway_id": gateway, "serial": format(cert.serial_number, "x"),
            "not_after": cert.not_valid_after_utc.timestamp(),
            "broker_url": answer.get("broker_url")}
    write_atomic(Path(cert_file).parent / META, json.dumps(meta, indent=1).encode(), 0o644)
    return Enrolled(gateway, Path(cert_file), Path(key_file), Path(ca_file),
                    meta["not_after"], meta["serial"], answer.get("broker_url"))


def enroll(center_url: str, token: str, gateway_id: str, *, cert_file: Path, key_file: Path,
           ca_file: Path, center_ca: Path | None = None) -> Enrolled:
    """Make a key, have the center sign its CSR with the token, write everything."""
    url = enroll_url(center_url)
    key = new_key()
    answer = post_json(url, {"token": token.strip(), "csr": make_csr(key, gateway_id)},
                       ca_file=center_ca)
    return _store(answer, key, gateway_id, url, cert_file, key_file, ca_file)


def renew(*, cert_file: Path, key_file: Path, ca_file: Path, center_url: str | None = None,
          center_ca: Path | None = None, now: float | None = None) -> Enrolled:
    """A new key and certificate for the current one's holder (see the module docstring)."""
    meta_path = Path(cert_file).parent / META
    if center_url is None:
        try:
            center_url = json.loads(meta_path.read_text())["center_url"]
        except (OSError, ValueError, KeyError):
            raise EnrollError(f"no center URL: give --center or re-enroll ({meta_path} "
                              "missing)") from None
    url = enroll_url(str(center_url))
    try:
        current_pem = Path(cert_file).read_text()
        info = cert_info(Path(cert_file))
        current_key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise EnrollError(f"the current certificate or key is not readable: {exc}") from None
    if not isinstance(current_key, ec.EllipticCurvePrivateKey) or info.cn is None:
        raise EnrollError("the current key is not an EC key, or the certificate has no CN")
    key = new_key()
    csr = make_csr(key, info.cn)
    signed_at = int(now if now is not None else time.time())
    proof = current_key.sign(renewal_message(csr, signed_at), ec.ECDSA(hashes.SHA256()))
    answer = post_json(url, {"csr": csr, "certificate": current_pem, "signed_at": signed_at,
                             "proof": base64.b64encode(proof).decode()}, ca_file=center_ca)
    return _store(answer, key, info.cn, url, cert_file, key_file, ca_file)
