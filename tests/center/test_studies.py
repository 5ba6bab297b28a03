"""Full-disclosure records at the center (SQLite and PostgreSQL): chunks stored once in any
order, a version verified whole and confirmed to the gateway, versions kept, studies made
from the first record of a patch, the scanning analysis of a record."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from center.messages import Reject, decode
from center.store import schema as t
from center.store.db import writer
from center.store.ingest_writer import write_batch
from center.studies.read import current_records, get_study, list_studies, record_versions
from center.studies.scan import StudyScanner
from sim.synth import EcgSynth

FS = 250.0
T0 = 1_790_000_000.0


def header(name: str, n: int, start: float, leads=("ECG",)) -> str:
    d = datetime.fromtimestamp(start, UTC)
    lines = [f"{name} {len(leads)} {FS:g} {n} {d:%H:%M:%S}.{d.microsecond // 1000:03d} "
             f"{d:%d/%m/%Y}"]  # fmt: skip
    lines += [f"{name}.dat 16 1000(0)/mV 16 0 0 0 0 {lead}" for lead in leads]
    return "\n".join(lines) + "\n"


def record(first: int, n: int, hole: tuple[int, int] | None = None, seed: int = 1):
    """(name, header text, .dat bytes) of a one-lead gateway record."""
    x = np.rint(EcgSynth(FS, ("ECG",), seed=seed).generate(n)[:, 0] * 1000).astype("<i2")
    if hole:
        x[hole[0] : hole[1]] = -32768
    name = f"p1_{first:012d}"
    return name, header(name, n, T0 + first / FS), x.tobytes()


def chunk_messages(name, hea, dat, version=1, size=4000, gateway="gw-1", sha=None):
    """The gateway's chunk messages of one record version: (topic, payload) each."""
    sha = sha or hashlib.sha256(hea.encode() + dat).hexdigest()
    n = max(1, -(-len(dat) // size))
    out = []
    for i in range(n):
        data = dat[i * size : (i + 1) * size]
        body = {"schema": "ecg-gateway/record/v1", "gateway_id": gateway, "device_id": "p1",
                "record": name, "version": version, "sha256": sha, "size": len(dat),
                "header": hea, "chunk": i, "chunks": n, "offset": i * size,
                "chunk_sha256": hashlib.sha256(data).hexdigest(),
                "data": base64.b64encode(data).decode()}  # fmt: skip
        out.append((f"ecg/v1/{gateway}/p1/record", json.dumps(body).encode()))
    return out


def ingest(engine, messages, now=T0 + 7200):
    items = [decode(topic, payload, {}, "ecg/v1") for topic, payload in messages]
    with writer(engine) as conn:
        return write_batch(conn, items, now)


def acks(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.ack_outbox.c.topic, t.ack_outbox.c.payload)).all()
    return [{"topic": tp, **json.loads(p)} for tp, p in rows]


def test_chunks_in_any_order_twice_are_verified_once_and_confirmed(engine) -> None:
    name, hea, dat = record(0, 15000, hole=(1000, 1250))
    msgs = chunk_messages(name, hea, dat)
    shuffled = msgs + msgs[:3]
    random.Random(1).shuffle(shuffled)
    half = len(shuffled) // 2
    first = ingest(engine, shuffled[:half])
    assert first.verified == 0 and not acks(engine)  # not whole yet: nothing confirmed
    res = ingest(engine, shuffled[half:])
    assert res.verified == 1 and res.confirmations == 1
    (ack,) = acks(engine)
    assert ack["topic"] == "ecg/v1/gw-1/p1/record-ack" and ack["record"] == name
    assert ack["sha256"] == hashlib.sha256(hea.encode() + dat).hexdigest() and ack["version"] == 1
    with engine.connect() as conn:
        (study,) = list_studies(conn)
        row, _ = get_study(conn, study["study_id"])
        (rec,) = current_records(conn, row.id)
        data = b"".join(conn.execute(sa.select(t.record_chunks.c.data)
                                     .order_by(t.record_chunks.c.idx)).scalars())  # fmt: skip
    assert data == dat and rec.missing == 250 and rec.samples == 15000
    assert study["device"] == "p1" and study["started_at"] == pytest.approx(T0)
    assert study["hours_recorded"] == round(14750 / FS / 3600, 3)
    ingest(engine, msgs[-1:])  # the gateway did not hear: the last chunk again
    assert len(acks(engine)) == 2


def test_a_tampered_chunk_is_rejected_and_a_wrong_record_checksum_fails(engine) -> None:
    name, hea, dat = record(0, 5000)
    (topic, payload), *_ = chunk_messages(name, hea, dat)
    body = json.loads(payload)
    body["data"] = base64.b64encode(b"\x00" * 10).decode()
    with pytest.raises(Reject, match="checksum"):
        decode(topic, json.dumps(body).encode(), {}, "ecg/v1")
    res = ingest(engine, chunk_messages(name, hea, dat, sha="0" * 64))
    assert res.verified == 0 and not acks(engine)
    with engine.connect() as conn:
        state = conn.execute(sa.select(t.study_records.c.state)).scalar_one()
        left = conn.execute(sa.select(sa.func.count()).select_from(t.record_chunks)).scalar()
    assert state == "failed" and left == 0
    # version 1 again with another SHA-256 starts over with that content: verified now,
    # and the confirmation names the SHA-256 that was verified
    assert ingest(engine, chunk_messages(name, hea, dat)).verified == 1
    (ack,) = acks(engine)
    assert (ack["version"], ack["sha256"]) == (1, hashlib.sha256(hea.encode() + dat).hexdigest())


def test_versions_are_kept_records_join_their_study_a_later_patch_starts_another(engine):
    name, hea, dat = record(0, 9000, hole=(3000, 4000))
    ingest(engine, chunk_messages(name, hea, dat))
    _, hea2, dat2 = record(0, 9000)  # backfilled: version 2
    ingest(engine, chunk_messages(name, hea2, dat2, version=2))
    n2, h2, d2 = record(9000, 9000)
    ingest(engine, chunk_messages(n2, h2, d2))
    late = 3 * 86400 * int(FS)  # three days later
    n3, h3, d3 = record(late, 9000)
    ingest(engine, chunk_messages(n3, h3, d3))
    with engine.connect() as conn:
        studies = list_studies(conn)
        first = next(s for s in studies if s["started_at"] == pytest.approx(T0))
        row, _ = get_study(conn, first["study_id"])
        versions = record_versions(conn, row.id)
        current = current_records(conn, row.id)
    assert len(studies) == 2
    assert [(v["name"], v["version"]) for v in versions] == [(name, 1), (name, 2), (n2, 1)]
    assert [(r.name, r.version, r.missing) for r in current] == [(name, 2, 0), (n2, 1, 0)]
    assert first["records"] == 2 and first["wear_s"] == pytest.approx(18000 / FS)


def test_the_scanner_finds_the_beats_and_marks_what_was_not_recorded(engine) -> None:
    name, hea, dat = record(0, int(120 * FS), hole=(int(60 * FS), int(70 * FS)))
    ingest(engine, chunk_messages(name, hea, dat, size=60000))
    scanner = StudyScanner(engine)
    assert scanner.scan_one(now=T0) and not scanner.scan_one(now=T0)
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.record_analysis)).one()
    beats = np.frombuffer(row.beats, "<i4")
    quality = np.frombuffer(row.quality, np.uint8)
    truth = EcgSynth(FS, ("ECG",), seed=1)
    truth.generate(int(120 * FS))
    expected = truth.beats_seq
    expected = expected[(expected < 60 * FS - 50) | (expected > 70 * FS + 400)]
    found = sum(np.min(np.abs(beats - s)) <= 0.05 * FS for s in expected)
    assert found >= len(expected) - 4 and len(beats) <= len(expected) + 2
    assert set(row.labels.decode()) <= set("NSVQ")
    assert (quality[60:70] == 255).all() and (quality[5:55] >= 50).all()
    assert row.recorded_s == pytest.approx(110.0) and 100 <= row.analysable_s <= 110
