"""The durable outbox: every strip, event and status message is committed here first.

A message is published only after it is committed to SQLite (WAL journal) and
deleted only after the broker acknowledged it with a success reason code. A
power cut at any moment loses nothing that :meth:`Outbox.put` returned.

Each message gets a UUID (``msg_id``) and a sequence number ``seq`` that counts
1, 2, 3... per device and message kind, across restarts (the counter lives in
its own table, so deleting delivered rows never resets it). Consumers
de-duplicate by ``msg_id`` and see a gap when ``seq`` jumps.

Delivery order: events first, then strips, then everything else (status, study), and
last the full-disclosure ``record`` chunks (issue #13, bulk: dropped first by the quota,
sent again by the uploader when not confirmed); first in, first out within a priority.

Retained state messages (the gateway status) are stored with ``replace=True``:
a newer one supersedes an older one still waiting for the same topic (latest wins,
like the retained message itself), so a long outage queues one status, not
thousands; their ``seq`` therefore may jump.

Threads: the gateway uses its outbox from the event loop only (the MQTT client runs
there too), so there is no lock; one connection, one thread at a time.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PRIORITIES", "Outbox", "OutboxMessage"]

log = logging.getLogger(__name__)

#: Delivery priority by message kind (lower goes first).
PRIORITIES: Mapping[str, int] = {"event": 0, "strip": 1, "record": 3}
_DEFAULT_PRIORITY = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    row_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    msg_id     TEXT    NOT NULL UNIQUE,
    priority   INTEGER NOT NULL,
    payload    BLOB    NOT NULL,
    created    REAL    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    retain     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (priority, row_id);
CREATE TABLE IF NOT EXISTS dropped (
    device_id  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    msg_id     TEXT    NOT NULL,
    created    REAL    NOT NULL,
    dropped_at REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    device_id TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (device_id, kind)
);
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored message.

    ``payload`` is the exact JSON (UTF-8) that is published; it carries
    ``msg_id`` and ``seq`` too.
    """

    row_id: int
    kind: str
    device_id: str
    topic: str
    seq: int
    msg_id: str
    payload: bytes
    created: float
    attempts: int = 0
    priority: int = _DEFAULT_PRIORITY
    retain: bool = False


