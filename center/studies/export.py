"""A whole study exported: EDF+ (written incrementally) or WFDB (a zip of the gateway's records).

- **WFDB**: each record's current version, byte for byte as the gateway recorded it
  (``.hea`` + ``.dat``, format 16, -32768 = no sample), plus ``SHA256SUMS`` and
  ``VERSIONS`` (every version the center holds, with its SHA-256).
- **EDF+** (continuous, ``EDF+C``): one signal per lead from the first record's start to
  the last record's end, in µV-resolution digital values (physical range -32.768 ..
  32.767 mV). EDF has no "no sample" value: missing samples are the digital minimum
  (-32768, i.e. -32.768 mV) and every gap is an annotation ``no sample`` with its duration;
  patient-triggered events are annotations too. Written an hour of data records at a time
  (:mod:`center.studies.edf_stream`; edfio writes from whole arrays, 600 MB for 14 days).
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from center.store import schema as t
from center.studies.edf_stream import EdfAnnotationNote, EdfRecords, edf_header
from center.studies.header import NO_SAMPLE
from center.studies.read import current_records, get_study
from center.studies.store import record_signal

__all__ = ["export_edf", "export_wfdb"]


def export_wfdb(conn: sa.Connection, study_id: str, out: Path | io.BytesIO) -> None:
    """The study's records as a zip of WFDB files (see the module docstring)."""
    row, _ = get_study(conn, study_id)
    r, k = t.study_records.c, t.record_chunks.c
    sums, versions = [], []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for rec in current_records(conn, row.id):
            data = b"".join(
                conn.execute(sa.select(k.data).where(k.record == rec.id).order_by(k.idx)).scalars()
            )
            z.writestr(f"{rec.name}.hea", rec.header)
            z.writestr(f"{rec.name}.dat", data)
            for suffix, content in ((".hea", rec.header.encode()), (".dat", data)):
                sums.append(f"{hashlib.sha256(content).hexdigest()}  {rec.name}{suffix}")
        for v in conn.execute(
            sa.select(r.name, r.version, r.state, r.sha256).where(r.study == row.id)
            .order_by(r.name, r.version)
        ):  # fmt: skip
            versions.append(f"{v.name} version {v.version} {v.state} sha256 {v.sha256}")
        z.writestr("SHA256SUMS", "\n".join(sums) + "\n")
        z.writestr("VERSIONS", "\n".join(versions) + "\n")


BLOCK_RECORDS = 3600
"""EDF data records (seconds) assembled and written at a time: an hour, 1.8 MB per lead."""


def export_edf(
    conn: sa.Connection, study_id: str, out: Path, *, block_s: int = BLOCK_RECORDS
) -> None:
    """The study as EDF+ (see the module docstring), written an hour at a time: memory
    stays a few MB whatever the study's length (:mod:`center.studies.edf_stream`)."""
    row, study = get_study(conn, study_id)
    recs = current_records(conn, row.id)
    if not recs:
        raise ValueError(f"study {study_id} has no verified record")
    leads = recs[0].leads.split() or ["ECG"]
    t0, fs = recs[0].start_at, recs[0].fs
    spr = int(round(fs))
    end = max(r.start_at + r.samples / r.fs for r in recs)
    n_records = int(np.ceil(end - t0 - 1e-9))  # whole seconds: EDF records of 1 s
    placed = [(int(round((r.start_at - t0) * fs)), r) for r in recs]
    notes = _gap_notes(conn, placed, n_records * spr, fs) + _event_notes(conn, row, t0)
    edf = EdfRecords(n_records, spr, len(leads), t0 - math.floor(t0), notes)
    with Path(out).open("wb") as f:
        f.write(edf_header(edf, t0, [lead[:16] for lead in leads],
                           patient=study["patient"] or "X", equipment=row.device))  # fmt: skip
        carry: dict[int, np.ndarray] = {}  # records that reach into the next block
        for first in range(0, n_records, block_s):
            a = first * spr
            b = min(first + block_s, n_records) * spr
            block = np.full((b - a, len(leads)), NO_SAMPLE, np.int16)
            later: dict[int, np.ndarray] = {}
            for at, rec in placed:
                if at >= b or at + rec.samples <= a:
                    continue
                x = carry.get(rec.id)
                if x is None:
                    x = record_signal(conn, rec.id, rec.n_sig)[:, : len(leads)]
                lo, hi = max(a, at), min(b, at + len(x))
                if hi > lo:
                    block[lo - a : hi - a] = x[lo - at : hi - at]
                if at + len(x) > b:
                    later[rec.id] = x
            carry = later
            f.write(edf.records(first, block))


def _gap_notes(
    conn: sa.Connection, placed: list[tuple[int, sa.Row]], n: int, fs: float
) -> list[EdfAnnotationNote]:
    """A ``no sample`` annotation per run of missing samples in ``[0, n)``: between records
    (from their spans) and inside them (reading only records that have missing samples)."""
    missing: list[tuple[int, int]] = []
    covered = 0
    for at, rec in sorted(placed, key=lambda p: p[0]):
        if at > covered:
            missing.append((covered, min(at, n)))
        if rec.missing:
            x = record_signal(conn, rec.id, rec.n_sig)
            hole = (x == NO_SAMPLE).all(axis=1).view(np.int8)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], hole, [0]])))
            missing += [(at + int(p), at + int(q)) for p, q in zip(edges[::2], edges[1::2],
                                                                     strict=True)]  # fmt: skip
        covered = max(covered, at + rec.samples)
    if covered < n:
        missing.append((covered, n))
    merged: list[tuple[int, int]] = []
    for p, q in sorted(m for m in missing if m[1] > m[0]):
        if merged and p <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], q))
        else:
            merged.append((p, q))
    return [EdfAnnotationNote(p / fs, (q - p) / fs, "no sample") for p, q in merged]


def _event_notes(conn: sa.Connection, row: sa.Row, t0: float) -> list[EdfAnnotationNote]:
    e = t.events.c
    rows = conn.execute(
        sa.select(e.trigger_type, e.trigger_at)
        .where(e.gateway == row.gateway, e.device == row.device, e.kind == "event")
        .where(e.trigger_at >= t0, e.trigger_at <= row.last_end_at)
    ).all()  # fmt: skip
    return [EdfAnnotationNote(at - t0, None, f"event {trig}") for trig, at in rows]
