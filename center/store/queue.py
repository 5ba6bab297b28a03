"""The event queue: listing, detail, acknowledgement, escalation and the audit trail.

Every strip and event is a queue item with a lifecycle: ``open`` → ``acknowledged`` (by a
person, with an optional note); an urgent item (by trigger type) left open longer than the
escalation delay gets ``escalated_at`` set once. Each view, acknowledgement and escalation
is an audit row; the audit table is append-only (a database trigger refuses UPDATE/DELETE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from center.store import schema as t
from center.timefmt import iso

__all__ = [
    "AlreadyAcknowledged",
    "EventFilter",
    "NotFound",
    "acknowledge",
    "add_audit",
    "audit_for",
    "escalate_due",
    "get_event",
    "list_events",
    "queue_summary",
    "row_to_api",
]

ACK_SCHEMA = "ecg-center/ack/v1"

_LIST_COLUMNS = [c for c in t.events.c if c.name not in ("payload", "ack_note")]


class NotFound(LookupError):
    """No such msg_id."""


class AlreadyAcknowledged(Exception):
    """The item was acknowledged before (by ``row['acknowledged_by']``)."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(f"already acknowledged by {row['acknowledged_by']}")
        self.row = row


@dataclass(frozen=True)
class EventFilter:
    """Search filters; None means any. Times are POSIX seconds on ``received_at``."""

    state: str = "open"  # open | acknowledged | all
    gateway: str | None = None
    device: str | None = None
    trigger: str | None = None
    kind: str | None = None
    since: float | None = None
    until: float | None = None
    escalated: bool | None = None


def _where(f: EventFilter) -> list[sa.ColumnElement[bool]]:
    c = t.events.c
    conds: list[sa.ColumnElement[bool]] = []
    if f.state in ("open", "acknowledged"):
        conds.append(c.state == f.state)
    for col, value in ((c.gateway, f.gateway), (c.device, f.device),
                       (c.trigger_type, f.trigger), (c.kind, f.kind)):
        if value:
            conds.append(col == value)
    if f.since is not None:
        conds.append(c.received_at >= f.since)
    if f.until is not None:
        conds.append(c.received_at < f.until)
    if f.escalated is not None:
        conds.append(c.escalated_at.is_not(None) if f.escalated else c.escalated_at.is_(None))
    return conds