class Outbox:
    """SQLite-backed store of messages waiting for the broker's acknowledgement.

    Parameters
    ----------
    path
        Database file (created with its directory if missing).
    max_bytes
        Disk quota for waiting payloads, bytes (None: no limit). Over it, the oldest
        status/other messages go first, then the oldest strips; events are never
        dropped. Every drop is recorded in the ``dropped`` table (device, kind, seq)
        so it can be reported, and raises an alarm.
    on_alarm
        Called with a readable message when messages are dropped or when events
        alone exceed the quota.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int | None = None,
        on_alarm: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
        if "retain" not in columns:  # an outbox written by 0.1.0
            self._db.execute("ALTER TABLE messages ADD COLUMN retain INTEGER NOT NULL DEFAULT 0")
        self.max_bytes = max_bytes
        self._on_alarm = on_alarm
        self.dropped_by_kind: dict[str, int] = {}
        self.alarms = 0
        self._bytes = int(
            self._db.execute("SELECT COALESCE(SUM(length(payload)), 0) FROM messages").fetchone()[0]
        )
        self.put_count = 0
        self.superseded = 0
        self.acked = 0
        self.nacked = 0

    # --- writing -----------------------------------------------------------------
    def put(
        self,
        kind: str,
        device_id: str,
        topic: str,
        body: dict[str, Any],
        *,
        priority: int | None = None,
        now: float | None = None,
        retain: bool = False,
        replace: bool = False,
    ) -> OutboxMessage:
        """Assign ``msg_id`` and ``seq``, store durably (one commit), return the stored message.

        ``body`` gets ``msg_id`` and ``seq`` set; it must be JSON-serializable.
        ``retain``: publish as an MQTT retained message. ``replace``: delete waiting
        messages of the same kind, device and topic in the same transaction (latest wins;
        for state, never for records).
        """
        return self.put_many(
            [(kind, device_id, topic, body)],
            priority=priority,
            now=now,
            retain=retain,
            replace=replace,
        )[0]

    def put_many(
        self,
        items: Iterable[tuple[str, str, str, dict[str, Any]]],
        *,
        priority: int | None = None,
        now: float | None = None,
        retain: bool = False,
        replace: bool = False,
    ) -> list[OutboxMessage]:
        """Store several ``(kind, device_id, topic, body)`` messages in one transaction.

        One commit (one fsync) for the batch: use it for bulk strips and telemetry;
        all or none of the batch is stored. The stored payload is ``body`` with
        ``msg_id`` and ``seq`` added (the caller's dict is not changed).
        """
        created = time.time() if now is None else now
        out: list[OutboxMessage] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for kind, device_id, topic, body in items:
                prio = PRIORITIES.get(kind, _DEFAULT_PRIORITY) if priority is None else priority
                if replace:
                    self._bytes -= self._delete_waiting(kind, device_id, topic)
                out.append(self._insert(kind, device_id, topic, body, prio, created, retain))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.put_count += len(out)
        self._bytes += sum(len(m.payload) for m in out)
        if self.max_bytes is not None and self._bytes > self.max_bytes:
            self._enforce_quota(created)
        return out

    def _insert(
        self,
        kind: str,
        device_id: str,
        topic: str,
        body: dict[str, Any],
        prio: int,
        created: float,
        retain: bool,
    ) -> OutboxMessage:
        """One message with the next ``seq`` of its device and kind (transaction held)."""
        row = self._db.execute(
            "SELECT last_seq FROM counters WHERE device_id = ? AND kind = ?", (device_id, kind)
        ).fetchone()
        seq = (row[0] if row else 0) + 1
        self._db.execute(
            "INSERT INTO counters (device_id, kind, last_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id, kind) DO UPDATE SET last_seq = excluded.last_seq",
            (device_id, kind, seq),
        )
        msg_id = str(uuid.uuid4())
        stored = {**body, "msg_id": msg_id, "seq": seq}
        payload = json.dumps(stored, separators=(",", ":"), allow_nan=False).encode()
        cur = self._db.execute(
            "INSERT INTO messages (kind, device_id, topic, seq, msg_id, priority, "
            "payload, created, retain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, device_id, topic, seq, msg_id, prio, payload, created, retain),
        )
        row_id = int(cur.lastrowid or 0)
        return OutboxMessage(
            row_id, kind, device_id, topic, seq, msg_id, payload, created, 0, prio, retain
        )

    def _delete_waiting(self, kind: str, device_id: str, topic: str) -> int:
        """Delete waiting rows of (kind, device, topic); bytes freed (lock and txn held)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(length(payload)), 0), COUNT(*) FROM messages "
            "WHERE kind = ? AND device_id = ? AND topic = ?",
            (kind, device_id, topic),
        ).fetchone()
        if row[1]:
            self._db.execute(
                "DELETE FROM messages WHERE kind = ? AND device_id = ? AND topic = ?",
                (kind, device_id, topic),
            )
            self.superseded += int(row[1])
        return int(row[0])

    # --- delivery ------------------------------------------------------------------
    def peek(self, limit: int = 100, exclude: Iterable[int] = ()) -> list[OutboxMessage]:
        """Up to ``limit`` messages in delivery order, skipping rows in ``exclude``."""
        skip = set(exclude)
        out: list[OutboxMessage] = []
        cur = self._db.execute(
            "SELECT row_id, kind, device_id, topic, seq, msg_id, payload, created, "
            "attempts, priority, retain FROM messages ORDER BY priority, row_id"
        )
        for r in cur:
            if r[0] in skip:
                continue
            out.append(OutboxMessage(*r[:6], bytes(r[6]), *r[7:10], bool(r[10])))
            if len(out) >= limit:
                break
        return out

    def ack(self, row_id: int) -> None:
        """The broker accepted the message: delete it."""
        row = self._db.execute(
            "SELECT length(payload) FROM messages WHERE row_id = ?", (row_id,)
        ).fetchone()
        # A lost delete only means the message is sent again after a crash (consumers
        # de-duplicate by msg_id), so acks skip the fsync that puts must pay.
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("DELETE FROM messages WHERE row_id = ?", (row_id,))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        if row is not None:
            self._bytes -= int(row[0])
        self.acked += 1

    def _enforce_quota(self, now: float) -> None:
        """Drop the oldest non-event messages until under quota (lock held)."""
        assert self.max_bytes is not None
        victims = self._db.execute(
            "SELECT row_id, kind, device_id, seq, msg_id, created, length(payload) "
            "FROM messages WHERE kind != 'event' ORDER BY priority DESC, row_id"
        ).fetchall()
        gone: list[tuple] = []
        for row_id, kind, device, seq, msg_id, created, size in victims:
            if self._bytes <= self.max_bytes:
                break
            gone.append((row_id, kind, device, seq, msg_id, created))
            self._bytes -= int(size)
        if gone:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM messages WHERE row_id = ?", [(g[0],) for g in gone])
            self._db.executemany(
                "INSERT INTO dropped (device_id, kind, seq, msg_id, created, dropped_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(g[2], g[1], g[3], g[4], g[5], now) for g in gone],
            )
            self._db.execute("COMMIT")
            for g in gone:
                self.dropped_by_kind[g[1]] = self.dropped_by_kind.get(g[1], 0) + 1
            self._alarm(
                f"outbox over its {self.max_bytes} byte quota: dropped {len(gone)} oldest "
                f"non-event message(s) ({', '.join(sorted({g[1] for g in gone}))}); "
                "events are kept"
            )
        if self._bytes > self.max_bytes:
            self._alarm(
                f"events alone exceed the outbox quota ({self._bytes} > {self.max_bytes} "
                "bytes); all kept — free disk or raise the quota"
            )

    def _alarm(self, text: str) -> None:
        self.alarms += 1
        log.error("%s", text)
        if self._on_alarm is not None:
            self._on_alarm(text)

    def dropped(self) -> list[tuple[str, str, int]]:
        """(device, kind, seq) of every message dropped by the quota, oldest first."""
        rows = self._db.execute(
            "SELECT device_id, kind, seq FROM dropped ORDER BY rowid"
        ).fetchall()
        return [(d, k, int(q)) for d, k, q in rows]

    def nack(self, row_id: int, reason: str) -> None:
        """The broker refused the message: keep it, count the attempt, remember why."""
        self._db.execute(
            "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE row_id = ?",
            (reason, row_id),
        )
        self.nacked += 1

    # --- inspection ------------------------------------------------------------------
    def pending(self) -> int:
        """Messages not yet acknowledged."""
        return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def pending_by_kind(self) -> dict[str, int]:
        rows = self._db.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind")
        return {k: int(n) for k, n in rows}

    def waiting(self, row_id: int) -> bool:
        """Whether the row is still waiting (not yet acknowledged, superseded or dropped)."""
        row = self._db.execute("SELECT 1 FROM messages WHERE row_id = ?", (row_id,))
        return row.fetchone() is not None

    def last_seq(self, device_id: str, kind: str) -> int:
        """The last ``seq`` given to (device, kind), 0 if none."""
        row = self._db.execute(
            "SELECT last_seq FROM counters WHERE device_id = ? AND kind = ?",
            (device_id, kind),
        ).fetchone()
        return int(row[0]) if row else 0

    def last_error(self, row_id: int) -> str | None:
        row = self._db.execute(
            "SELECT last_error FROM messages WHERE row_id = ?", (row_id,)
        ).fetchone()
        return row[0] if row else None

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    @property
    def stats(self) -> dict[str, int]:
        return {
            "put": self.put_count,
            "bytes": self._bytes,
            "alarms": self.alarms,
            **{f"dropped_{k}": v for k, v in self.dropped_by_kind.items()},
            "superseded": self.superseded,
            "acked": self.acked,
            "nacked": self.nacked,
            "pending": self.pending(),
        }

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
