"""Studies, their records and their signal, read back (console, API, export, report).

The *current* content of a record is its newest verified version; older versions stay
stored and listed. Sample numbers are the device's (a record's ``first_seq`` onwards); a
study's samples are placed on one time line by each record's own start time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from center.store import schema as t
from center.studies.header import NO_SAMPLE
from center.studies.store import record_signal

__all__ = [
    "StudyAnalysis",
    "current_records",
    "current_versions",
    "get_study",
    "list_studies",
    "record_versions",
    "service_band",
    "study_analysis",
    "study_signal",
    "update_study",
]


class NotFound(LookupError):
    """No such study."""


def current_versions(study_pk: int | None = None) -> sa.Select:
    """Newest verified version of each record (of one study, or of all): the query."""
    r = t.study_records.c
    newest = (
        sa.select(r.gateway, r.device, r.name, sa.func.max(r.version).label("v"))
        .where(r.state == "verified")
        .group_by(r.gateway, r.device, r.name)
        .subquery()
    )
    q = sa.select(t.study_records).join(
        newest,
        (r.gateway == newest.c.gateway)
        & (r.device == newest.c.device)
        & (r.name == newest.c.name)
        & (r.version == newest.c.v),
    )
    if study_pk is not None:
        q = q.where(r.study == study_pk)
    return q.order_by(r.start_at, r.name)


def current_records(conn: sa.Connection, study_pk: int) -> list[sa.Row]:
    """The study's records (current versions), in time order."""
    return list(conn.execute(current_versions(study_pk)).all())


def _progress(conn: sa.Connection) -> dict[int, dict[str, float]]:
    """Per study: records, hours recorded, analysed and analysable seconds."""
    cur = current_versions().subquery()
    a = t.record_analysis.c
    rows = conn.execute(
        sa.select(
            cur.c.study,
            sa.func.count(),
            sa.func.sum((cur.c.samples - cur.c.missing) / cur.c.fs),
            sa.func.sum(a.recorded_s),
            sa.func.sum(a.analysable_s),
        )
        .select_from(cur.outerjoin(t.record_analysis, a.record == cur.c.id))
        .group_by(cur.c.study)
    ).all()
    return {
        int(s): {
            "records": n,
            "recorded_s": float(rec or 0),
            "analysed_s": float(an or 0),
            "analysable_s": float(ok or 0),
        }
        for s, n, rec, an, ok in rows
        if s is not None
    }


_BANDS = (
    (2.0, "48 hours or less (not more than 48 hours)"),
    (7.0, "more than 48 hours, up to 7 days"),
    (15.0, "more than 7 days, up to 15 days"),
)


def service_band(wear_s: float) -> str:
    """The recording-duration band of long-term patch monitoring, as a fact."""
    days = wear_s / 86400.0
    return next((label for top, label in _BANDS if days <= top), "more than 15 days")


def days_left_in_band(wear_s: float) -> float | None:
    """Days until the end of the duration band the wear time is in (None past 15 days)."""
    days = wear_s / 86400.0
    return next((round(top - days, 2) for top, _ in _BANDS if days <= top), None)


def _study_json(row: sa.Row, progress: dict[str, float] | None) -> dict[str, Any]:
    p = progress or {"records": 0, "recorded_s": 0.0, "analysed_s": 0.0, "analysable_s": 0.0}
    share = p["analysable_s"] / p["analysed_s"] if p["analysed_s"] else None
    wear_s = (row.ended_at or row.last_end_at) - row.started_at
    return {
        "study_id": row.study_id,
        "gateway": row.gateway,
        "device": row.device,
        "patient": row.patient,
        "started_at": row.started_at,
        "last_end_at": row.last_end_at,
        "ended_at": row.ended_at,
        "wear_s": wear_s,
        "duration_band": service_band(wear_s),
        "days_left_in_band": days_left_in_band(wear_s),
        "fs": row.fs,
        "leads": row.leads.split(),
        "records": int(p["records"]),
        "hours_recorded": round(p["recorded_s"] / 3600.0, 3),
        "hours_analysed": round(p["analysed_s"] / 3600.0, 3),
        "analysable_share": None if share is None else round(share, 4),
        "updated_by": row.updated_by,
        "updated_at": row.updated_at,
    }


