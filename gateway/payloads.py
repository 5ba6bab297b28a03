"""MQTT topics and message bodies (pure): status, live ECG, strips and events.

The contract is documented for monitoring-center developers in ``docs/mqtt.md``.
Strips and post-symptom events carry an HL7 FHIR R4 ``Observation`` whose
components hold one lead each as ``valueSampledData`` (integer microvolts,
``origin`` 0 uV, ``factor`` 1, ``period`` in ms, ``E`` for a sample that was
never received), coded with IEEE 11073 MDC lead codes, inside an envelope that
says which samples (sequence range, times) the strip covers, which are missing,
why it was sent and what was measured on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.block import SampleBlock
from core.events import BloodPressure, DeviceEvent, Gap, LeadOff, StageChanged
from core.units import iso_utc as iso
from gateway.mdc import MDC_SYSTEM, mdc_lead
from gateway.pipeline.facts import StripFacts, Trigger

__all__ = [
    "LIVE_SCHEMA",
    "STATUS_SCHEMA",
    "STRIP_SCHEMA",
    "STUDY_SCHEMA",
    "PayloadError",
    "StudyFacts",
    "build_live_payload",
    "build_strip_body",
    "build_study_body",
    "event_facts",
    "iso",
    "json_safe",
    "observation_from_block",
    "parse_message",
    "samples_from_observation",
    "status_topic",
    "topic",
]

STRIP_SCHEMA = "ecg-gateway/strip/v1"
LIVE_SCHEMA = "ecg-gateway/live/v1"
STATUS_SCHEMA = "ecg-gateway/status/v1"  # built by gateway.status
STUDY_SCHEMA = "ecg-gateway/study/v1"

_UCUM = "http://unitsofmeasure.org"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_LOINC = "http://loinc.org"
_TITLES = {
    "event": "Post-symptom rhythm strip",
    "strip": "Rhythm strip",
}


class PayloadError(ValueError):
    """A received message is not one of ours (not JSON, wrong schema, missing fields)."""


# --- topics --------------------------------------------------------------------------
def topic(prefix: str, gateway_id: str, device_id: str, kind: str) -> str:
    """``{prefix}/{gateway_id}/{device_id}/{kind}`` (kind: live, strip, event)."""
    return f"{prefix}/{gateway_id}/{device_id}/{kind}"


def status_topic(prefix: str, gateway_id: str) -> str:
    """``{prefix}/{gateway_id}/status`` (retained)."""
    return f"{prefix}/{gateway_id}/status"


# --- helpers ---------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` with numpy types, tuples, dataclasses and non-finite floats made JSON-safe."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset):
        return [json_safe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    return str(value)


def _microvolts(x_mv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer µV and a mask of missing samples."""
    missing = ~np.isfinite(x_mv)
    uv = np.rint(np.where(missing, 0.0, x_mv) * 1000.0).astype(np.int64)
    return uv, missing


def _sampled_data_text(x_mv: np.ndarray) -> str:
    uv, missing = _microvolts(x_mv)
    tokens = [str(v) for v in uv.tolist()]
    for i in np.flatnonzero(missing).tolist():
        tokens[i] = "E"
    return " ".join(tokens)


def _gap_dict(g: Gap) -> dict[str, Any]:
    return {
        "first_seq": int(g.first_seq),
        "end_seq": int(g.end_seq),
        "n_samples": int(g.end_seq - g.first_seq),
        "start": iso(g.start),
        "end": iso(g.end),
        "reason": g.reason,
        "final": bool(g.final),
    }


