"""The QoS 1 delivery window: which outbox rows are on the wire, and what to send (pure).

The publisher offers the oldest rows of the outbox (priority order); the window gives
each a packet id while it has room — at most ``max_inflight`` and never more than the
broker's Receive Maximum — and says what to publish. A PUBACK settles its row: a
success reason code means the row may be deleted; a failure (0x80 and up, e.g. 0x87
"Not authorized" from an ACL) means the broker refused it: the row stays in the outbox
and is offered again after ``retry_backoff_s``.

MQTT v5 allows a client to re-send a PUBLISH only after reconnecting (4.4). So:

- reconnected **with** the session present, the rows in flight are re-sent first, with
  DUP set and their packet ids, before anything new (order is kept);
- reconnected **without** it (the broker lost the session), they are forgotten by the
  window and offered again as new messages, oldest first;
- on a live connection a row never acknowledged within ``ack_timeout_s`` is not re-sent:
  :meth:`DeliveryWindow.stalled` tells the client to drop the connection, and the
  reconnection re-sends it.

Consumers de-duplicate by ``msg_id`` (delivery is at least once).

Bulk kinds (full-disclosure ``record`` chunks, issue #13) may be given a
:class:`~gateway.upload_rate.KindLimit`: at most that many of the window's slots and a
byte-rate cap; rows of such a kind beyond their share are skipped by :meth:`offer` (they
stay in the outbox), so events and strips always find room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.mqtt.codec import Prop, Publish
from gateway.outbox import OutboxMessage
from gateway.upload_rate import KindLimit

__all__ = ["Acked", "DeliveryWindow", "Refused", "Send", "publish_packet"]

SUCCESS_LIMIT = 0x80  # reason codes below are successes (0x10 "No matching subscribers" too)
SUBSCRIBE_ID = 65535  # the packet id SUBSCRIBE uses; PUBLISH ids are 1 .. 65534


@dataclass(frozen=True, slots=True)
class Send:
    """Publish ``row`` with QoS 1 under ``packet_id`` (``dup``: a re-send)."""

    row: OutboxMessage
    packet_id: int
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker took ``row``: it may leave the outbox."""

    row: OutboxMessage


@dataclass(frozen=True, slots=True)
class Refused:
    """The broker refused ``row`` with ``reason`` (kept, offered again later)."""

    row: OutboxMessage
    reason: int


@dataclass(slots=True)
class _InFlight:
    row: OutboxMessage
    sent_at: float  # monotonic s of the last (re)send


class DeliveryWindow:
    """Packet ids, room and re-sends for QoS 1 delivery (see the module docstring).

    Parameters
    ----------
    max_inflight
        Most rows unacknowledged at once (the broker's Receive Maximum may lower it).
    ack_timeout_s
        A PUBACK later than this on a live connection means the connection is stalled.
    retry_backoff_s
        Seconds before a refused row is offered again.
    limits
        Per message kind: its share of the window and byte-rate cap (bulk kinds only).
    """

    def __init__(
        self,
        max_inflight: int = 20,
        ack_timeout_s: float = 60.0,
        retry_backoff_s: float = 30.0,
        limits: Mapping[str, KindLimit] | None = None,
    ) -> None:
        self.limits = dict(limits or {})
        self.max_inflight = max_inflight
        self.ack_timeout_s = ack_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self._limit = max_inflight
        self._inflight: dict[int, _InFlight] = {}  # packet id -> row, in send order
        self._backoff: dict[int, float] = {}  # row id -> monotonic s it may be offered again
        self._next_id = 1
        self._connected = False

    # --- state -----------------------------------------------------------------------------
    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def room(self) -> int:
        """How many more rows may be sent now (0 while disconnected)."""
        return max(0, self._limit - len(self._inflight)) if self._connected else 0

    def busy(self, now: float) -> set[int]:
        """Row ids not to offer now: in flight, or refused and backing off."""
        self._backoff = {r: t for r, t in self._backoff.items() if t > now}
        return {f.row.row_id for f in self._inflight.values()} | set(self._backoff)

    def stalled(self, now: float) -> bool:
        """Whether a row has waited longer than ``ack_timeout_s`` for its PUBACK."""
        oldest = min((f.sent_at for f in self._inflight.values()), default=None)
        return self._connected and oldest is not None and now - oldest > self.ack_timeout_s

    # --- events ----------------------------------------------------------------------------
    def connected(self, receive_maximum: int, session_present: bool, now: float) -> list[Send]:
        """The broker accepted us: what to re-send before anything new."""
        self._connected = True
        self._limit = max(1, min(self.max_inflight, receive_maximum - 1))  # 1 left for status
        if not session_present:
            self._inflight.clear()  # the broker forgot them: offered again as new messages
            for limit in self.limits.values():
                limit.inflight.clear()
            return []
        for f in self._inflight.values():
            f.sent_at = now
        return [Send(f.row, pid, dup=True) for pid, f in self._inflight.items()]

    def disconnected(self) -> None:
        """The connection is gone; rows in flight wait for the next one."""
        self._connected = False

    def offer(self, rows: list[OutboxMessage], now: float) -> list[Send]:
        """Rows from the outbox (oldest first, none of :meth:`busy`): the ones to send."""
        out: list[Send] = []
        room = self.room
        for row in rows:
            if len(out) >= room:
                break
            limit = self.limits.get(row.kind)
            if limit is not None and not limit.allows(now):
                continue  # beyond its share or its rate: stays in the outbox for now
            pid = self._new_id()
            self._inflight[pid] = _InFlight(row, now)
            if limit is not None:
                limit.sent(pid, len(row.payload), now)
            out.append(Send(row, pid))
        return out

    def puback(self, packet_id: int, reason: int, now: float) -> Acked | Refused | None:
        """The broker answered ``packet_id``; None for an id not in flight (ignored)."""
        f = self._inflight.pop(packet_id, None)
        if f is None:
            return None
        limit = self.limits.get(f.row.kind)
        if limit is not None:
            limit.inflight.discard(packet_id)
        if reason < SUCCESS_LIMIT:
            return Acked(f.row)
        self._backoff[f.row.row_id] = now + self.retry_backoff_s
        return Refused(f.row, reason)

    def _new_id(self) -> int:
        while True:
            pid = self._next_id
            self._next_id = pid % (SUBSCRIBE_ID - 1) + 1  # 1 .. 65534
            if pid not in self._inflight:
                return pid


def publish_packet(s: Send) -> Publish:
    """The PUBLISH of a :class:`Send`: QoS 1, the row's retain flag, JSON, and the user
    properties ``msg_id``, ``seq``, ``kind``, ``device_id`` (route and de-duplicate
    without parsing the payload)."""
    m = s.row
    props = {
        Prop.PAYLOAD_FORMAT: 1,
        Prop.CONTENT_TYPE: "application/json",
        Prop.USER_PROPERTY: [
            ("msg_id", m.msg_id),
            ("seq", str(m.seq)),
            ("kind", m.kind),
            ("device_id", m.device_id),
        ],
    }
    return Publish(m.topic, m.payload, 1, m.retain, s.dup, s.packet_id, props)
