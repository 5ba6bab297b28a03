"""The batch writer on SQLite and PostgreSQL: stored once by msg_id (duplicates counted),
rejects kept and counted, gateway status and device timeline, the audit is append-only."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from center.messages import decode
from center.store import queue as q
from center.store import schema as t
from center.store.db import writer
from center.store.ingest_writer import Rejected, write_batch
from tests.center.conftest import PREFIX, load, variant


def _rec(topic: str, payload: bytes):  # type: ignore[no-untyped-def]
    return decode(topic, payload, {}, PREFIX)


def test_duplicates_stored_once_and_counted(engine: sa.Engine) -> None:
    a = _rec(*variant("patch-event")[:2])
    b = _rec(*variant("patch-strip")[:2])
    with writer(engine) as conn:
        r1 = write_batch(conn, [a, b, a], 100.0)
    with writer(engine) as conn:
        r2 = write_batch(conn, [b, Rejected("ecg/v1/x/y/event", "not JSON", 3, b"abc")], 101.0)
    assert (r1.stored, r1.duplicates, r2.stored, r2.duplicates, r2.rejected) == (2, 1, 0, 1, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar() == 2
        counters = dict(conn.execute(sa.select(t.counters.c.name, t.counters.c.value)).all())
        reject = conn.execute(sa.select(t.rejects)).mappings().one()
    assert counters == {"stored": 2, "duplicates": 2, "rejected": 1}
    assert (reject["reason"], reject["head"]) == ("not JSON", b"abc")


def test_status_updates_gateway_and_timeline(engine: sa.Engine) -> None:
    online = load("status-online")
    offline = load("status-offline")
    topic = "ecg/v1/demo-gw/status"
    with writer(engine) as conn:
        write_batch(conn, [_rec(topic, json.dumps(online).encode())], 10.0)
        write_batch(conn, [_rec(topic, json.dumps(offline).encode())], 20.0)
        # an older retained status delivered late changes nothing
        write_batch(conn, [_rec(topic, json.dumps(online).encode())], 30.0)
    with engine.connect() as conn:
        gw = conn.execute(sa.select(t.gateways)).mappings().one()
        log = (
            conn.execute(sa.select(t.gateway_log.c.state).order_by(t.gateway_log.c.id))
            .scalars()
            .all()
        )
        devices = conn.execute(
            sa.select(t.device_log.c.device, t.device_log.c.link).order_by(t.device_log.c.id)
        ).all()
    assert (gw["state"], gw["last_seen_at"], gw["outbox_pending"]) == ("offline", 20.0, 0)
    assert log == ["online", "offline"]
    assert [d for d, _ in devices] == ["patch-1", "cart-1", "patch-1", "cart-1"]
    assert "connects=2" in devices[2][1]


def test_acknowledge_escalate_and_audit(engine: sa.Engine) -> None:
    ev = _rec(*variant("patch-event", gateway="gw-7")[:2])
    strip = _rec(*variant("patch-strip", gateway="gw-7")[:2])
    with writer(engine) as conn:
        write_batch(conn, [strip, ev], 1000.0)
    with writer(engine) as conn:
        assert q.escalate_due(conn, 1100.0, 120.0, ["button"]) == []
        assert q.escalate_due(conn, 1121.0, 120.0, ["button"]) == [ev.msg_id]
        assert q.escalate_due(conn, 1200.0, 120.0, ["button"]) == []  # once
    with engine.connect() as conn:
        rows, total = q.list_events(conn, q.EventFilter(state="open"))
    assert total == 2 and rows[0]["msg_id"] == ev.msg_id  # the press first
    with writer(engine) as conn:
        row = q.acknowledge(conn, ev.msg_id, "alice", "called the patient", 1130.0, prefix="ecg/v1")
    assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "alice")
    with writer(engine) as conn, pytest.raises(q.AlreadyAcknowledged):
        q.acknowledge(conn, ev.msg_id, "bob", "", 1140.0, prefix="ecg/v1")
    with engine.connect() as conn:
        trail = [a["action"] for a in q.audit_for(conn, ev.msg_id)]
        ack = conn.execute(sa.select(t.ack_outbox)).mappings().one()
        assert q.queue_summary(conn) == {"open": 1, "escalated": 0, "urgent": 0}
    assert trail == ["escalate", "acknowledge"]
    assert ack["topic"] == f"ecg/v1/gw-7/{ev.device}/ack"
    body = json.loads(ack["payload"])
    assert body == {
        "schema": "ecg-center/ack/v1",
        "msg_id": ev.msg_id,
        "kind": "event",
        "acknowledged_by": "alice",
        "acknowledged_at": "1970-01-01T00:18:50.000Z",
        "note_present": True,
    }
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), writer(engine) as conn:
        conn.execute(t.audit.delete())


def test_filters_pages_and_device_timeline(engine: sa.Engine) -> None:
    from center.store import fleet

    items = [
        _rec(*variant(name, gateway=gw)[:2])
        for gw in ("gw-a", "gw-b")
        for name in ("patch-event", "patch-strip", "cart-strip")
    ]
    with writer(engine) as conn:
        write_batch(conn, items[:3], 100.0)
        write_batch(conn, items[3:], 200.0)
        write_batch(
            conn,
            [
                _rec(
                    "ecg/v1/gw-a/status",
                    json.dumps(load("status-online") | {"gateway_id": "gw-a"}).encode(),
                )
            ],
            150.0,
        )
        q.acknowledge(conn, items[0].msg_id, "alice", "", 300.0, prefix="ecg/v1")
    with engine.connect() as conn:

        def ids(**kw: object) -> list[str]:
            return [r["msg_id"] for r in q.list_events(conn, q.EventFilter(**kw))[0]]

        assert ids(state="open", gateway="gw-b") == [
            items[3].msg_id,
            items[5].msg_id,
            items[4].msg_id,
        ]  # button, stage, periodic
        assert ids(state="acknowledged") == [items[0].msg_id]
        assert set(ids(state="all", trigger="button")) == {items[0].msg_id, items[3].msg_id}
        assert set(ids(state="all", since=150.0)) == {i.msg_id for i in items[3:]}
        assert ids(state="all", device="cart-1", until=150.0) == [items[2].msg_id]
        page2, total = q.list_events(conn, q.EventFilter(state="all"), limit=4, offset=4)
        assert total == 6 and len(page2) == 2
        timeline = fleet.device_timeline(conn, "gw-a", "patch-1", 0.0, 1000.0)
        gateways = fleet.list_gateways(conn, 160.0)
    assert [i["type"] for i in timeline][:2] == ["device", "gateway"]  # newest first
    assert sorted(i["type"] for i in timeline[2:]) == ["event", "strip"]
    assert gateways[0]["gateway"] == "gw-a" and gateways[0]["state"] == "online"
    assert {d["device"] for d in gateways[0]["devices"]} == {"patch-1", "cart-1"}
