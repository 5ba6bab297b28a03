"""Which strips and events the center's staff acknowledged, and which are still waiting.

The center publishes an ack for each acknowledged strip or event
(``ecg/v1/{gateway}/{device}/ack``, ``ecg-center/ack/v1``: docs/mqtt.md). The gateway keeps,
per device, the events it sent and the acks that came back, so its status and study record
say how many events are waiting for a person and for how long: an event never
acknowledged is visible on the gateway side too. Pure and bounded.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Ack", "AckLedger", "parse_ack", "receive_ack"]

ACK_SCHEMA = "ecg-center/ack/v1"
_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledgement: which message, who, when (ISO-8601 UTC as the center wrote)."""

    msg_id: str
    kind: str
    acknowledged_by: str
    acknowledged_at: str


def parse_ack(payload: bytes) -> Ack:
    """An ack message; ``ValueError`` with the reason when it is not one."""
    body = json.loads(payload)
    if not isinstance(body, dict) or body.get("schema") != ACK_SCHEMA:
        raise ValueError("not an ecg-center/ack/v1 message")
    fields = ("msg_id", "kind", "acknowledged_by", "acknowledged_at")
    values = [body.get(f) for f in fields]
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values):
        raise ValueError(f"ack with missing or bad fields: {sorted(body)}")
    return Ack(*values)


class AckLedger:
    """Events sent and the acks received for one device (the latest ``_KEPT`` of each)."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, float] = OrderedDict()  # msg_id -> sent at (UTC s)
        self.recent: list[Ack] = []  # acks not yet in a study record
        self.sent = self.acknowledged = self.unknown = 0

    def sent_event(self, msg_id: str, at: float) -> None:
        self.sent += 1
        self._waiting[msg_id] = at
        while len(self._waiting) > _KEPT:
            self._waiting.popitem(last=False)

    def received(self, ack: Ack) -> None:
        if ack.kind == "event" and self._waiting.pop(ack.msg_id, None) is None:
            self.unknown += 1  # acknowledged twice, or sent before this gateway run
        self.acknowledged += 1
        self.recent = [*self.recent[-(_KEPT - 1) :], ack]

    def facts(self, now: float) -> dict[str, Any]:
        """For the status: events sent, acknowledged, waiting and the oldest wait (s)."""
        oldest = next(iter(self._waiting.values()), None)
        return {
            "events_sent": self.sent,
            "acknowledged": self.acknowledged,
            "waiting_for_acknowledgement": len(self._waiting),
            "oldest_waiting_s": None if oldest is None else round(now - oldest, 1),
        }

    def take_recent(self) -> list[dict[str, str]]:
        """The acks since the last study record (then forgotten here)."""
        out = [
            {"msg_id": a.msg_id, "kind": a.kind, "by": a.acknowledged_by, "at": a.acknowledged_at}
            for a in self.recent
        ]
        self.recent = []
        return out


def receive_ack(ledger: AckLedger | None, topic: str, payload: bytes) -> None:
    """An ack message on ``topic`` into the device's ``ledger`` (None: not one of ours);
    a malformed one is logged and ignored."""
    try:
        ack = parse_ack(payload)
    except ValueError as exc:
        log.warning("ignored a bad ack on %s: %s", topic, exc)
        return
    if ledger is not None:
        ledger.received(ack)
        log.info(
            "%s: %s %s acknowledged by %s",
            topic.split("/")[-2],
            ack.kind,
            ack.msg_id,
            ack.acknowledged_by,
        )
