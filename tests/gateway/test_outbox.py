"""Durable outbox: sequence numbers, order, acks and nacks, restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.outbox import Outbox


def _put(ob: Outbox, kind: str, dev: str = "d1"):
    return ob.put(kind, dev, f"t/{dev}/{kind}", {"kind": kind})


def test_seq_per_device_and_kind_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        assert [_put(ob, "strip").seq for _ in range(3)] == [1, 2, 3]
        assert _put(ob, "event").seq == 1
        assert _put(ob, "strip", "d2").seq == 1
        for m in ob.peek(100):
            ob.ack(m.row_id)
        assert ob.pending() == 0
    with Outbox(path) as ob:
        m = _put(ob, "strip")
        assert m.seq == 4
        body = json.loads(m.payload)
        assert body["seq"] == 4 and body["msg_id"] == m.msg_id
        assert ob.integrity_check() == "ok"


def test_events_first_then_fifo(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        s1 = _put(ob, "strip")
        st = _put(ob, "status")
        e1 = _put(ob, "event")
        s2 = _put(ob, "strip")
        order = [m.row_id for m in ob.peek(10)]
        assert order == [e1.row_id, s1.row_id, s2.row_id, st.row_id]
        assert next(m.row_id for m in ob.peek(10, exclude={e1.row_id})) == s1.row_id


def test_nack_keeps_the_message(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        m = _put(ob, "event")
        ob.nack(m.row_id, "Not authorized")
        assert ob.pending() == 1 and ob.last_error(m.row_id) == "Not authorized"
    with Outbox(path) as ob:
        (again,) = ob.peek(10)
        assert again.msg_id == m.msg_id and again.attempts == 1 and again.payload == m.payload


def test_week_offline_under_quota_keeps_every_event(tmp_path: Path) -> None:
    """7 days without a broker in fast time: a strip every 5 min, an event every 6 h."""
    alarms: list[str] = []
    quota = 1_000_000
    t0 = 1_790_000_000.0
    events = []
    with Outbox(tmp_path / "o.sqlite3", max_bytes=quota, on_alarm=alarms.append) as ob:
        for i in range(7 * 24 * 12):
            now = t0 + i * 300
            ob.put("strip", "p1", "t/p1/strip", {"n": i, "data": "1 " * 4000}, now=now)
            if i % 72 == 0:
                events.append(ob.put("event", "p1", "t/p1/event", {"n": i, "data": "2 " * 4000}))
            assert ob.stats["bytes"] <= quota
        kept = ob.peek(limit=10_000)
        assert {m.msg_id for m in events} <= {m.msg_id for m in kept}
        assert alarms and "events are kept" in alarms[0]
        dropped = ob.dropped()
        assert dropped and all(kind == "strip" for _, kind, _ in dropped)
        # the strips kept are the newest ones, their seq contiguous up to the last
        strips = sorted(m.seq for m in kept if m.kind == "strip")
        assert strips == list(range(strips[0], 7 * 24 * 12 + 1))
        assert [s for _, _, s in dropped] == list(range(1, strips[0]))
    with Outbox(tmp_path / "o.sqlite3", max_bytes=quota) as ob:  # totals survive a restart
        assert ob.stats["bytes"] <= quota and ob.pending() == len(kept)


def test_put_many_is_one_atomic_batch(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        msgs = ob.put_many([("strip", "d", "t", {"i": i}) for i in range(5)])
        assert [m.seq for m in msgs] == [1, 2, 3, 4, 5]
        bad = [("strip", "d", "t", {"i": 9}), ("strip", "d", "t", {"x": float("nan")})]
        with pytest.raises(ValueError):
            ob.put_many(bad)
        assert ob.pending() == 5 and ob.last_seq("d", "strip") == 5  # nothing of the batch


def test_retained_state_supersedes_what_still_waits(tmp_path: Path) -> None:
    """A status waiting in the outbox is replaced by the next one (latest wins)."""
    with Outbox(tmp_path / "o.sqlite3") as ob:
        strip = _put(ob, "strip")
        first = ob.put(
            "status", "gw", "t/gw/status", {"state": "online"}, retain=True, replace=True
        )
        last = ob.put(
            "status", "gw", "t/gw/status", {"state": "offline"}, retain=True, replace=True
        )
        waiting = ob.peek(10)
        assert [m.row_id for m in waiting] == [strip.row_id, last.row_id]
        assert waiting[1].retain and not waiting[0].retain
        assert (first.seq, last.seq) == (1, 2)
        assert not ob.waiting(first.row_id) and ob.waiting(last.row_id)
        assert ob.stats["superseded"] == 1
        assert ob.stats["bytes"] == len(strip.payload) + len(last.payload)


def test_outbox_of_the_previous_version_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        kept = _put(ob, "event")
    db = sqlite3.connect(path)  # as 0.1.0 wrote it: no retain column
    db.executescript(
        "CREATE TABLE m2 AS SELECT row_id, kind, device_id, topic, seq, msg_id, priority, "
        "payload, created, attempts, last_error FROM messages; DROP TABLE messages; "
        "ALTER TABLE m2 RENAME TO messages;"
    )
    db.close()
    with Outbox(path) as ob:
        assert [(m.msg_id, m.retain) for m in ob.peek(10)] == [(kept.msg_id, False)]
        assert _put(ob, "event").seq == 2