# --- FHIR ------------------------------------------------------------------------------
def observation_from_block(
    block: SampleBlock, *, device_id: str, kind: str = "strip", patient_activated: bool = False
) -> dict[str, Any]:
    """An HL7 FHIR R4 Observation holding the block's samples, one component per lead."""
    title = _TITLES.get(kind, "ECG tracing")
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": _CATEGORY, "code": "procedure", "display": "Procedure"}]}
        ],
        "code": {
            "coding": [
                {"system": _LOINC, "code": "11524-6", "display": "EKG study"},
                {"system": MDC_SYSTEM, "code": "131328", "display": "MDC_ECG_ELEC_POTL"},
            ],
            "text": title,
        },
        "effectivePeriod": {"start": iso(block.start), "end": iso(block.end)},
        "device": {"display": device_id},
        "component": [],
    }
    if patient_activated:
        obs["note"] = [{"text": "Patient-activated (symptom button); tracing only."}]
    period_ms = round(1000.0 / block.fs, 6)
    for i, lead in enumerate(block.leads):
        code = mdc_lead(lead)
        obs["component"].append(
            {
                "code": {
                    "coding": [
                        {"system": MDC_SYSTEM, "code": str(code.code), "display": code.refid}
                    ],
                    "text": lead,
                },
                "valueSampledData": {
                    "origin": {"value": 0, "unit": "uV", "system": _UCUM, "code": "uV"},
                    "period": period_ms,
                    "factor": 1,
                    "dimensions": 1,
                    "data": _sampled_data_text(block.samples[:, i]),
                },
            }
        )
    return obs


