"""A whole study exported: EDF+ (edfio) or WFDB (a zip of the gateway's records).

- **WFDB**: each record's current version, byte for byte as the gateway recorded it
  (``.hea`` + ``.dat``, format 16, -32768 = no sample), plus ``SHA256SUMS`` and
  ``VERSIONS`` (every version the center holds, with its SHA-256).
- **EDF+** (continuous, ``EDF+C``): one signal per lead from the first record's start to
  the last record's end, in µV-resolution digital values (physical range -32.768 ..
  32.767 mV). EDF has no "no sample" value: missing samples are the digital minimum
  (-32768, i.e. -32.768 mV) and every gap is an annotation ``no sample`` with its duration;
  patient-triggered events are annotations too.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from center.store import schema as t
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


def _study_digital(conn: sa.Connection, recs: list, n_sig: int) -> tuple[float, float, np.ndarray]:
    """(t0, fs, int16 samples (n, n_sig)) of the whole study, -32768 where missing."""
    t0, fs = recs[0].start_at, recs[0].fs
    end = max(r.start_at + r.samples / r.fs for r in recs)
    n = int(np.ceil(end - t0 - 1e-9)) * int(round(fs))  # whole seconds: EDF records of 1 s
    out = np.full((n, n_sig), NO_SAMPLE, np.int16)
    for rec in recs:
        x = record_signal(conn, rec.id, rec.n_sig)
        at = int(round((rec.start_at - t0) * fs))
        m = min(len(x), n - at)
        out[at : at + m] = x[:m, :n_sig]
    return t0, fs, out


def export_edf(conn: sa.Connection, study_id: str, out: Path) -> None:
    """The study as EDF+ (see the module docstring)."""
    import edfio

    row, study = get_study(conn, study_id)
    recs = current_records(conn, row.id)
    if not recs:
        raise ValueError(f"study {study_id} has no verified record")
    leads = recs[0].leads.split() or ["ECG"]
    t0, fs, x = _study_digital(conn, recs, len(leads))
    span = {"physical_range": (-32.768, 32.767), "digital_range": (-32768, 32767)}
    signals = [
        edfio.EdfSignal.from_digital(x[:, i].copy(), fs, label=lead[:16],
                                     physical_dimension="mV", **span)
        for i, lead in enumerate(leads)
    ]  # fmt: skip
    notes = _gap_annotations(x, fs) + _event_annotations(conn, row, t0)
    start = datetime.fromtimestamp(t0, UTC)
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(code=(study["patient"] or "X").replace(" ", "_")),
        recording=edfio.Recording(
            startdate=start.date(), equipment_code=row.device.replace(" ", "_")
        ),
        starttime=start.time().replace(tzinfo=None),
        data_record_duration=1.0,
        annotations=notes,
    )  # fmt: skip
    edf.write(out)


def _gap_annotations(x: np.ndarray, fs: float) -> list:
    import edfio

    missing = (x == NO_SAMPLE).all(axis=1).view(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], missing, [0]])))
    return [edfio.EdfAnnotation(a / fs, (b - a) / fs, "no sample")
            for a, b in zip(edges[::2], edges[1::2], strict=True)]  # fmt: skip


def _event_annotations(conn: sa.Connection, row: sa.Row, t0: float) -> list:
    import edfio

    e = t.events.c
    rows = conn.execute(
        sa.select(e.trigger_type, e.trigger_at)
        .where(e.gateway == row.gateway, e.device == row.device, e.kind == "event")
        .where(e.trigger_at >= t0, e.trigger_at <= row.last_end_at)
    ).all()  # fmt: skip
    return [edfio.EdfAnnotation(at - t0, None, f"event {trig}") for trig, at in rows]
