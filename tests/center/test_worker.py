"""The ingest worker without a broker: PUBACKs only after the commit, a poison message
isolated and kept as a reject while the rest of its batch is stored, a database outage
retried without acknowledging."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from center.config import IngestConfig
from center.ingest import IngestWorker
from center.mqtt_link import Incoming
from center.store import ingest_writer
from center.store import schema as t
from center.store.db import open_engine, upgrade
from tests.center.conftest import variant, wait_until


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = open_engine(f"sqlite:///{tmp_path}/w.db")
    upgrade(eng)
    yield eng
    eng.dispose()


def _msgs(n: int) -> list[tuple[Incoming, str]]:
    out = []
    for i in range(n):
        topic, payload, body = variant("patch-strip", gateway=f"gw-{i}")
        out.append((Incoming(1, i + 1, 1, topic, payload), body["msg_id"]))
    return out


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def test_ack_after_commit_and_poison_isolated(engine: sa.Engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    acked: list[int] = []
    stored_when_acked: list[int] = []

    def ack(generation: int, mid: int, qos: int) -> bool:
        stored_when_acked.append(_count(engine, t.events) + _count(engine, t.rejects))
        acked.append(mid)
        return True

    msgs = _msgs(10)
    poison = msgs[4][1]
    real = ingest_writer.write_batch

    def refusing(conn, items, now):  # type: ignore[no-untyped-def]
        if any(getattr(i, "msg_id", None) == poison for i in items):
            raise ValueError("the database refused a value")
        return real(conn, items, now)

    monkeypatch.setattr("center.ingest.write_batch", refusing)
    worker = IngestWorker(engine, ack, IngestConfig(batch_max=100, batch_wait_ms=200), "ecg/v1")
    for m, _ in msgs:
        worker.put(m)
    worker.start()
    wait_until(lambda: len(acked) == 10, "every message acknowledged")
    worker.stop()
    assert sorted(acked) == list(range(1, 11))
    assert all(n >= 1 for n in stored_when_acked)  # nothing acknowledged before a commit
    assert _count(engine, t.events) == 9
    with engine.connect() as conn:
        reason = conn.execute(sa.select(t.rejects.c.reason)).scalar()
    assert reason == "could not be stored (ValueError)"


def test_database_outage_is_retried_without_ack(engine: sa.Engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    acked: list[int] = []
    down = threading.Event()
    down.set()
    real = ingest_writer.write_batch

    def flaky(conn, items, now):  # type: ignore[no-untyped-def]
        if down.is_set():
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(conn, items, now)

    monkeypatch.setattr("center.ingest.write_batch", flaky)
    worker = IngestWorker(
        engine, lambda g, m, q: acked.append(m) or True, IngestConfig(batch_wait_ms=1), "ecg/v1"
    )
    for m, _ in _msgs(3):
        worker.put(m)
    worker.start()
    wait_until(lambda: worker.stats.db_errors >= 2, "retries")
    assert acked == []
    down.clear()
    wait_until(lambda: len(acked) == 3, "stored after the outage")
    worker.stop()
    assert _count(engine, t.events) == 3
