"""Acknowledgements back to the gateways, durably: the center's own outbox.

Acknowledging an item writes the ack message into ``ack_outbox`` in the same transaction
(``center.store.queue.acknowledge``). This sender publishes waiting rows with QoS 1 on
``{prefix}/{gateway}/{device}/ack`` and marks a row sent only when the broker's PUBACK
has a success reason code; a refused, lost or unanswered publish is retried. Delivery is
at least once (a gateway de-duplicates by ``msg_id``); with several center processes any
of them may send a waiting row.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from center.mqtt_link import MqttLink
from center.store import schema as t
from center.store.db import writer

__all__ = ["AckSender", "AckStats"]

log = logging.getLogger(__name__)

RETRY_AFTER_S = 10.0
"""A publish without PUBACK (or refused) is tried again after this long, s."""


@dataclass
class AckStats:
    """Counters since start."""

    published: int = 0
    confirmed: int = 0
    refused: int = 0


class AckSender:
    """A thread that drains ``ack_outbox`` through the MQTT link."""

    def __init__(self, engine: sa.Engine, link: MqttLink, poll_s: float = 1.0) -> None:
        self.engine = engine
        self.link = link
        self.poll_s = poll_s
        self.stats = AckStats()
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (row id, sent at)
        self._retry_at: dict[int, float] = {}  # row id -> monotonic time
        self._early: dict[int, tuple[bool, str]] = {}  # mid -> PUBACK seen before publish()
        self._results: list[tuple[int, bool, str]] = []  # (row id, ok, reason) to record
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="center-acks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def wake(self) -> None:
        """Something was acknowledged: send now rather than at the next poll."""
        self._wake.set()

    def on_puback(self, mid: int, ok: bool, reason: str) -> None:
        """From paho's thread (which holds paho's own lock): record and wake; never block."""
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:  # PUBACK before publish() returned: matched in _send_waiting
                self._early[mid] = (ok, reason)
                return
            self._results.append((entry[0], ok, reason))
        self._wake.set()

    def _record_results(self) -> None:
        with self._lock:
            results, self._results = self._results, []
        for row_id, ok, reason in results:
            values: dict = {"last_error": None if ok else reason[:255]}
            if ok:
                values["sent_at"] = time.time()
            with writer(self.engine) as conn:
                conn.execute(t.ack_outbox.update().where(t.ack_outbox.c.id == row_id)
                             .values(**values))
            if ok:
                self.stats.confirmed += 1  # counted once recorded
            else:
                self.stats.refused += 1
                log.warning("broker refused an ack message (%s); will retry", reason)
                self._retry_at[row_id] = time.monotonic() + RETRY_AFTER_S

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self._record_results()
                if self.link.connected.is_set():
                    self._send_waiting()
            except sa.exc.SQLAlchemyError:
                log.exception("the ack outbox could not be read or updated; retrying")

    def _send_waiting(self) -> None:
        now = time.monotonic()
        with self._lock:
            for mid, (_row, sent) in list(self._inflight.items()):
                if now - sent > RETRY_AFTER_S:
                    del self._inflight[mid]  # no PUBACK: publish again
            busy = {row_id for row_id, _ in self._inflight.values()}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.ack_outbox.c.id, t.ack_outbox.c.topic, t.ack_outbox.c.payload)
                .where(t.ack_outbox.c.sent_at.is_(None)).order_by(t.ack_outbox.c.id).limit(200)
            ).all()
        for row_id, topic, payload in rows:
            if row_id in busy or self._retry_at.get(row_id, 0.0) > now:
                continue
            # never hold our lock across publish(): paho calls on_puback holding its own
            mid = self.link.publish(topic, payload.encode())
            if mid is None:
                return
            self.stats.published += 1
            self._retry_at.pop(row_id, None)
            with self._lock:
                early = self._early.pop(mid, None)
                if early is None:
                    self._inflight[mid] = (row_id, now)
                else:
                    self._results.append((row_id, *early))
                    self._wake.set()
