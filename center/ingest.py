"""The ingest worker: batches of received messages → one transaction → the PUBACKs.

paho's thread puts each message on a queue and returns at once. This worker's thread takes
up to ``batch_max`` messages (waiting at most ``batch_wait_ms`` for the batch to fill),
decodes them, stores them in one transaction, and only after the commit acknowledges each
to the broker. A crash before the commit loses nothing: the broker still holds the
unacknowledged messages for our persistent session and sends them again (stored once,
by ``msg_id``). Bad payloads are stored as rejects and acknowledged, so they never block
the session. A database error keeps the batch and retries it with a capped backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from center.config import IngestConfig
from center.messages import Record, Reject, Status, Study, decode
from center.mqtt_link import Incoming
from center.store.db import writer
from center.store.ingest_writer import BatchResult, Rejected, write_batch
from center.studies.chunks import RecordChunk

__all__ = ["IngestStats", "IngestWorker"]

log = logging.getLogger(__name__)

_DB_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
"""Errors that mean the database cannot be reached or is busy: retry the same batch."""

_REJECT_LOG_EVERY_S = 10.0
"""At most one warning about rejected payloads per this many seconds (with a count)."""


@dataclass
class IngestStats:
    """Counters since this process started (the database keeps the totals)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    batches: int = 0
    db_errors: int = 0
    last_batch_ms: float = 0.0
    last_error: str | None = None


class IngestWorker:
    """Owns the queue and the writer thread (see the module docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        ack: Callable[[int, int, int], bool],
        cfg: IngestConfig,
        prefix: str,
        on_batch: Callable[[BatchResult], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self._ack = ack
        self.cfg = cfg
        self.prefix = prefix
        self._on_batch = on_batch
        self._clock = clock
        self.stats = IngestStats()
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="center-ingest", daemon=True)
        self._rejects_unlogged = 0
        self._reject_logged_at = 0.0

    def put(self, msg: Incoming) -> None:
        """Called from paho's thread for every message; never blocks."""
        self._queue.put(msg)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand (stored and acknowledged), then stop the thread."""
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def backlog(self) -> int:
        """Messages received and not yet stored."""
        return self._queue.qsize()

    def _take_batch(self) -> list[Incoming]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.batch_wait_ms / 1000.0
        while len(batch) < self.cfg.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        backoff = 0.1
        batch: list[Incoming] = []
        while not (self._stop.is_set() and not batch):
            if not batch:
                batch = self._take_batch()
                if not batch:
                    continue
            try:
                try:
                    self._store(batch)
                except _DB_UNAVAILABLE:
                    raise
                except Exception:  # a message the database refused: find it, keep the rest
                    log.exception("a batch of %d could not be stored; storing one by one",
                                  len(batch))
                    self._store_singly(batch)
            except _DB_UNAVAILABLE as exc:
                self.stats.db_errors += 1
                self.stats.last_error = f"database: {type(exc).__name__}"
                log.error("storing a batch of %d failed (%s); retrying in %.1f s",
                          len(batch), type(exc).__name__, backoff)
                if self._stop.wait(backoff):
                    return  # not acknowledged: the broker sends them again
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.1
            batch = []

    def _store_singly(self, batch: list[Incoming]) -> None:
        """Each message alone; one the database still refuses is kept as a reject (its
        first bytes) and acknowledged, so it cannot stall the session."""
        for msg in batch:
            try:
                self._store([msg])
            except _DB_UNAVAILABLE:
                raise
            except Exception as exc:
                refused = Rejected(msg.topic, f"could not be stored ({type(exc).__name__})",
                                   len(msg.payload), msg.payload[: self.cfg.reject_keep_bytes])
                self._store([msg], items=[refused])

    def decode(self, msg: Incoming) -> Record | Study | Status | Rejected | RecordChunk:
        """One message to what :func:`write_batch` stores."""
        if len(msg.payload) > self.cfg.max_payload_kb * 1024:
            reason = "payload too large"
        else:
            try:
                return decode(msg.topic, msg.payload, msg.user_props, self.prefix)
            except Reject as exc:
                reason = str(exc)
            except Exception as exc:  # a decoder bug must not stop the ingest
                log.exception("decoding a message on %s failed", msg.topic)
                reason = f"decoder error ({type(exc).__name__})"
        return Rejected(msg.topic, reason, len(msg.payload),
                        msg.payload[: self.cfg.reject_keep_bytes])

    def _store(self, batch: list[Incoming], items: list | None = None) -> None:
        t0 = time.perf_counter()
        if items is None:
            items = [self.decode(m) for m in batch]
        with writer(self.engine) as conn:
            res = write_batch(conn, items, self._clock())
        for m in batch:
            self._ack(m.generation, m.mid, m.qos)
        st = self.stats
        st.received += len(batch)
        st.stored += res.stored
        st.duplicates += res.duplicates
        st.rejected += res.rejected
        st.statuses += res.statuses
        st.batches += 1
        st.last_batch_ms = (time.perf_counter() - t0) * 1000.0
        if res.rejected:
            self._log_rejects([i for i in items if isinstance(i, Rejected)])
        if self._on_batch is not None:
            self._on_batch(res)

    def _log_rejects(self, rejected: list[Rejected]) -> None:
        """Rate-limited warning; topics carry pseudonymous ids only, never payload text."""
        self._rejects_unlogged += len(rejected)
        now = time.monotonic()
        if now - self._reject_logged_at >= _REJECT_LOG_EVERY_S:
            log.warning("rejected %d message(s), e.g. on %s: %s (kept in the rejects table)",
                        self._rejects_unlogged, rejected[0].topic, rejected[0].reason)
            self._rejects_unlogged = 0
            self._reject_logged_at = now
