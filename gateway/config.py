"""Gateway configuration: pydantic models, TOML loading, readable errors.

Every model forbids unknown keys, so a typo is an error with its path
(``devices.1.baudrate: ...``) rather than a silently ignored setting. The
gateway refuses to start on any error. ``config/schema.json`` is exported from
these models by ``ecg-gateway config schema``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AutoEventsConfig",
    "BleBackend",
    "CartSerialDevice",
    "ConfigError",
    "DeviceConfig",
    "DspConfig",
    "EventsConfig",
    "GatewayConfig",
    "GatewaySection",
    "LiveConfig",
    "MqttConfig",
    "PolarPmdDevice",
    "StripsConfig",
    "UploadConfig",
    "load_config",
    "parse_config",
]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics: no '/', '+', '#', spaces, and never PHI."""
_TOKEN_PATTERN = r"^[!-~]+$"
"""Visible ASCII, no spaces: MQTT client ids and user names, serial ports."""
_BLE_ADDRESS_PATTERN = (
    r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"  # BlueZ / Linux: AA:BB:CC:DD:EE:FF
    r"|^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$"  # CoreBluetooth UUID
)
_LEAD_PATTERN = r"^[A-Za-z0-9_.+-]{1,16}$"
_TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
_U32_MAX = 0xFFFFFFFF
_Token = Annotated[str, Field(min_length=1, max_length=128, pattern=_TOKEN_PATTERN)]


