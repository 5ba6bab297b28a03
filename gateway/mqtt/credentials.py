"""The gateway's MQTT credentials, checked before anything connects (pure file checks).

- TLS: TLS 1.2 at least, the broker's certificate and host name verified against
  ``ca_file`` (or the system's CAs); a client certificate for mutual TLS. Every file
  named in an error message.
- Secrets (client key, password file) must be readable by their owner only: a key or
  password the whole Pi can read is refused, not warned about.

``ecg-gateway config check`` runs the same checks (:func:`check_credentials`).
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path
from typing import Protocol

from gateway.mqtt.errors import PublisherError

__all__ = ["check_credentials", "read_password", "tls_context"]


class _MqttSettings(Protocol):
    tls: bool
    username: str | None
    password_file: Path | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None


def _check_private(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise PublisherError(f"cannot read {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PublisherError(
            f"refusing to start: {what} {path} is mode {stat.S_IMODE(mode):04o}; "
            f"it must be readable by its owner only (chmod 600 {path})"
        )


def _load(what: str, path: Path, load: object) -> None:
    try:
        load()  # type: ignore[operator]
    except FileNotFoundError:
        raise PublisherError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise PublisherError(f"{what} {path} is not readable by this user") from None
    except (OSError, ssl.SSLError) as exc:
        raise PublisherError(f"{what} {path} is not usable: {exc}") from None


def tls_context(cfg: _MqttSettings) -> ssl.SSLContext:
    """Client TLS context: TLS >= 1.2, broker certificate and host name verified."""
    if cfg.key_file is not None:
        if cfg.cert_file is None:
            raise PublisherError("mqtt.key_file is set but mqtt.cert_file is not")
        _check_private(cfg.key_file, "client key file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca = cfg.ca_file
    if ca is not None:
        _load("mqtt.ca_file", ca, lambda: ctx.load_verify_locations(cafile=str(ca)))
    else:
        ctx.load_default_certs()
    cert = cfg.cert_file
    if cert is not None:
        key = str(cfg.key_file) if cfg.key_file is not None else None
        what = "mqtt.cert_file / mqtt.key_file"
        _load(what, cert, lambda: ctx.load_cert_chain(str(cert), key))
    return ctx


def read_password(cfg: _MqttSettings) -> bytes | None:
    """The password from ``password_file`` (owner-only), or None."""
    if cfg.password_file is None:
        return None
    if cfg.username is None:
        raise PublisherError("mqtt.password_file is set but mqtt.username is not")
    _check_private(cfg.password_file, "mqtt.password_file")
    try:
        return cfg.password_file.read_text().strip("\r\n").encode()
    except OSError as exc:
        raise PublisherError(
            f"cannot read mqtt.password_file {cfg.password_file}: {exc.strerror}"
        ) from None


def check_credentials(cfg: _MqttSettings) -> None:
    """Every check the publisher makes before connecting; raises :class:`PublisherError`."""
    read_password(cfg)
    if cfg.tls:
        tls_context(cfg)
