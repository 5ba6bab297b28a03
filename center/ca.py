"""The center's private certificate authority (``cryptography``): create it, sign CSRs.

One CA signs the broker's server certificate, the center's own client certificate and every
gateway's client certificate (docs/broker.md: the broker trusts it; a client certificate's CN
is the MQTT user name the ACL knows). The CA lives in a directory::

    ca.pem   the CA certificate (public: every gateway and the broker get a copy)
    ca.key   its EC P-256 private key, mode 0600 (never leaves the center)

:func:`init_ca` creates it (``ecg-center ca init``), :func:`load_ca` reads it, and
:meth:`Ca.sign_csr` turns a gateway's certificate signing request into a client
certificate after checking it (signature, key type and size, exactly one CN equal to the
gateway id the request was authorised for). :func:`issue_pair` makes a key and a
certificate at the center (the broker's, the center's own; ``ecg-center ca issue``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.atomic_file import write_atomic

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "Ca",
    "CaError",
    "CsrRefused",
    "init_ca",
    "issue_pair",
    "load_ca",
    "write_private",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start this long before now, so a Pi whose clock lags a little accepts them."""


class CaError(Exception):
    """The CA directory is missing, incomplete or unusable."""


class CsrRefused(Exception):
    """A certificate signing request we will not sign; ``str()`` says why."""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    write_atomic(path, data, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Ca:
    """A loaded CA: its certificate and key. Times are aware UTC datetimes."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        """The CA certificate, PEM text (what gateways and the broker trust)."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def _builder(self, subject: x509.Name, public_key, now: dt.datetime,  # type: ignore[no-untyped-def]
                 days: float) -> x509.CertificateBuilder:
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )

    def sign_csr(self, csr_pem: str | bytes, expected_cn: str, *, days: float,
                 now: dt.datetime) -> x509.Certificate:
        """A client certificate (CN = ``expected_cn``, clientAuth) for a checked CSR.

        Raises :class:`CsrRefused` when the CSR is not PEM, its signature is wrong, its key
        is weak, or its subject is anything but exactly ``CN=expected_cn``. ``days``: the
        validity, capped by the CA's own.
        """
        csr = parse_csr(csr_pem)
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or len(csr.subject) != 1:
            raise CsrRefused("the CSR's subject must be exactly one CN (the gateway id)")
        if cns[0].value != expected_cn:
            raise CsrRefused(f"the CSR is for {cns[0].value!r}, not for gateway {expected_cn!r}")
        builder = self._builder(_name(expected_cn), csr.public_key(), now, days)
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issued_this(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` carries this CA's valid signature."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def parse_csr(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """A CSR whose self-signature holds and whose key is EC P-256/P-384 or RSA >= 2048."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise CsrRefused("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CsrRefused("the CSR's signature does not match its key")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise CsrRefused(f"EC curve {key.curve.name} not accepted (use P-256)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrRefused("RSA keys under 2048 bits are not accepted")
    else:
        raise CsrRefused("only EC P-256/P-384 or RSA >= 2048 keys are accepted")
    return csr


def init_ca(directory: Path, *, name: str = "ECG monitoring CA", days: float = 3650,
            now: dt.datetime | None = None) -> Ca:
    """Create a CA in ``directory`` (made 0700); refuses to overwrite an existing one."""
    directory = Path(directory)
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        raise CaError(f"{directory} already holds a CA; refusing to overwrite it")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_encipherment=False,
                          content_commitment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(directory / CA_KEY, _key_pem(key))
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(cert, key)


def load_ca(directory: Path) -> Ca:
    """The CA in ``directory``; :class:`CaError` naming what is wrong."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    try:
        if key_path.stat().st_mode & 0o077:
            raise CaError(f"{key_path} must be readable by its owner only (chmod 600)")
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError as exc:
        raise CaError(f"no CA in {directory} ({exc.filename} missing): run "
                      f"'ecg-center ca init --dir {directory}'") from None
    except (OSError, ValueError) as exc:
        raise CaError(f"the CA in {directory} is not usable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{key_path} is not an EC key")
    return Ca(cert, key)


def issue_pair(ca: Ca, cn: str, out_dir: Path, *, server: bool, sans: list[str] | None = None,
               days: float = 825, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """A key (0600) and a certificate for ``cn`` made at the center: ``server`` True for the
    broker (serverAuth, ``sans``: DNS names or IP addresses), False for a client such as the
    center itself (clientAuth). Returns (certificate, key) paths ``<cn>.pem``/``<cn>.key``."""
    now = now or dt.datetime.now(dt.UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = ca._builder(_name(cn), key.public_key(), now, days)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    names: list[x509.GeneralName] = []
    for san in sans or ([cn] if server else []):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_path, key_path = out_dir / f"{cn}.pem", out_dir / f"{cn}.key"
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
