"""The center's answer to a gateway's test transmission (``ecg-gateway provision``).

A gateway publishes ``{prefix}/{gateway}/ping`` (QoS 1, ``ecg-gateway/ping/v1``: ``ping_id``,
``sent_at``); the center answers on ``{prefix}/{gateway}/pong`` (QoS 1, not retained,
``ecg-center/pong/v1``) with the same ``ping_id`` and the times it received and answered.
That proves the whole path: the gateway's certificate and ACL at the broker, the center's
subscription, and the way back. Pings are not stored; at most ``MAX_PER_S`` per gateway
per second are answered (the rest are acknowledged and dropped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from center.timefmt import iso

__all__ = ["PING_SCHEMA", "PONG_SCHEMA", "PongResponder", "answer"]

PING_SCHEMA = "ecg-gateway/ping/v1"
PONG_SCHEMA = "ecg-center/pong/v1"
MAX_PER_S = 5


def ping_gateway(topic: str, prefix: str) -> str | None:
    """The gateway id of a ping topic ``{prefix}/{gw}/ping``, else None."""
    if not topic.startswith(prefix + "/") or not topic.endswith("/ping"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    return parts[0] if len(parts) == 2 and parts[0] else None


def answer(topic: str, payload: bytes, prefix: str, now: float, center_id: str
           ) -> tuple[str, bytes] | None:
    """(pong topic, pong payload) for a well-formed ping, None for anything else."""
    gateway = ping_gateway(topic, prefix)
    if gateway is None:
        return None
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(body, dict) or body.get("schema") != PING_SCHEMA:
        return None
    ping_id = body.get("ping_id")
    if not isinstance(ping_id, str) or not 0 < len(ping_id) <= 64:
        return None
    pong = {"schema": PONG_SCHEMA, "gateway_id": gateway, "ping_id": ping_id,
            "received_at": iso(now), "answered_at": iso(now), "center": center_id}
    return f"{prefix}/{gateway}/pong", json.dumps(pong, separators=(",", ":")).encode()


@dataclass
class PongResponder:
    """Rate limit per gateway (pure: the caller passes the time, POSIX s)."""

    prefix: str
    center_id: str
    answered: int = 0
    dropped: int = 0
    _window: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __call__(self, topic: str, payload: bytes, now: float) -> tuple[str, bytes] | None:
        out = answer(topic, payload, self.prefix, now, self.center_id)
        if out is None:
            self.dropped += 1
            return None
        gateway = ping_gateway(topic, self.prefix) or ""
        second, count = self._window.get(gateway, (int(now), 0))
        if second != int(now):
            second, count = int(now), 0
        if count >= MAX_PER_S:
            self.dropped += 1
            return None
        self._window[gateway] = (second, count + 1)
        self.answered += 1
        return out
