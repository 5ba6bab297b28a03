"""Live ECG: QoS 0, best effort, never stored, at most ``max_rate_hz`` messages per topic.

Live is for watching, not for the record: a message is dropped (and counted) when the
broker is not connected or when its topic already had one less than ``1 / max_rate_hz``
seconds ago.
"""

from __future__ import annotations

import time

from core.counters import Counters
from gateway.mqtt.client import MqttClient
from gateway.mqtt.codec import Publish

__all__ = ["LiveSender"]


class LiveSender:
    """Rate-limited QoS 0 publishing (see the module docstring)."""

    def __init__(self, max_rate_hz: float) -> None:
        self.min_interval_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.counters = Counters("live_sent", "live_dropped_offline", "live_dropped_rate")
        self._last: dict[str, float] = {}  # topic -> monotonic s of its last message

    def send(self, client: MqttClient | None, topic: str, payload: bytes) -> bool:
        """Publish on ``client`` (None: not connected); True when sent."""
        if client is None:
            self.counters.add("live_dropped_offline")
            return False
        now = time.monotonic()
        last = self._last.get(topic)
        if last is not None and now - last < self.min_interval_s:
            self.counters.add("live_dropped_rate")
            return False
        if not client.send(Publish(topic, payload, qos=0)):
            self.counters.add("live_dropped_offline")
            return False
        self._last[topic] = now
        self.counters.add("live_sent")
        return True
