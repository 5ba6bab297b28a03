"""The center's configuration: strict pydantic models read from TOML.

Every model forbids unknown keys, so a typo is an error naming its path
(``mqtt.ur: unknown key``) instead of a silently ignored setting. Durations are in
seconds unless the key says otherwise.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AuthConfig",
    "CenterConfig",
    "ConfigError",
    "DbConfig",
    "EnrollConfig",
    "EscalationConfig",
    "IngestConfig",
    "MqttConfig",
    "StudiesConfig",
    "WebConfig",
    "load_config",
    "parse_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_client_id() -> str:
    return f"ecg-center-{socket.gethostname()}"[:64]


class MqttConfig(_Model):
    """How the center reaches the broker (the same TLS rules as the gateway's)."""

    url: str = Field(
        "mqtts://localhost:8883",
        description="Broker URL: mqtts://host[:port] (TLS, default 8883) or mqtt://host[:port].",
    )
    insecure: bool = Field(
        False, description="Allow plaintext mqtt:// (logged as a warning). Never for patient data."
    )
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]+$")] = "ecg/v1"
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        default_factory=_default_client_id,
        description="Fixed client id: the persistent session is keyed on it. Each serve "
        "process needs its own.",
    )
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{0,64}$")] = Field(
        "ecg-center",
        description="MQTT v5 shared-subscription group for strips, events and studies "
        "($share/<group>/...); empty: plain subscriptions.",
    )
    username: str | None = None
    password_file: Path | None = Field(None, description="File holding the password (0600).")
    ca_file: Path | None = Field(None, description="PEM CA bundle that signed the broker.")
    cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="PEM client key; must be mode 0600.")
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, Field(ge=0)] = Field(
        7 * 86400, description="How long the broker keeps our session and queues for us, s."
    )
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = Field(
        2000, description="Unacknowledged QoS 1 messages the broker may send us at once."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("URL has no host")
        _ = parts.port  # raises ValueError on a bad port
        return v

    @model_validator(mode="after")
    def _check_security(self) -> MqttConfig:
        if urlsplit(self.url).scheme == "mqtt" and not self.insecure:
            raise ValueError(
                "plaintext mqtt:// carries patient data unencrypted; use mqtts:// "
                "or set insecure = true explicitly"
            )
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class DbConfig(_Model):
    """The database: ``sqlite:///PATH`` (embedded, WAL) or ``postgresql://...`` (psycopg 3)."""

    url: str = Field("sqlite:///ecg-center.db", description="SQLAlchemy-style database URL.")
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        scheme = v.split(":", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgresql+psycopg"):
            raise ValueError("database URL must start with sqlite:/// or postgresql://")
        return v


class IngestConfig(_Model):
    """Batching of the ingest: a transaction per batch, then the PUBACKs."""

    batch_max: Annotated[int, Field(ge=1, le=10000)] = Field(
        500, description="At most this many messages per transaction."
    )
    batch_wait_ms: Annotated[float, Field(ge=0, le=5000)] = Field(
        20.0, description="Wait at most this long for a batch to fill, milliseconds."
    )
    max_payload_kb: Annotated[int, Field(ge=1)] = Field(
        16384, description="Larger payloads are rejected (stored as a reject, acknowledged)."
    )
    reject_keep_bytes: Annotated[int, Field(ge=0, le=65536)] = Field(
        2048, description="Bytes of a rejected payload kept in the rejects table."
    )


class StudiesConfig(_Model):
    """Long-term studies at the center (issue #13): full-disclosure housekeeping."""

    abandon_after_s: Annotated[float, Field(gt=0)] = Field(
        6 * 3600.0,
        description="A version of a record left incomplete is given up (its chunks deleted, "
        "state 'abandoned') this long after a newer version of the record began to "
        "arrive, seconds. The newest version of a record is never given up.",
    )
    housekeeping_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        300.0, description="How often the scanner looks for versions to give up, seconds."
    )


class EscalationConfig(_Model):
    """When an unacknowledged item becomes an escalation."""

    escalate_after_s: Annotated[float, Field(gt=0)] = Field(
        120.0, description="An urgent item open this long is escalated, seconds."
    )
    triggers: list[str] = Field(
        default_factory=lambda: ["button", "auto"],
        description="Trigger types that escalate (periodic and stage strips do not).",
    )
    check_every_s: Annotated[float, Field(gt=0, le=60)] = 1.0


class AuthConfig(_Model):
    """Staff sessions and login rate limits."""

    session_idle_s: Annotated[float, Field(gt=0)] = Field(
        1800.0, description="A session unused this long expires, seconds."
    )
    session_max_s: Annotated[float, Field(gt=0)] = Field(
        12 * 3600.0, description="A session expires this long after login, whatever its use."
    )
    login_window_s: Annotated[float, Field(gt=0)] = Field(
        900.0, description="Window over which failed logins are counted, seconds."
    )
    max_failures_per_user: Annotated[int, Field(ge=1)] = 5
    max_failures_per_ip: Annotated[int, Field(ge=1)] = 20
    cookie_secure: bool = Field(
        True,
        description="Mark the session cookie Secure (HTTPS only: behind the TLS reverse "
        "proxy). Set false only to use the console over plain http on loopback.",
    )


class WebConfig(_Model):
    """The console's HTTP listener (put a TLS reverse proxy in front of it)."""

    listen: str = Field("127.0.0.1:8080", description="HOST:PORT; port 0 picks a free one.")
    px_per_mm: Annotated[float, Field(gt=0.5, le=40)] = Field(
        3.78, description="Default screen calibration of the strip viewer, pixels per mm."
    )
    page_size: Annotated[int, Field(ge=5, le=500)] = 50
    trust_forwarded_for: bool = Field(
        False,
        description="Take the client address from the last X-Forwarded-For entry (only "
        "behind a reverse proxy that sets it; used for login rate limits and the audit).",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("listen must be HOST:PORT")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class EnrollConfig(_Model):
    """Enrollment of gateways and their certificates (issue #14, docs/provisioning.md)."""

    ca_dir: Path | None = Field(
        None, description="Directory of the CA (ca.pem, ca.key 0600) made by 'ecg-center ca "
        "init'; unset: POST /api/enroll answers 503.")
    cert_days: Annotated[float, Field(gt=0, le=825)] = Field(
        180.0, description="Validity of a gateway certificate, days (renewed before it ends).")
    token_ttl_s: Annotated[float, Field(gt=0, le=30 * 86400)] = Field(
        86400.0, description="How long an enrollment token from 'enroll-token' stays valid, s.")
    broker_url: str | None = Field(
        None, description="The broker URL gateways use (mqtts://host:8883), given to them at "
        "enrollment; unset: the engineer types it.")
    warn_cert_days: Annotated[float, Field(ge=0)] = Field(
        21.0, description="The fleet view warns when a certificate has fewer days left.")
    warn_battery_pct: Annotated[float, Field(ge=0, le=100)] = Field(
        20.0, description="The fleet view warns when a patch battery is at or below this, %.")


class CenterConfig(_Model):
    """The whole configuration file."""

    mqtt: MqttConfig = MqttConfig()
    db: DbConfig = DbConfig()
    web: WebConfig = WebConfig()
    ingest: IngestConfig = IngestConfig()
    studies: StudiesConfig = StudiesConfig()
    escalation: EscalationConfig = EscalationConfig()
    auth: AuthConfig = AuthConfig()
    enroll: EnrollConfig = EnrollConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` lists every problem with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration {source}:\n{lines}")


def _format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see center/example.toml)"
        out.append(f"{path}: {msg}")
    return out


def parse_config(data: dict, source: str = "<dict>") -> CenterConfig:
    """Validate a parsed TOML mapping; raise :class:`ConfigError` with key paths."""
    try:
        return CenterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(exc)) from None


def load_config(path: str | Path | None, overrides: dict | None = None) -> CenterConfig:
    """Read a TOML file (None: defaults only), apply ``{"section": {"key": value}}`` overrides."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
        except OSError as exc:
            raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return parse_config(data, source)