def samples_from_observation(obs: Mapping[str, Any]) -> tuple[float, list[str], np.ndarray]:
    """Sample rate (Hz), lead names and samples (n, leads) in mV (NaN for ``E``)."""
    try:
        leads: list[str] = []
        columns: list[np.ndarray] = []
        period_ms = None
        for comp in obs["component"]:
            sd = comp["valueSampledData"]
            period_ms = float(sd["period"])
            origin = float(sd.get("origin", {}).get("value", 0.0))
            factor = float(sd.get("factor", 1.0))
            text = sd.get("data", "")
            for missing in ("E", "U", "L"):  # error, above and below detection limit
                text = text.replace(missing, "nan")
            vals = np.array(text.split(), dtype=np.float64)
            unit = str(sd.get("origin", {}).get("code", "uV"))
            scale = {"uV": 1e-3, "mV": 1.0, "V": 1e3}.get(unit, 1e-3)
            columns.append((origin + factor * vals) * scale)
            leads.append(comp.get("code", {}).get("text") or comp["code"]["coding"][0]["display"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PayloadError(f"not an ECG Observation with valueSampledData: {exc!r}") from exc
    if not columns or period_ms is None or period_ms <= 0:
        raise PayloadError("Observation has no sampled components")
    n = min(len(c) for c in columns)
    return 1000.0 / period_ms, leads, np.stack([c[:n] for c in columns], axis=1)


# --- messages --------------------------------------------------------------------------
def build_strip_body(
    block: SampleBlock,
    *,
    gateway_id: str,
    kind: str,
    trigger: Trigger,
    facts: StripFacts,
    gaps: Sequence[Gap],
    created: float,
) -> dict[str, Any]:
    """The JSON body of a strip or event (the outbox adds ``msg_id`` and ``seq``)."""
    device_id = block.source
    return {
        "schema": STRIP_SCHEMA,
        "kind": kind,
        "gateway_id": gateway_id,
        "device_id": device_id,
        "created": iso(created),
        "samples": {
            "first_seq": int(block.seq),
            "end_seq": int(block.end_seq),
            "n": int(block.n),
            "fs": float(block.fs),
            "start": iso(block.start),
            "end": iso(block.end),
            "leads": list(block.leads),
            "units": "uV",
        },
        "gaps": [_gap_dict(g) for g in gaps],
        "trigger": trigger_json(trigger),
        "facts": facts_json(facts),
        "observation": observation_from_block(
            block, device_id=device_id, kind=kind, patient_activated=trigger.type == "button"
        ),
    }


def trigger_json(t: Trigger) -> dict[str, Any]:
    """Why a strip was sent, as in ``docs/mqtt.md`` (only the fields that apply)."""
    d: dict[str, Any] = {"type": t.type, "time": t.time, "seq": t.seq}
    if t.type == "button":
        d["press_id"] = t.press_id
    if t.stage is not None:
        d["stage"] = _stage_json(t.stage)
    d["pre_s"], d["post_s"] = t.pre_s, t.post_s
    if t.pre_available_s is not None:
        d["pre_available_s"] = t.pre_available_s
    if t.reason is not None:
        d["reason"] = t.reason
        d["details"] = json_safe(t.details)
    if t.truncated_at_shutdown:
        d["truncated_at_shutdown"] = True
    if t.analysed_late:
        d["analysed_late"] = True
    if t.time is not None:
        d["time_utc"] = iso(t.time)
    return json_safe(d)


def facts_json(f: StripFacts) -> dict[str, Any]:
    """What was measured on a strip, as in ``docs/mqtt.md``."""
    d: dict[str, Any] = {
        "heart_rate_bpm": f.heart_rate_bpm,
        "beats_seq": list(f.beats_seq),
        "beat_labels": f.beat_labels,
        "recorded_samples": f.recorded_samples,
        "quality": None if f.quality is None else dataclasses.asdict(f.quality),
        "beats_in_unusable_signal": list(f.beats_in_unusable_signal),
        "rhythm_episodes": [
            {
                "kind": e.kind,
                "start_seq": e.start_seq,
                "end_seq": e.end_seq,
                "confidence": e.confidence,
                "min_rate_bpm": e.min_rate_bpm,
                "max_rate_bpm": e.max_rate_bpm,
                "in_unusable_signal": e.in_unusable_signal,
                **e.details,
            }
            for e in f.rhythm_episodes
        ],
        "st": f.st,
    }
    if f.stage is not None:
        d["stage"] = _stage_json(f.stage)
    if f.blood_pressure is not None:
        d["blood_pressure"] = _bp_json(f.blood_pressure)
    if f.lead_off is not None:
        d["lead_off"] = _lead_off_json(f.lead_off)
    return json_safe(d)


def _stage_json(e: StageChanged) -> dict[str, Any]:
    d = {
        "stage": e.stage,
        "phase": e.phase,
        "name": e.name,
        "speed_kmh": e.speed_kmh,
        "grade_pct": e.grade_pct,
    }
    if e.watts is not None:
        d["watts"] = e.watts
    return d


def _bp_json(e: BloodPressure) -> dict[str, Any]:
    return {"time": e.time, "systolic_mmhg": e.systolic_mmhg, "diastolic_mmhg": e.diastolic_mmhg}


def _lead_off_json(e: LeadOff) -> dict[str, Any]:
    return {"time": e.time, "leads": list(e.leads)}


def event_facts(e: DeviceEvent) -> dict[str, Any]:
    """A device event's fields (not its source) as JSON-ready facts (status, logs)."""
    out: dict[str, Any] = {"kind": e.kind}
    for f in dataclasses.fields(e):
        if f.name != "source":
            out[f.name] = getattr(e, f.name)
    return json_safe(out)


def build_live_payload(
    block: SampleBlock, *, gateway_id: str, hr_bpm: float | None, device_id: str | None = None
) -> bytes:
    """Compact JSON of about a second of display-filtered ECG (integer µV, null = missing)."""
    data: dict[str, list[int | None]] = {}
    for i, lead in enumerate(block.leads):
        uv, missing = _microvolts(block.samples[:, i])
        values: list[int | None] = uv.tolist()
        for j in np.flatnonzero(missing).tolist():
            values[j] = None
        data[lead] = values
    body = {
        "schema": LIVE_SCHEMA,
        "gateway_id": gateway_id,
        "device_id": device_id or block.source,
        "first_seq": int(block.seq),
        "end_seq": int(block.end_seq),
        "fs": float(block.fs),
        "start": iso(block.start),
        "leads": list(block.leads),
        "units": "uV",
        "hr_bpm": json_safe(hr_bpm),
        "data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclasses.dataclass
class StudyFacts:
    """What a device recorded, for the study record (long-term monitoring reports).

    Sample numbers are the device's; blocks may arrive out of order (backfill).
    """

    fs: float | None = None
    first_seq: int | None = None
    end_seq: int | None = None
    start: float | None = None  # UTC of first_seq, POSIX s
    end: float | None = None  # UTC of end_seq
    received: int = 0  # samples received (each once)
    missing: int = 0  # samples declared lost (final gaps)
    judged_s: float = 0.0  # seconds of signal judged for quality (1 s windows), s
    analysable_s: float = 0.0  # of which usable for analysis (a lead with index >= 0.5), s

    def add_quality(self, judged_s: float, analysable_s: float) -> None:
        self.judged_s += judged_s
        self.analysable_s += analysable_s

    @property
    def analysable_pct(self) -> float | None:
        """Share of the judged signal that was analysable, %; None before any."""
        return round(100.0 * self.analysable_s / self.judged_s, 1) if self.judged_s else None

    def add_block(self, first_seq: int, end_seq: int, fs: float, start: float, end: float) -> None:
        self.fs = fs
        self.received += end_seq - first_seq
        if self.first_seq is None or first_seq < self.first_seq:
            self.first_seq, self.start = first_seq, start
        if self.end_seq is None or end_seq > self.end_seq:
            self.end_seq, self.end = end_seq, end


def build_study_body(
    gateway_id: str,
    device_id: str,
    facts: StudyFacts,
    gaps: list[dict[str, Any]],
    *,
    since: float,
    now: float,
    final: bool = False,
    acknowledgements: list[dict[str, str]] | None = None,
    waiting: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The periodic study record of one device (``ecg-gateway/study/v1``).

    ``recording`` covers the whole recording so far; ``gaps`` lists the gap-ledger
    entries recorded since the previous study message (``since``..``now``).
    """
    span = None
    if facts.first_seq is not None and facts.end_seq is not None and facts.fs:
        span = facts.end_seq - facts.first_seq
    covered = None
    if span:
        covered = round(100.0 * facts.received / span, 3)
    return {
        "schema": STUDY_SCHEMA,
        "gateway_id": gateway_id,
        "device_id": device_id,
        "period": {"from": iso(since), "to": iso(now)},
        "final": final,
        "recording": {
            "fs": facts.fs,
            "first_seq": facts.first_seq,
            "end_seq": facts.end_seq,
            "start": iso(facts.start) if facts.start is not None else None,
            "end": iso(facts.end) if facts.end is not None else None,
            "duration_s": round(span / facts.fs, 3) if span and facts.fs else 0.0,
            "samples_received": facts.received,
            "samples_missing": facts.missing,
            "coverage_pct": covered,
            "analysable_s": round(facts.analysable_s, 1),
            "analysable_pct": facts.analysable_pct,
        },
        "gaps": json_safe(gaps),
        "acknowledgements": acknowledgements or [],
        "events": json_safe(waiting or {}),
    }


def parse_message(payload: bytes | str) -> dict[str, Any]:
    """Decode one of our messages; :class:`PayloadError` with the reason when it is not."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise PayloadError(f"expected a JSON object, got {type(body).__name__}")
    schema = body.get("schema")
    if schema not in (STRIP_SCHEMA, LIVE_SCHEMA, STATUS_SCHEMA, STUDY_SCHEMA):
        raise PayloadError(f"unknown schema {schema!r}")
    required = {
        STRIP_SCHEMA: ("kind", "device_id", "samples", "observation", "msg_id", "seq"),
        LIVE_SCHEMA: ("device_id", "fs", "leads", "data", "first_seq"),
        STATUS_SCHEMA: ("gateway_id", "state"),
        STUDY_SCHEMA: ("gateway_id", "device_id", "recording", "msg_id", "seq"),
    }[schema]
    missing = [k for k in required if k not in body]
    if missing:
        raise PayloadError(f"{schema} message lacks {', '.join(missing)}")
    return body
