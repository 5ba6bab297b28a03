"""Everything a study report shows, gathered from the database (no drawing here).

:func:`gather` reads the study, its scanning analysis (:func:`compute_stats`), the
patient-triggered and automatic events the gateway sent during it, the transmissions, and
the strips to print (longest AF, longest pause, each patient-triggered event) from the
full-disclosure records. :mod:`center.report.pdf` draws it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from center.report.stats import StudyStats, compute_stats
from center.store import schema as t
from center.studies.read import get_study, service_band, study_analysis, study_signal

__all__ = ["RHYTHM_KINDS", "ReportData", "Strip", "TriggeredEvent", "gather", "service_band"]

RHYTHM_KINDS = ("af", "vt", "svt", "bigeminy", "trigeminy", "brady", "tachy")
STRIP_S = 10.0
MAX_EVENT_STRIPS = 12


@dataclass(frozen=True, slots=True)
class Strip:
    """A strip to print: title, start (UTC s), fs, µV samples (NaN = no sample)."""

    title: str
    start_utc: float
    fs: float
    samples: np.ndarray
    mark_s: float | None = None  # seconds into the strip to mark (a press)


@dataclass(frozen=True, slots=True)
class TriggeredEvent:
    """An event the gateway sent during the study, with the rhythm and rate then."""

    time_utc: float
    trigger: str  # button | auto
    reason: str | None
    rhythm: str  # episode kinds open at that moment, or "no episode found"
    rate_bpm: float | None


@dataclass
class ReportData:
    """The study (JSON of :func:`center.studies.read.get_study`), its numbers and strips."""

    study: dict[str, Any]
    stats: StudyStats
    t0: float
    analysed: bool
    events: list[TriggeredEvent]
    transmissions: dict[str, int]
    strips: list[Strip] = field(default_factory=list)


def _rate_at(beats: np.ndarray, at: int, fs: float) -> float | None:
    i = int(np.searchsorted(beats, at))
    near = beats[max(0, i - 4) : i + 4]
    rr = np.diff(near) / fs
    rr = rr[rr < 3.0]
    return 60.0 / float(rr.mean()) if rr.size else None


def _events(conn: sa.Connection, row: sa.Row, stats: StudyStats, beats, t0: float) -> list:
    e = t.events.c
    end = row.ended_at or row.last_end_at
    rows = conn.execute(
        sa.select(e.trigger_type, e.trigger_at, e.payload)
        .where(e.gateway == row.gateway, e.device == row.device, e.kind == "event")
        .where(e.trigger_at >= row.started_at, e.trigger_at <= end)
        .where(e.trigger_type.in_(("button", "auto")))
        .order_by(e.trigger_at)
    ).all()
    out = []
    for trig, at, payload in rows:
        s = int(round((at - t0) * stats.fs))
        kinds = [k for k in RHYTHM_KINDS if any(x.start <= s <= x.end for x in stats.of_kind(k))]
        reason = (json.loads(payload).get("trigger") or {}).get("reason")
        out.append(TriggeredEvent(at, trig, reason, ", ".join(kinds) or "no episode found",
                                  _rate_at(beats, s, stats.fs)))  # fmt: skip
    return out


def _transmissions(conn: sa.Connection, row: sa.Row) -> dict[str, int]:
    e, r = t.events.c, t.study_records.c
    end = row.ended_at or row.last_end_at
    counts = dict(
        conn.execute(
            sa.select(e.kind, sa.func.count())
            .where(e.gateway == row.gateway, e.device == row.device)
            .where(e.start_at >= row.started_at, e.start_at <= end)
            .group_by(e.kind)
        ).all()
    )
    versions = conn.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(r.name))).where(r.study == row.id)
    ).one()
    return {"events": int(counts.get("event", 0)), "strips": int(counts.get("strip", 0)),
            "record_versions": int(versions[0]), "records": int(versions[1])}  # fmt: skip


def gather(conn: sa.Connection, study_id: str, *, pause_s: float = 3.0) -> ReportData:
    """The report's content for one study (raises ``NotFound``)."""
    row, study = get_study(conn, study_id)
    an = study_analysis(conn, row.id)
    stats = compute_stats(an.beats, an.labels, an.quality, an.segments, an.fs, pause_s=pause_s)
    stats.extra["quality"] = an.quality
    data = ReportData(study, stats, an.t0, an.analysed, _events(conn, row, stats, an.beats, an.t0),
                      _transmissions(conn, row))  # fmt: skip
    data.strips = _strips(conn, row.id, data)
    return data


def _strips(conn: sa.Connection, pk: int, data: ReportData) -> list[Strip]:
    st, out = data.stats, []
    af = st.longest("af")
    if af is not None:
        t = data.t0 + af.start / st.fs - 2.0
        out.append(_strip(conn, pk, t, f"Longest AF episode: onset ({af.duration_s(st.fs):.0f} s)"))
    pause = st.longest("pause")
    if pause is not None:
        mid = data.t0 + (pause.start + pause.end) / 2 / st.fs
        title = f"Longest pause: {pause.duration_s(st.fs):.1f} s"
        out.append(_strip(conn, pk, mid - STRIP_S / 2, title))
    presses = [e for e in data.events if e.trigger == "button"][:MAX_EVENT_STRIPS]
    for ev in presses:
        title = f"Patient-triggered event: {ev.rhythm}"
        out.append(_strip(conn, pk, ev.time_utc - STRIP_S / 2, title, STRIP_S / 2))
    return out


def _strip(conn: sa.Connection, pk: int, t0: float, title: str, mark: float | None = None):
    fs, x = study_signal(conn, pk, t0, t0 + STRIP_S)
    return Strip(title, t0, fs, x, mark)
