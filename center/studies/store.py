"""Record chunks into the database, inside the ingest's transaction.

- A chunk is stored once (``record_chunks`` primary key: record version and index): a
  chunk sent again after an outage or a resend is a duplicate, not a second copy.
- When every chunk of a version is in, the version is verified whole: the SHA-256 of the
  header bytes followed by the signal bytes must be the one the gateway sent, and the size
  its size. A verified version is attached to its study (created from the first record of a
  patch) and **confirmed** to the gateway: the ``record-ack`` message goes into the center's
  durable ``ack_outbox`` in the same transaction (the :class:`~center.acks.AckSender`
  publishes it). A version that fails verification loses its chunks (the gateway sends it
  again when no confirmation comes).
- A chunk of a version already verified (the gateway did not hear the confirmation) has
  the confirmation sent again when it is the version's last chunk, if it carries the
  verified SHA-256: a confirmation is only ever of content verified here. A version number
  still receiving that arrives with another SHA-256 starts over with that content.
- A version that never completes because the gateway moved on to a newer one (the record
  changed while it was being sent) is **given up** by :func:`abandon_superseded` once the
  newer version began arriving long enough ago: its chunks are deleted and its state is
  ``abandoned`` (kept, counted, listed). The newest version of a record is never given
  up, however old: the gateway resumes it at the chunk it stopped at, even after days.

Why the signal bytes live in the database (not a file store): a chunk is durable in the same
commit as the rest of the batch, before the broker's PUBACK, with no second place to keep
consistent; several center processes share it; one backup covers everything. A 250 Hz
one-lead patch is 1.8 MB an hour, about 0.9 GB for 21 days.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from center.store import schema as t
from center.studies.chunks import RecordChunk
from center.studies.header import NO_SAMPLE, parse_header, samples_of

__all__ = [
    "NEW_STUDY_AFTER_S",
    "RECORD_ACK_SCHEMA",
    "ChunkResult",
    "abandon_superseded",
    "store_chunks",
]

log = logging.getLogger(__name__)

RECORD_ACK_SCHEMA = "ecg-center/record-ack/v1"
NEW_STUDY_AFTER_S = 48 * 3600.0
"""A record starting this long after a study's newest record ends begins a new study."""


class ChunkResult:
    """What a batch of chunks did (counts)."""

    def __init__(self) -> None:
        self.stored = 0
        self.duplicates = 0
        self.verified = 0
        self.failed = 0
        self.confirmations = 0
        self.conflicts = 0  # chunks of a version number held with other content


