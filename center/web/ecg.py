"""What the strip viewer draws, from a stored strip or event (no interpretation added).

Samples come from the FHIR Observation (``center.fhir``), in µV with None for gaps; the
rest are the gateway's measured facts as sent: beats (sample numbers), the press (or, for
an event the gateway raised by itself, what it measured: :mod:`center.trigger_note`), the
pre/post window, gaps, heart rate, quality, ST levels, stage and blood pressure.
"""

from __future__ import annotations

from typing import Any

from center.fhir import FhirError, read_leads
from center.trigger_note import trigger_note

__all__ = ["ecg_view"]

_CLASSES = frozenset("NSVQ")


def _beat_labels(facts: dict[str, Any]) -> str:
    """The gateway's class of each beat of ``beats_seq`` (N, S, V, Q), or "" when they do
    not match the beats one for one (nothing drawn rather than letters on the wrong beat)."""
    labels, beats = facts.get("beat_labels"), facts.get("beats_seq")
    if not isinstance(labels, str) or not isinstance(beats, list) or len(labels) != len(beats):
        return ""
    return labels if set(labels) <= _CLASSES else ""


def ecg_view(body: dict[str, Any]) -> dict[str, Any]:
    """The drawing data of one strip/event payload."""
    samples = body.get("samples") or {}
    trigger = body.get("trigger") or {}
    facts = body.get("facts") or {}
    out: dict[str, Any] = {
        "kind": body.get("kind"),
        "device": body.get("device_id"),
        "first_seq": samples.get("first_seq", 0),
        "start": samples.get("start"),
        "end": samples.get("end"),
        "trigger": {
            **{k: trigger.get(k) for k in ("type", "seq", "time_utc", "pre_s", "post_s",
                                           "pre_available_s", "stage")},
            "note": trigger_note(trigger)[1],  # an auto trigger's measurement, in words
        },
        "gaps": body.get("gaps") or [],
        "facts": {
            "heart_rate_bpm": facts.get("heart_rate_bpm"),
            "beats_seq": facts.get("beats_seq") or [],
            "beat_labels": _beat_labels(facts),
            "quality": facts.get("quality"),
            "st": facts.get("st"),
            "stage": facts.get("stage") or trigger.get("stage"),
            "blood_pressure": facts.get("blood_pressure"),
            "lead_off": facts.get("lead_off"),
            "rhythm_episodes": facts.get("rhythm_episodes") or [],
            "beats_in_unusable_signal": facts.get("beats_in_unusable_signal") or [],
            "recorded_samples": facts.get("recorded_samples"),
        },
        "analysed_late": bool(body.get("analysed_late")),
        "truncated_at_shutdown": bool(trigger.get("truncated_at_shutdown")
                                      or body.get("truncated_at_shutdown")),
    }
    try:
        leads = read_leads(body.get("observation") or {})
    except FhirError as exc:
        out.update(fs=None, leads=[], data=[], error=str(exc))
        return out
    out["fs"] = 1000.0 / leads[0].period_ms
    out["leads"] = [lead.name for lead in leads]
    out["data"] = [lead.samples_uv for lead in leads]
    return out