def list_events(
    conn: sa.Connection, f: EventFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of items and the total matching. Open items: most urgent, then oldest first;
    otherwise newest first."""
    c = t.events.c
    conds = _where(f)
    order = ([c.priority, c.received_at, c.id] if f.state == "open"
             else [c.received_at.desc(), c.id.desc()])
    rows = conn.execute(
        sa.select(*_LIST_COLUMNS).where(*conds).order_by(*order).limit(limit).offset(offset)
    ).mappings().all()
    total = conn.execute(sa.select(sa.func.count()).select_from(t.events).where(*conds)).scalar()
    return [dict(r) for r in rows], int(total or 0)


def get_event(conn: sa.Connection, msg_id: str) -> dict[str, Any]:
    """The full row (with ``payload`` and ``ack_note``); NotFound."""
    row = conn.execute(sa.select(t.events).where(t.events.c.msg_id == msg_id)).mappings().first()
    if row is None:
        raise NotFound(msg_id)
    return dict(row)


def row_to_api(row: dict[str, Any], now: float) -> dict[str, Any]:
    """A queue row as the JSON API shows it (ISO-8601 UTC times)."""
    return {
        "msg_id": row["msg_id"],
        "kind": row["kind"],
        "gateway": row["gateway"],
        "device": row["device"],
        "seq": row["seq"],
        "trigger": row["trigger_type"],
        "trigger_at": iso(row["trigger_at"]),
        "trigger_reason": row["trigger_reason"],
        "trigger_note": row["trigger_note"],
        "start_at": iso(row["start_at"]),
        "end_at": iso(row["end_at"]),
        "received_at": iso(row["received_at"]),
        "age_s": round(max(0.0, now - row["received_at"]), 1),
        "state": row["state"],
        "priority": row["priority"],
        "escalated": row["escalated_at"] is not None,
        "escalated_at": iso(row["escalated_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "acknowledged_at": iso(row["acknowledged_at"]),
        "heart_rate_bpm": row["heart_rate_bpm"],
        "quality_min": row["quality_min"],
        "gap_count": row["gap_count"],
        "gap_samples": row["gap_samples"],
        "fs": row["fs"],
        "n_samples": row["n_samples"],
        "leads": row["leads"].split() if row["leads"] else [],
    }


def add_audit(
    conn: sa.Connection,
    now: float,
    action: str,
    *,
    actor: str | None = None,
    msg_id: str | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row (``actor`` None: the center itself)."""
    conn.execute(t.audit.insert().values(
        at=now, actor=actor, action=action, msg_id=msg_id, ip=ip,
        detail=json.dumps(detail, separators=(",", ":")) if detail else None,
    ))


def acknowledge(
    conn: sa.Connection, msg_id: str, user: str, note: str, now: float, *, prefix: str,
    ip: str | None = None,
) -> dict[str, Any]:
    """Acknowledge an open item: row update, audit row and the ack message in the outbox,
    in the caller's transaction. NotFound; AlreadyAcknowledged (also when another request
    won the race)."""
    row = get_event(conn, msg_id)
    if row["state"] != "open":
        raise AlreadyAcknowledged(row)
    done = conn.execute(
        t.events.update()
        .where(t.events.c.msg_id == msg_id, t.events.c.state == "open")
        .values(state="acknowledged", acknowledged_by=user, acknowledged_at=now,
                ack_note=note or None)
    ).rowcount
    if done != 1:
        raise AlreadyAcknowledged(get_event(conn, msg_id))
    add_audit(conn, now, "acknowledge", actor=user, msg_id=msg_id, ip=ip,
              detail={"note_present": bool(note), "escalated": row["escalated_at"] is not None})
    body = {
        "schema": ACK_SCHEMA,
        "msg_id": msg_id,
        "kind": row["kind"],
        "acknowledged_by": user,
        "acknowledged_at": iso(now),
        "note_present": bool(note),
    }
    conn.execute(t.ack_outbox.insert().values(
        msg_id=msg_id,
        topic=f"{prefix}/{row['gateway']}/{row['device']}/ack",
        payload=json.dumps(body, separators=(",", ":")),
        created_at=now,
    ))
    return get_event(conn, msg_id)


def escalate_due(
    conn: sa.Connection, now: float, after_s: float, triggers: list[str]
) -> list[str]:
    """Mark open urgent items older than ``after_s`` as escalated (once); their msg_ids."""
    if not triggers:
        return []
    c = t.events.c
    ids = conn.execute(
        t.events.update()
        .where(c.state == "open", c.escalated_at.is_(None),
               c.trigger_type.in_(triggers), c.received_at <= now - after_s)
        .values(escalated_at=now)
        .returning(c.msg_id)
    ).scalars().all()
    for msg_id in ids:
        add_audit(conn, now, "escalate", msg_id=msg_id, detail={"after_s": after_s})
    return list(ids)


def queue_summary(conn: sa.Connection) -> dict[str, int]:
    """Counts of open items, escalated ones, and urgent ones (button/auto); each an
    index-only count (ix_events_queue, ix_events_escalation)."""
    c = t.events.c

    def count(*conds: sa.ColumnElement[bool]) -> int:
        query = sa.select(sa.func.count()).select_from(t.events).where(c.state == "open", *conds)
        return int(conn.execute(query).scalar() or 0)

    return {"open": count(), "escalated": count(c.escalated_at.is_not(None)),
            "urgent": count(c.priority <= 1)}


def audit_for(conn: sa.Connection, msg_id: str) -> list[dict[str, Any]]:
    """The audit trail of one item, oldest first."""
    rows = conn.execute(
        sa.select(t.audit).where(t.audit.c.msg_id == msg_id).order_by(t.audit.c.id)
    ).mappings().all()
    return [
        {"at": iso(r["at"]), "actor": r["actor"], "action": r["action"], "ip": r["ip"],
         "detail": json.loads(r["detail"]) if r["detail"] else None}
        for r in rows
    ]
