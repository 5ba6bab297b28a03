"""What arrives from the gateways, checked and reduced to the columns we index.

Pure functions, no I/O: :func:`classify` maps a topic to (gateway, device, kind) and
:func:`decode` turns one MQTT message into a :class:`Record`, :class:`Study`,
:class:`Status` — or raises :class:`Reject` with a short reason. The topic is authoritative
for gateway and device (the broker's ACL ties a gateway to its own topics); a body that
claims another gateway is rejected. ``msg_id`` and ``seq`` are read from the body and, when
missing there, from the MQTT v5 user properties (``docs/mqtt.md``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from center.studies.chunks import ChunkError, RecordChunk, decode_chunk
from center.trigger_note import trigger_note

__all__ = [
    "PRIORITY",
    "Record",
    "Reject",
    "Status",
    "Study",
    "classify",
    "decode",
    "parse_time",
    "priority_of",
]

STRIP_SCHEMA = "ecg-gateway/strip/v1"
STATUS_SCHEMA = "ecg-gateway/status/v1"
STUDY_SCHEMA = "ecg-gateway/study/v1"

PRIORITY = {"button": 0, "auto": 1}
"""Queue order by trigger type (0 first); other event triggers 2, stage ends 3, periodic 4."""

_MAX_FS_HZ = 10000.0
_MAX_SAMPLES = 50_000_000
_MAX_HR_BPM = 400.0
_MAX_ID_LEN = 64
_MAX_COUNT = 2**53
"""Counters (seq, samples) above this are absurd (and beyond a database BIGINT's care)."""
_MAX_INT32 = 2**31 - 1
_MAX_TIME_S = 7258118400.0
"""2200-01-01 UTC: later (or before 1970) is not a time a gateway sends."""


class Reject(Exception):
    """The message cannot be stored as what it claims to be; ``str()`` is the reason."""


@dataclass(frozen=True, slots=True)
class Record:
    """A strip or event: the indexed columns plus the payload text as received."""

    msg_id: str
    kind: str
    gateway: str
    device: str
    seq: int | None
    trigger_type: str
    trigger_at: float | None
    trigger_reason: str | None
    trigger_note: str | None
    start_at: float | None
    end_at: float | None
    fs: float | None
    n_samples: int | None
    leads: str
    heart_rate_bpm: float | None
    quality_min: float | None
    gap_count: int
    gap_samples: int
    created_at: float | None
    priority: int
    payload: str


@dataclass(frozen=True, slots=True)
class Study:
    """A study record (recorded span and gaps of one device)."""

    msg_id: str
    gateway: str
    device: str
    seq: int | None
    period_from: float | None
    period_to: float | None
    coverage_pct: float | None
    samples_missing: int | None
    gap_count: int
    final: bool
    payload: str


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's retained status (or its Last Will)."""

    gateway: str
    state: str
    status_at: float | None
    version: str | None
    outbox_pending: int | None
    devices: dict[str, Any]
    transmission: dict[str, Any] | None
    health: dict[str, Any] | None = None
    """Host facts (disk, CPU, clock, certificate, versions; issue #14)."""


def classify(topic: str, prefix: str) -> tuple[str, str | None, str]:
    """``(gateway, device or None, kind)`` of a topic under ``prefix``; Reject otherwise."""
    if not topic.startswith(prefix + "/"):
        raise Reject("topic outside the prefix")
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 2 and parts[1] == "status":
        return parts[0], None, "status"
    if len(parts) == 3 and parts[2] in ("strip", "event", "study", "record"):
        return parts[0], parts[1], parts[2]
    raise Reject("unexpected topic")


def parse_time(value: Any) -> float | None:
    """ISO-8601 UTC (``...Z``) or POSIX seconds to POSIX seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise Reject("a time is a boolean")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Reject("a time is not ISO-8601") from None
        t = (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()
    else:
        raise Reject("a time has the wrong type")
    if not (math.isfinite(t) and 0.0 <= t <= _MAX_TIME_S):
        raise Reject("a time out of range")
    return t


def priority_of(kind: str, trigger_type: str) -> int:
    """Queue priority, 0 most urgent: button, auto, other events, stage ends, periodic."""
    if trigger_type in PRIORITY:
        return PRIORITY[trigger_type]
    if kind == "event":
        return 2
    return 3 if trigger_type == "stage_end" else 4


def decode(
    topic: str, payload: bytes, user_props: dict[str, str], prefix: str
) -> Record | Study | Status | RecordChunk:
    """Check and reduce one message (see the module docstring); Reject on anything wrong."""
    gateway, device, kind = classify(topic, prefix)
    try:
        text = payload.decode("utf-8")
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Reject("not JSON") from None
    if not isinstance(body, dict):
        raise Reject("not a JSON object")
    if body.get("gateway_id", gateway) != gateway:
        raise Reject("gateway_id differs from the topic")
    if kind == "status":
        return _status(gateway, body)
    if body.get("device_id", device) != device:
        raise Reject("device_id differs from the topic")
    if kind == "record":  # full disclosure (issue #13): a checksummed chunk of a record
        try:
            return decode_chunk(gateway, device or "", body, prefix)
        except ChunkError as exc:
            raise Reject(str(exc)) from None
    msg_id, seq = _ids(body, user_props)
    if kind == "study":
        return _study(gateway, device or "", msg_id, seq, body, text)
    return _record(gateway, device or "", kind, msg_id, seq, body, text)


def _ids(body: dict[str, Any], props: dict[str, str]) -> tuple[str, int | None]:
    msg_id = body.get("msg_id", props.get("msg_id"))
    if "msg_id" in body and "msg_id" in props and props["msg_id"] != body["msg_id"]:
        raise Reject("msg_id in the body and the user property differ")
    if not isinstance(msg_id, str) or not 0 < len(msg_id) <= _MAX_ID_LEN:
        raise Reject("no usable msg_id")
    seq = body.get("seq", props.get("seq"))
    if seq is not None:
        try:
            seq = int(seq)
        except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
            raise Reject("seq is not an integer") from None
        if not 0 <= seq < _MAX_COUNT:
            raise Reject("seq out of range")
    return msg_id, seq


def _num(value: Any, what: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Reject(f"{what} is not a number")
    if not lo <= value <= hi:
        raise Reject(f"{what} out of range")
    return float(value)


def _record(
    gateway: str, device: str, kind: str, msg_id: str, seq: int | None, body: dict, text: str
) -> Record:
    if body.get("schema") != STRIP_SCHEMA:
        raise Reject("unknown schema for a strip or event")
    if body.get("kind", kind) != kind:
        raise Reject("kind differs from the topic")
    samples, trigger, facts = body.get("samples"), body.get("trigger"), body.get("facts") or {}
    if not all(isinstance(x, dict) for x in (samples, trigger, facts)):
        raise Reject("samples, trigger or facts missing")
    if not isinstance(body.get("observation"), dict):
        raise Reject("no FHIR observation")
    fs = _num(samples.get("fs"), "samples.fs", 1e-3, _MAX_FS_HZ)
    n = _num(samples.get("n"), "samples.n", 0, _MAX_SAMPLES)
    hr = _num(facts.get("heart_rate_bpm"), "heart rate", 0, _MAX_HR_BPM)
    quality = facts.get("quality") if isinstance(facts.get("quality"), dict) else {}
    qmin = _num(quality.get("index_min"), "quality", 0, 1)
    trigger_type = trigger.get("type")
    if not isinstance(trigger_type, str) or not 0 < len(trigger_type) <= 32:
        raise Reject("no trigger type")
    reason, note = trigger_note(trigger)
    gaps = body.get("gaps") or []
    if not isinstance(gaps, list) or not all(isinstance(g, dict) for g in gaps):
        raise Reject("gaps is not a list of objects")
    leads = samples.get("leads") or []
    if not isinstance(leads, list) or not all(isinstance(x, str) for x in leads):
        raise Reject("samples.leads is not a list of lead names")
    return Record(
        msg_id=msg_id,
        kind=kind,
        gateway=gateway,
        device=device,
        seq=seq,
        trigger_type=trigger_type,
        trigger_at=parse_time(_first(trigger.get("time"), trigger.get("time_utc"))),
        trigger_reason=reason,
        trigger_note=note,
        start_at=parse_time(samples.get("start")),
        end_at=parse_time(samples.get("end")),
        fs=fs,
        n_samples=None if n is None else int(n),
        leads=" ".join(str(x) for x in leads)[:255],
        heart_rate_bpm=hr,
        quality_min=qmin,
        gap_count=len(gaps),
        gap_samples=min(_MAX_INT32, int(sum(_num(g.get("n_samples"), "gap", 0, _MAX_SAMPLES) or 0
                                            for g in gaps))),
        created_at=parse_time(body.get("created")),
        priority=priority_of(kind, trigger_type),
        payload=text,
    )


def _study(
    gateway: str, device: str, msg_id: str, seq: int | None, body: dict, text: str
) -> Study:
    if body.get("schema") != STUDY_SCHEMA:
        raise Reject("unknown schema for a study")
    rec, period = body.get("recording"), body.get("period") or {}
    if not isinstance(rec, dict) or not isinstance(period, dict):
        raise Reject("study without recording")
    gaps = body.get("gaps") or []
    missing = _num(rec.get("samples_missing"), "samples_missing", 0, _MAX_COUNT)
    return Study(
        msg_id=msg_id,
        gateway=gateway,
        device=device,
        seq=seq,
        period_from=parse_time(period.get("from")),
        period_to=parse_time(period.get("to")),
        coverage_pct=_num(rec.get("coverage_pct"), "coverage", 0, 100),
        samples_missing=None if missing is None else int(missing),
        gap_count=min(_MAX_INT32, len(gaps)) if isinstance(gaps, list) else 0,
        final=bool(body.get("final", False)),
        payload=text,
    )


def _status(gateway: str, body: dict) -> Status:
    if body.get("schema") != STATUS_SCHEMA:
        raise Reject("unknown schema for a status")
    state = body.get("state")
    if state not in ("online", "offline"):
        raise Reject("status state is neither online nor offline")
    devices = body.get("devices") or {}
    transmission = body.get("transmission")
    if not isinstance(devices, dict) or not all(isinstance(v, dict) for v in devices.values()):
        raise Reject("status devices is not an object of objects")
    if transmission is not None and not isinstance(transmission, dict):
        raise Reject("status transmission is not an object")
    pending = _num((transmission or {}).get("outbox_pending"), "outbox_pending", 0, _MAX_INT32)
    health = body.get("health")
    if health is not None and not isinstance(health, dict):
        raise Reject("status health is not an object")
    version = body.get("version")
    return Status(
        gateway=gateway,
        state=state,
        status_at=parse_time(body.get("time")),
        version=str(version)[:32] if version is not None else None,
        outbox_pending=None if pending is None else int(pending),
        devices=devices,
        transmission=transmission,
        health=health,
    )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
