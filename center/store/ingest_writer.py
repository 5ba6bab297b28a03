"""One batch of decoded messages into the database, in one transaction.

Strips, events and studies are inserted with ``ON CONFLICT (msg_id) DO NOTHING RETURNING``:
what comes back was new, the rest were duplicates (at-least-once delivery; a message
redelivered after a crash, or to the other process of a shared subscription). Statuses
update the gateway row when not older than what it holds, log online/offline transitions
and log a device's facts when its link or gap counters changed. Rejects are kept (their
first bytes) and counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from center.messages import Record, Status, Study
from center.store import schema as t
from center.studies.chunks import RecordChunk
from center.studies.store import store_chunks

__all__ = ["BatchResult", "Rejected", "bump_counters", "write_batch"]

_LINK_KEYS = ("connects", "connect_failures", "opens", "open_failures", "silences",
              "watchdog_trips", "samples_lost", "frames_lost")
"""Driver counters whose change is a link event worth a timeline row."""


_MAX_INT32 = 2**31 - 1
_MAX_BIGINT = 2**63 - 1


def _count(value: object, limit: int) -> int | None:
    """A non-negative integer that fits its column, else None (status facts are free-form)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
    return value if ok else None  # type: ignore[return-value]


def _real(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be stored as what it claims to be."""

    topic: str
    reason: str
    size: int
    head: bytes


@dataclass
class BatchResult:
    """What one batch did (counts of messages)."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    new_records: int = 0
    confirmations: int = 0  # record-acks queued (full disclosure)
    verified: int = 0  # record versions verified whole


_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in (Record, Study)}


def _row(item: Record | Study) -> dict:
    """The item's columns (a flat copy; ``dataclasses.asdict`` deep-copies, 5 % of ingest)."""
    return {name: getattr(item, name) for name in _FIELDS[type(item)]}


def _insert(conn: sa.Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _insert_new(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> int:
    """Insert rows whose msg_id is new; the number inserted."""
    if not rows:
        return 0
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=["msg_id"])
    result = conn.execute(stmt.returning(table.c.msg_id), rows)
    return len(result.all())


def write_batch(
    conn: sa.Connection,
    items: Sequence[Record | Study | Status | Rejected | RecordChunk],
    now: float,
) -> BatchResult:
    """Store one batch on ``conn`` (inside the caller's transaction); the counts."""
    res = BatchResult()
    chunks = [i for i in items if isinstance(i, RecordChunk)]
    records: dict[str, dict] = {}
    studies: dict[str, dict] = {}
    statuses: list[Status] = []
    rejects: list[dict] = []
    for item in items:
        if isinstance(item, Record):
            if item.msg_id in records:
                res.duplicates += 1
            records[item.msg_id] = {**_row(item), "received_at": now, "state": "open"}
        elif isinstance(item, Study):
            if item.msg_id in studies:
                res.duplicates += 1
            studies[item.msg_id] = {**_row(item), "received_at": now}
        elif isinstance(item, Status):
            statuses.append(item)
        elif isinstance(item, RecordChunk):
            continue
        else:
            rejects.append({"at": now, "topic": item.topic[:255], "reason": item.reason[:255],
                            "size": item.size, "head": item.head})
    res.new_records = _insert_new(conn, t.events, list(records.values()))
    new_studies = _insert_new(conn, t.studies, list(studies.values()))
    res.duplicates += len(records) - res.new_records + len(studies) - new_studies
    res.stored = res.new_records + new_studies
    if chunks:
        done = store_chunks(conn, chunks, now)
        res.stored += done.stored
        res.duplicates += done.duplicates
        res.confirmations, res.verified = done.confirmations, done.verified
    if rejects:
        conn.execute(t.rejects.insert(), rejects)
    res.rejected = len(rejects)
    for status in statuses:
        _apply_status(conn, status, now)
    res.statuses = len(statuses)
    bump_counters(conn, {"stored": res.stored, "duplicates": res.duplicates,
                         "rejected": res.rejected, "statuses": res.statuses})
    return res


def bump_counters(conn: sa.Connection, deltas: dict[str, int]) -> None:
    """Add to the named counters (created at 0 when new)."""
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return
    stmt = _insert(conn, t.counters)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"value": t.counters.c.value + stmt.excluded.value}
    )
    conn.execute(stmt, [{"name": k, "value": v} for k, v in sorted(deltas.items())])


def _apply_status(conn: sa.Connection, st: Status, now: float) -> None:
    row = conn.execute(
        sa.select(t.gateways.c.state, t.gateways.c.status_at, t.gateways.c.devices)
        .where(t.gateways.c.gateway_id == st.gateway)
    ).first()
    if row is not None and row.status_at is not None and st.status_at is not None \
            and st.status_at < row.status_at:
        return  # an older status (e.g. a retained one delivered after a newer one)
    values = {
        "state": st.state,
        "status_at": st.status_at,
        "last_seen_at": now,
        "version": st.version,
    }
    if st.devices or st.state == "online":  # a Last Will carries only the state
        values["devices"] = json.dumps(st.devices, separators=(",", ":"))
        values["transmission"] = (
            json.dumps(st.transmission, separators=(",", ":")) if st.transmission else None
        )
        values["outbox_pending"] = st.outbox_pending
        if st.health is not None:  # host facts (issue #14)
            values["health"] = json.dumps(st.health, separators=(",", ":"))
    if row is None:
        conn.execute(t.gateways.insert().values(gateway_id=st.gateway, **values))
    else:
        conn.execute(t.gateways.update().where(t.gateways.c.gateway_id == st.gateway)
                     .values(**values))
    if row is None or row.state != st.state:
        conn.execute(t.gateway_log.insert().values(
            gateway=st.gateway, state=st.state, at=now, status_at=st.status_at))
    before = json.loads(row.devices) if row is not None and row.devices else {}
    _log_devices(conn, st, before, now)


def _link_summary(facts: dict) -> str | None:
    driver = facts.get("driver") if isinstance(facts.get("driver"), dict) else {}
    parts = [f"{k}={driver[k]}" for k in _LINK_KEYS if isinstance(driver.get(k), int)]
    return " ".join(parts)[:64] or None


def _changed(old: dict, new: dict) -> bool:
    if not old:
        return True
    keys: Iterable[str] = ("gaps", "gap_samples", "battery_pct")
    if any(old.get(k) != new.get(k) for k in keys):
        return True
    return _link_summary(old) != _link_summary(new)


def _log_devices(conn: sa.Connection, st: Status, before: dict, now: float) -> None:
    rows = []
    for device, facts in st.devices.items():
        if not _changed(before.get(device) or {}, facts):
            continue
        driver = facts.get("driver") if isinstance(facts.get("driver"), dict) else {}
        battery = facts.get("battery_pct", driver.get("battery_pct"))
        hr = facts.get("heart_rate_bpm")
        rows.append({
            "gateway": st.gateway,
            "device": str(device)[:64],
            "at": now,
            "link": _link_summary(facts),
            "battery_pct": _real(battery),
            "samples": _count(facts.get("samples"), _MAX_BIGINT),
            "gaps": _count(facts.get("gaps"), _MAX_INT32),
            "gap_samples": _count(facts.get("gap_samples"), _MAX_BIGINT),
            "heart_rate_bpm": _real(hr),
            "facts": json.dumps(facts, separators=(",", ":")),
        })
    if rows:
        conn.execute(t.device_log.insert(), rows)