class _Model(BaseModel):
    """Strict: unknown keys, numbers that are not finite (``inf``, ``nan``), quoted numbers
    (``"30"``) and anything but ``true``/``false`` for a boolean (``"yes"``, ``1``) are
    errors, not silently converted. Paths are given as strings (``strict=False`` there)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class GatewaySection(_Model):
    id: Annotated[str, Field(pattern=_ID_PATTERN)] = Field(
        description="Pseudonymous gateway id used in MQTT topics (no patient data)."
    )
    state_dir: Path = Field(
        Path("/var/lib/ecg-gateway"),
        strict=False,
        description="Where the outbox database, study records and recordings are kept "
        "(owned by the service user, mode 0700).",
    )
    outbox_max_mb: Annotated[float, Field(gt=0, le=100_000)] = Field(
        1024.0,
        description="Disk quota of the outbox, MB; over it the oldest strips are dropped "
        "(recorded and alarmed), events never.",
    )
    ble_adapter: Annotated[str, Field(pattern=r"^hci[0-9]{1,2}$")] = Field(
        "hci0", description="BlueZ adapter the BLE patches use."
    )
    ble_reset_after_failures: Annotated[int, Field(ge=0, le=100)] = Field(
        5,
        description="Power-cycle the Bluetooth adapter after this many failed connections "
        "in a row (over at least a minute, at most every 10 minutes); 0 never resets.",
    )


class MqttConfig(_Model):
    url: str = Field(
        "mqtts://localhost:8883",
        description="Broker URL: mqtts://host[:port] (TLS, default 8883) or mqtt://host[:port].",
    )
    topic_prefix: Annotated[str, Field(pattern=_TOPIC_PREFIX_PATTERN)] = Field(
        "ecg/v1", description="First topic levels, e.g. ecg/v1 (no empty level, no wildcard)."
    )
    client_id: _Token | None = Field(
        None, description="Defaults to the gateway id; visible ASCII, no spaces."
    )
    username: _Token | None = None
    password_file: Path | None = Field(
        None, strict=False, description="File holding the password (0600, the service user's)."
    )
    ca_file: Path | None = Field(
        None, strict=False, description="PEM CA bundle that signed the broker."
    )
    cert_file: Path | None = Field(
        None, strict=False, description="PEM client certificate (mutual TLS)."
    )
    key_file: Path | None = Field(
        None, strict=False, description="PEM client key; must be mode 0600."
    )
    insecure: bool = Field(
        False, description="Allow plaintext mqtt:// (loud warning). Never for patient data."
    )
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, Field(ge=0, le=_U32_MAX)] = Field(
        3600, description="Seconds the broker keeps the session after a disconnect (MQTT u32)."
    )
    inflight: Annotated[int, Field(ge=1, le=1000)] = 20

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("URL has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no user name or password in the URL: use username and password_file")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("a broker URL is mqtt[s]://host[:port], nothing after it")
        _ = parts.port  # raises ValueError on a bad port
        return v

    @model_validator(mode="after")
    def _check_security(self) -> MqttConfig:
        if urlsplit(self.url).scheme == "mqtt" and not self.insecure:
            raise ValueError(
                "plaintext mqtt:// carries patient data unencrypted; use mqtts:// "
                "or set insecure = true explicitly"
            )
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file is set but username is not")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not")
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


BleBackend = Literal["bluez", "sim"]


class PolarPmdDevice(_Model):
    """A BLE chest patch speaking Polar PMD ECG streaming (+ Heart Rate, Battery)."""

    kind: Literal["polar_pmd"]
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    address: Annotated[str, Field(pattern=_BLE_ADDRESS_PATTERN)] = Field(
        description="BLE address (AA:BB:CC:DD:EE:FF) or platform id (UUID)."
    )
    fs: Literal[130] = Field(130, description="ECG sample rate, Hz (H10: 130).")
    lead: Annotated[str, Field(pattern=_LEAD_PATTERN)] = Field(
        "ECG", description="Lead label given to the single channel."
    )
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = 20.0
    silence_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0


class PatchDevice(_Model):
    """A BLE chest patch speaking our profile with backfill (docs/protocols/patch-gatt.md)."""

    kind: Literal["patch"]
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    address: Annotated[str, Field(pattern=_BLE_ADDRESS_PATTERN)] = Field(
        description="BLE address (AA:BB:CC:DD:EE:FF) or platform id (UUID)."
    )
    lead: Annotated[str, Field(pattern=_LEAD_PATTERN)] = Field(
        "ECG", description="Lead label given to the single channel."
    )
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = 20.0
    silence_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    backfill_wait_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        300.0,
        description="After a hole, how much new stream, s, analysis (strips, events, "
        "rhythm) holds while the patch backfills the hole (its length does not count); "
        "samples backfilled later are kept out of analysis.",
    )


class CartSerialDevice(_Model):
    """A stress-test cart streaming 12 leads over a serial port (docs/protocols/cart-serial.md)."""

    kind: Literal["cart_serial"]
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    port: Annotated[str, Field(max_length=255, pattern=_TOKEN_PATTERN)] = Field(
        description="Serial device, e.g. /dev/ttyUSB0 (or a pyserial URL)."
    )
    baudrate: Literal[230400, 460800, 921600] = Field(
        460800, description="Line speed; 12 leads at 500 Hz need at least 230400 (8N1)."
    )
    silence_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0


DeviceConfig = Annotated[
    PolarPmdDevice | PatchDevice | CartSerialDevice, Field(discriminator="kind")
]


class DspConfig(_Model):
    band: Literal["monitoring", "diagnostic"] = Field(
        "monitoring", description="monitoring 0.5-40 Hz; diagnostic 0.05-150 Hz (where fs allows)."
    )
    mains_hz: Literal[50, 60] = 50
    brady_bpm: Annotated[float, Field(gt=10, lt=100)] = 40.0
    tachy_bpm: Annotated[float, Field(gt=60, lt=300)] = 150.0
    pause_s: Annotated[float, Field(gt=1, le=20)] = 3.0

    @model_validator(mode="after")
    def _brady_below_tachy(self) -> DspConfig:
        if self.brady_bpm >= self.tachy_bpm:
            raise ValueError(f"brady_bpm ({self.brady_bpm:g}) must be below tachy_bpm")
        return self


class StripsConfig(_Model):
    period_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        300.0, description="A periodic rhythm strip is sent every period_s seconds per device."
    )
    duration_s: Annotated[float, Field(gt=0, le=120)] = Field(
        10.0, description="Length of each periodic strip, seconds (at most period_s)."
    )

    @model_validator(mode="after")
    def _strips_do_not_overlap(self) -> StripsConfig:
        if self.duration_s > self.period_s:
            raise ValueError(
                f"duration_s ({self.duration_s:g}) is longer than period_s ({self.period_s:g})"
            )
        return self


class EventsConfig(_Model):
    pre_s: Annotated[float, Field(ge=0, le=600)] = Field(
        30.0, description="Seconds of ECG before a symptom button press in the event strip."
    )
    post_s: Annotated[float, Field(ge=0, le=600)] = Field(
        30.0, description="Seconds of ECG after the press in the event strip."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> EventsConfig:
        if self.pre_s + self.post_s < 1.0:
            raise ValueError("pre_s + post_s must be at least 1 s (the event strip)")
        return self


class AutoEventsConfig(_Model):
    """Events the gateway raises by itself when a rhythm episode begins (not patient-
    triggered: those are never limited)."""

    enabled: bool = Field(
        True, description="Raise an event when a pause, VT, AF, brady, tachy or SVT begins."
    )
    device_kinds: list[Literal["patch", "polar_pmd", "cart_serial"]] = Field(
        default_factory=lambda: ["patch", "polar_pmd"],
        description="Kinds of device whose episodes raise events. Stress-test carts are not "
        "in the default: the test is attended and exercise tachycardia is its purpose.",
    )
    pre_s: Annotated[float, Field(ge=0, le=600)] = Field(
        45.0, description="Seconds of ECG before the episode's onset in the event."
    )
    post_s: Annotated[float, Field(ge=0, le=600)] = Field(
        30.0, description="Seconds of ECG after the onset in the event."
    )
    max_per_day: Annotated[int, Field(ge=1, le=1000)] = Field(
        3,
        description="Events per reason in any 24 h; past that only a more significant "
        "episode (longer, faster, slower) raises one, naming the one it supersedes; one "
        "found in unusable signal ranks below any in usable signal.",
    )
    merge_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        60.0, description="An episode starting this close to a raised one joins its event, s."
    )
    min_duration_s: dict[
        Literal["pause", "vt", "svt", "af_onset", "af_rvr", "brady", "tachy"],
        Annotated[float, Field(ge=0, le=3600)],
    ] = Field(
        default_factory=dict,
        description="Shortest episode per reason before it raises an event, s (defaults: "
        "AF 30, brady and tachy 10, pause, VT and SVT at once).",
    )


class LiveConfig(_Model):
    enabled: bool = True
    block_s: Annotated[float, Field(gt=0, le=10)] = Field(
        1.0, description="Live ECG is batched into messages of about this many seconds."
    )
    max_rate_hz: Annotated[float, Field(gt=0, le=100)] = Field(
        5.0, description="At most this many live messages per second per device."
    )


class StudyConfig(_Model):
    period_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        3600.0,
        description="A study record per device (recorded span, coverage, new gaps) this "
        "often, seconds, and one at shutdown.",
    )


class RecordingConfig(_Model):
    enabled: bool = Field(
        True,
        description="Keep every sample of every device as WFDB records under "
        "<state_dir>/recordings/<device>/ (the full recording for scanning analysis).",
    )
    file_s: Annotated[float, Field(ge=60, le=86400)] = Field(
        3600.0, description="Seconds of samples per record (records are aligned on sample numbers)."
    )
    max_mb: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        4000.0,
        description="Disk quota of each device's records, MB (21 days of a 250 Hz patch are "
        "about 900 MB); over it the oldest records are deleted, with a warning.",
    )
    sync_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, description="Recorded samples are fsync'ed at least this often, seconds."
    )


class UploadConfig(_Model):
    """Full disclosure (issue #13): every closed record sent to the center, confirmed."""

    enabled: bool = Field(
        True,
        description="Send each closed record of the full recording to the center (MQTT, "
        "lowest priority); the recording quota then deletes only records the center "
        "confirmed. Needs [recording] enabled.",
    )
    chunk_kb: Annotated[int, Field(ge=4, le=1024)] = Field(
        64, description="Bytes of signal per chunk message, KiB (each checksummed)."
    )
    rate_kb_s: Annotated[float, Field(ge=0)] = Field(
        64.0,
        description="Byte-rate cap of record messages on the uplink, KB/s (0: no cap). Keep "
        "it well under the uplink's speed: events never wait behind records in the "
        "gateway, but a full uplink delays everything.",
    )
    window_share: Annotated[int, Field(ge=1, le=100)] = Field(
        2, description="At most this many record chunks in flight at once (of mqtt.inflight)."
    )
    queued_chunks: Annotated[int, Field(ge=1, le=1000)] = Field(
        4, description="At most this many record chunks waiting in the outbox at once."
    )
    settle_s: Annotated[float, Field(ge=0, le=86400)] = Field(
        600.0,
        description="A record is sent this long after its span ended (time for a patch to "
        "backfill), seconds; later backfill makes a new version.",
    )
    quiet_s: Annotated[float, Field(ge=0, le=86400)] = Field(
        60.0, description="... and only when its files have not changed for this long, s."
    )
    resend_after_s: Annotated[float, Field(gt=0)] = Field(
        3600.0,
        description="A record fully sent but not confirmed by the center within this "
        "time is sent again, seconds.",
    )
    scan_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        10.0, description="The records are listed this often, seconds."
    )


class GatewayConfig(_Model):
    gateway: GatewaySection
    mqtt: MqttConfig = MqttConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)
    dsp: DspConfig = DspConfig()
    strips: StripsConfig = StripsConfig()
    events: EventsConfig = EventsConfig()
    auto_events: AutoEventsConfig = AutoEventsConfig()
    live: LiveConfig = LiveConfig()
    study: StudyConfig = StudyConfig()
    recording: RecordingConfig = RecordingConfig()
    upload: UploadConfig = UploadConfig()

    @model_validator(mode="after")
    def _unique_device_ids(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
        return self


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` lists every problem with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration {source}:\n{lines}")


def _format_errors(exc: ValidationError) -> list[str]:
    """``key.path: message``, with the value given when it is a single value."""
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see config/example.toml)"
        elif err["type"] != "missing" and isinstance(err.get("input"), str | int | float | bool):
            msg += f" (got {err['input']!r:.60})"
        out.append(f"{path}: {msg}")
    return out


def parse_config(data: dict, source: str = "<dict>") -> GatewayConfig:
    """Validate a parsed TOML/JSON mapping; raise :class:`ConfigError` with key paths."""
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_config(data, str(path))