def _insert(conn: sa.Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def store_chunks(conn: sa.Connection, chunks: Iterable[RecordChunk], now: float) -> ChunkResult:
    """Store ``chunks``, verify and confirm completed versions (caller's transaction)."""
    res = ChunkResult()
    touched: dict[int, RecordChunk] = {}
    for c in chunks:
        rec = _record_row(conn, c, now)
        if rec.state == "abandoned":  # a late chunk of a version given up: not kept
            res.duplicates += 1
            continue
        if rec.sha256 != c.sha256 and rec.state == "verified":
            # other content under a version number verified with this one: never confirm
            # what was not verified (the gateway keeps resending; its log says why)
            res.conflicts += 1
            if c.index == c.chunks - 1:
                log.error("record %s/%s/%s version %d arrived with another SHA-256 than the "
                          "one verified; not confirmed", c.gateway, c.device, c.name,
                          c.version)  # fmt: skip
            continue
        if rec.sha256 != c.sha256:
            # this version number begun again with other content: what is held of the
            # first content can never complete
            conn.execute(t.record_chunks.delete().where(t.record_chunks.c.record == rec.id))
            conn.execute(t.study_records.update().where(t.study_records.c.id == rec.id)
                         .values(sha256=c.sha256, size=c.size, header=c.header,
                                 chunks=c.chunks, state="receiving"))  # fmt: skip
            rec = _record_row(conn, c, now)
        if rec.state == "verified":
            res.duplicates += 1
            if c.index == c.chunks - 1:
                _confirm(conn, c, now)
                res.confirmations += 1
            continue
        if rec.state == "failed":
            conn.execute(t.study_records.update().where(t.study_records.c.id == rec.id)
                         .values(state="receiving"))  # fmt: skip
        stmt = _insert(conn, t.record_chunks).on_conflict_do_nothing()
        done = conn.execute(stmt, {"record": rec.id, "idx": c.index, "data": c.data})
        if done.rowcount:
            res.stored += 1
        else:
            res.duplicates += 1
        touched[rec.id] = c
    for rec_id, c in touched.items():
        _complete(conn, rec_id, c, now, res)
    return res


def _record_row(conn: sa.Connection, c: RecordChunk, now: float) -> sa.Row:
    r = t.study_records.c
    key = (
        (r.gateway == c.gateway)
        & (r.device == c.device)
        & (r.name == c.name)
        & (r.version == c.version)
    )
    row = conn.execute(sa.select(r.id, r.state, r.sha256).where(key)).first()
    if row is None:
        values = {"gateway": c.gateway, "device": c.device, "name": c.name,
                  "version": c.version, "sha256": c.sha256, "size": c.size,
                  "header": c.header, "chunks": c.chunks, "state": "receiving",
                  "received_at": now}  # fmt: skip
        conn.execute(_insert(conn, t.study_records).on_conflict_do_nothing(), values)
        row = conn.execute(sa.select(r.id, r.state, r.sha256).where(key)).one()
    return row


def _complete(
    conn: sa.Connection, rec_id: int, c: RecordChunk, now: float, res: ChunkResult
) -> None:
    """Verify a version whose chunks are all in; attach and confirm it (or drop it)."""
    k = t.record_chunks.c
    have = conn.execute(sa.select(sa.func.count()).where(k.record == rec_id)).scalar_one()
    row = conn.execute(sa.select(t.study_records).where(t.study_records.c.id == rec_id)).one()
    if have < row.chunks:
        return
    data = b"".join(conn.execute(sa.select(k.data).where(k.record == rec_id)
                                 .order_by(k.idx)).scalars())  # fmt: skip
    digest = hashlib.sha256(row.header.encode() + data).hexdigest()
    try:
        facts = parse_header(row.name, row.header)
    except (ValueError, IndexError):
        facts = None
    if digest != row.sha256 or len(data) != row.size or facts is None:
        conn.execute(t.record_chunks.delete().where(k.record == rec_id))
        conn.execute(t.study_records.update().where(t.study_records.c.id == rec_id)
                     .values(state="failed"))  # fmt: skip
        log.error("record %s/%s/%s version %d failed verification; waiting for it again",
                  row.gateway, row.device, row.name, row.version)  # fmt: skip
        res.failed += 1
        return
    x = samples_of(data, facts.n_sig)
    missing = int((x == NO_SAMPLE).all(axis=1).sum()) + max(0, facts.samples - len(x))
    values = {
        "state": "verified",
        "verified_at": now,
        "fs": facts.fs,
        "n_sig": facts.n_sig,
        "leads": " ".join(facts.leads)[:255],
        "first_seq": facts.first_seq,
        "start_at": facts.start_utc,
        "samples": facts.samples,
        "missing": missing,
    }
    values["study"] = _study_for(conn, row, facts.start_utc, facts.samples / facts.fs,
                                 facts.fs, " ".join(facts.leads)[:255], now)  # fmt: skip
    conn.execute(t.study_records.update().where(t.study_records.c.id == rec_id).values(**values))
    _confirm(conn, c, now)
    res.verified += 1
    res.confirmations += 1


def _study_for(
    conn: sa.Connection, row: sa.Row, start: float, duration_s: float, fs: float, leads: str,
    now: float,
) -> int:  # fmt: skip
    """The study this record belongs to: the patch's open study it continues, or a new one."""
    s = t.patch_studies.c
    end = start + duration_s
    found = conn.execute(
        sa.select(s.id, s.started_at, s.last_end_at, s.ended_at)
        .where(s.gateway == row.gateway, s.device == row.device)
        .order_by(s.started_at.desc()).limit(1)
    ).first()  # fmt: skip
    if (
        found is not None
        and (found.ended_at is None or start < found.ended_at)
        and (start < found.last_end_at + NEW_STUDY_AFTER_S)
    ):
        changes = {"last_end_at": max(found.last_end_at, end)}
        if start < found.started_at:
            changes["started_at"] = start
        conn.execute(t.patch_studies.update().where(s.id == found.id).values(**changes))
        return int(found.id)
    when = datetime.fromtimestamp(start, UTC)
    study_id = f"{row.device}-{when:%Y%m%d-%H%M}"[:64]
    conn.execute(_insert(conn, t.patch_studies).on_conflict_do_nothing(), {
        "study_id": study_id, "gateway": row.gateway, "device": row.device,
        "started_at": start, "last_end_at": end, "fs": fs, "leads": leads, "created_at": now,
    })  # fmt: skip
    log.info("new study %s (gateway %s, patch %s)", study_id, row.gateway, row.device)
    return int(conn.execute(sa.select(s.id).where(s.study_id == study_id)).scalar_one())


def _confirm(conn: sa.Connection, c: RecordChunk, now: float) -> None:
    """The record-ack into the durable ack outbox (published by the AckSender)."""
    body = {
        "schema": RECORD_ACK_SCHEMA,
        "msg_id": str(uuid.uuid4()),
        "record": c.name,
        "version": c.version,
        "sha256": c.sha256,
        "confirmed_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
    }
    conn.execute(t.ack_outbox.insert().values(
        msg_id=body["msg_id"], topic=f"{c.prefix}/{c.gateway}/{c.device}/record-ack",
        payload=json.dumps(body, separators=(",", ":")), created_at=now,
    ))  # fmt: skip


def record_signal(conn: sa.Connection, rec_id: int, n_sig: int) -> np.ndarray:
    """A stored version's samples (n, n_sig) int16 µV (-32768: no sample)."""
    k = t.record_chunks.c
    data = b"".join(conn.execute(sa.select(k.data).where(k.record == rec_id)
                                 .order_by(k.idx)).scalars())  # fmt: skip
    return samples_of(data, n_sig)


def abandon_superseded(
    conn: sa.Connection, now: float, after_s: float
) -> list[tuple[str, str, str, int, int]]:
    """Give up incomplete versions that a newer version of the same record superseded more
    than ``after_s`` ago (its first chunk's arrival): delete their chunks, mark them
    ``abandoned``. Returns (gateway, device, name, version, chunks held) of each."""
    r, k = t.study_records.c, t.record_chunks.c
    newer = t.study_records.alias("newer")
    superseded = sa.exists().where(
        newer.c.gateway == r.gateway,
        newer.c.device == r.device,
        newer.c.name == r.name,
        newer.c.version > r.version,
        newer.c.received_at <= now - after_s,
    )
    held = sa.select(sa.func.count()).where(k.record == r.id).scalar_subquery()
    rows = conn.execute(
        sa.select(r.id, r.gateway, r.device, r.name, r.version, held)
        .where(r.state == "receiving", superseded)
    ).all()  # fmt: skip
    for row in rows:
        conn.execute(t.record_chunks.delete().where(k.record == row.id))
        conn.execute(t.study_records.update().where(r.id == row.id).values(state="abandoned"))
    return [(x.gateway, x.device, x.name, x.version, int(x[5])) for x in rows]