def list_studies(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every study, newest first, with its progress."""
    progress = _progress(conn)
    rows = conn.execute(sa.select(t.patch_studies).order_by(t.patch_studies.c.started_at.desc()))
    return [_study_json(r, progress.get(r.id)) for r in rows]


def get_study(conn: sa.Connection, study_id: str) -> tuple[sa.Row, dict[str, Any]]:
    """(row, JSON) of one study; :class:`NotFound`."""
    row = conn.execute(
        sa.select(t.patch_studies).where(t.patch_studies.c.study_id == study_id)
    ).first()
    if row is None:
        raise NotFound(study_id)
    return row, _study_json(row, _progress(conn).get(row.id))


def record_versions(conn: sa.Connection, study_pk: int) -> list[dict[str, Any]]:
    """Every version of every record of the study (verified or not), in time order."""
    r = t.study_records.c
    rows = conn.execute(
        sa.select(t.study_records).where(r.study == study_pk).order_by(r.start_at, r.version)
    )
    return [
        {
            "name": x.name,
            "version": x.version,
            "state": x.state,
            "sha256": x.sha256,
            "start_at": x.start_at,
            "samples": x.samples,
            "missing": x.missing,
            "fs": x.fs,
            "received_at": x.received_at,
            "verified_at": x.verified_at,
        }
        for x in rows
    ]


def update_study(
    conn: sa.Connection, study_id: str, changes: dict[str, Any], user: str, now: float
) -> None:
    """A supervisor's edit: ``patient`` (a pseudonym), ``started_at``, ``ended_at``."""
    allowed = {k: v for k, v in changes.items() if k in ("patient", "started_at", "ended_at")}
    s = t.patch_studies.c
    done = conn.execute(
        t.patch_studies.update()
        .where(s.study_id == study_id)
        .values(**allowed, updated_by=user, updated_at=now)
    )
    if not done.rowcount:
        raise NotFound(study_id)


def study_signal(
    conn: sa.Connection, study_pk: int, t0: float, t1: float, lead: int = 0
) -> tuple[float, np.ndarray]:
    """(fs, µV float array with NaN = no sample) of one lead from ``t0`` to ``t1`` (UTC s)."""
    recs = [r for r in current_records(conn, study_pk) if r.start_at < t1]
    recs = [r for r in recs if r.start_at + r.samples / r.fs > t0]
    fs = recs[0].fs if recs else 250.0
    out = np.full(max(0, int(round((t1 - t0) * fs))), np.nan)
    for r in recs:
        x = record_signal(conn, r.id, r.n_sig)[:, lead].astype(np.float64)
        x[x == NO_SAMPLE] = np.nan
        at = int(round((r.start_at - t0) * fs))
        a, b = max(0, -at), min(len(x), len(out) - at)
        if b > a:
            out[at + a : at + b] = x[a:b]
    return fs, out


@dataclass(frozen=True, slots=True)
class StudyAnalysis:
    """The scanning analysis of a study, on one sample axis from the first record's start.

    ``beats``: R peaks (samples from ``t0``); ``labels``: N/S/V/Q per beat; ``quality``:
    per second from ``t0`` (0-100, 255 not recorded); ``recorded``: per second, whether it
    was recorded at all; ``analysed``: every current record has its analysis.
    """

    t0: float
    fs: float
    beats: np.ndarray
    labels: str
    quality: np.ndarray
    analysed: bool
    segments: list[tuple[int, int]]  # recorded stretches [a, b) in samples from t0


def study_analysis(conn: sa.Connection, study_pk: int) -> StudyAnalysis:
    """Every current record's analysis, joined on the study's time line."""
    recs = current_records(conn, study_pk)
    a = t.record_analysis.c
    fs = recs[0].fs if recs else 250.0
    t0 = recs[0].start_at if recs else 0.0
    beats, labels, segs = [], [], []
    total_s = int(np.ceil(max((r.start_at + r.samples / r.fs for r in recs), default=t0) - t0))
    quality = np.full(total_s + 1, 255, np.uint8)
    analysed = True
    for r in recs:
        row = conn.execute(sa.select(t.record_analysis).where(a.record == r.id)).first()
        off = int(round((r.start_at - t0) * fs))
        if row is None:
            analysed = False
            continue
        beats.append(np.frombuffer(row.beats, "<i4").astype(np.int64) + off)
        labels.append(row.labels.decode())
        q = np.frombuffer(row.quality, np.uint8)
        s0 = int(round(r.start_at - t0))
        quality[s0 : s0 + len(q)] = q[: max(0, len(quality) - s0)]
        segs += _segments(conn, r, off)
    seq = np.concatenate(beats) if beats else np.zeros(0, np.int64)
    return StudyAnalysis(t0, fs, seq, "".join(labels), quality, analysed, _merge(segs))


def _segments(conn: sa.Connection, r: sa.Row, off: int) -> list[tuple[int, int]]:
    """The record's recorded stretches on the study's axis; its signal is read only when
    it has missing samples (a whole record is one stretch)."""
    if not r.missing:
        return [(off, off + int(r.samples))]
    x = record_signal(conn, r.id, r.n_sig)
    ok = ~(x == NO_SAMPLE).all(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.view(np.int8), [0]])))
    return [(int(p) + off, int(q) + off) for p, q in zip(edges[::2], edges[1::2], strict=True)]


def _merge(segs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(segs):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
