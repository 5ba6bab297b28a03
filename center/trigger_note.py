"""What an automatically triggered event measured, in a few words for the queue.

A gateway raises an event by itself when its rhythm analysis sees an episode begin
(``trigger.type`` ``auto``; ``docs/mqtt.md``): ``trigger.reason`` says which (pause,
vt, svt, af_onset, af_rvr, brady, tachy) and ``trigger.details.episode`` carries the
numbers it measured at that moment. Monitoring staff sort the queue by what they read
in it, so each such event gets a short note built from those numbers — "pause 4.8 s",
"VT 182 bpm", "AF onset 96 bpm" — the gateway's automated measurement, to be read on
the tracing, never a diagnosis.

Pure and defensive: the payload comes from a device's gateway and is judged before it
is shown; a number outside what a heart can do is left out of the note, a reason that is
not a short lowercase word is not stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REASON_LABELS", "trigger_note"]

#: Queue wording of each reason; a reason not listed is shown as sent.
REASON_LABELS = {
    "pause": "pause",
    "vt": "VT",
    "svt": "SVT",
    "af_onset": "AF onset",
    "af_rvr": "AF rapid rate",
    "brady": "bradycardia",
    "tachy": "tachycardia",
}
_REASON = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_RATE_BPM = 400.0
_MAX_PAUSE_S = 3600.0
NOTE_LEN = 80  # the column's width


def _number(facts: Mapping[str, Any], key: str, hi: float) -> float | None:
    value = facts.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= hi else None


def _measure(reason: str, episode: Mapping[str, Any]) -> str:
    """The number that matters for ``reason``: the pause's length, the rate otherwise."""
    inner = episode.get("details")
    facts = {**(inner if isinstance(inner, Mapping) else {}), **episode}
    if reason == "pause":
        s = _number(facts, "duration_s", _MAX_PAUSE_S)
        return "" if s is None else f"{s:.1f} s"
    keys = {"brady": ("min_rate_bpm",), "af_onset": ("mean_rate_bpm", "rate_bpm")}
    for key in keys.get(reason, ("max_rate_bpm", "rate_bpm")):
        bpm = _number(facts, key, _MAX_RATE_BPM)
        if bpm is not None:
            return f"{bpm:.0f} bpm"
    return ""


def trigger_note(trigger: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(reason, note)`` of an auto trigger (``(None, None)`` for any other trigger,
    ``(None, None)`` too when the reason is missing or malformed)."""
    reason = trigger.get("reason")
    if trigger.get("type") != "auto" or not isinstance(reason, str):
        return None, None
    if not _REASON.fullmatch(reason):
        return None, None
    details = trigger.get("details")
    details = details if isinstance(details, Mapping) else {}
    episode = details.get("episode")
    episode = episode if isinstance(episode, Mapping) else {}
    parts = [REASON_LABELS.get(reason, reason), _measure(reason, episode)]
    note = " ".join(p for p in parts if p)
    inner = episode.get("details")
    lost = _number(inner, "signal_lost_s", _MAX_PAUSE_S) if isinstance(inner, Mapping) else None
    if reason == "pause" and lost:  # seconds of no signal at all: beats may be unseen
        note += f", no signal for {lost:.1f} s of it"
    elif episode.get("in_unusable_signal") is True:
        note += ", in unusable signal"
    if details.get("supersedes_episode") is not None:
        note += ", supersedes one of today's"
    return reason, note[:NOTE_LEN]
