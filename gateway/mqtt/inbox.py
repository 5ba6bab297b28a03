"""What the gateway receives: subscriptions and their handlers (the center's acks, ...).

Handlers run on the event loop and must not block; a failing handler is logged and
counted, never stops delivery. The PUBACK of a QoS 1 message follows its handlers, and only
when they all succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.counters import Counters
from gateway.mqtt.codec import Publish, topic_matches

__all__ = ["Inbox"]

log = logging.getLogger(__name__)

Handler = Callable[[Publish], None]


class Inbox:
    """Topic filters and who handles each (see the module docstring)."""

    def __init__(self) -> None:
        self._subs: dict[str, Handler] = {}
        self.counters = Counters("received received_bad")

    def add(self, topic_filter: str, handler: Handler) -> None:
        self._subs[topic_filter] = handler

    @property
    def filters(self) -> tuple[tuple[str, int], ...]:
        """The subscription list, each at QoS 1."""
        return tuple((f, 1) for f in self._subs)

    def deliver(self, packet: Publish) -> bool:
        """Hand ``packet`` to every handler whose filter matches its topic; False if one
        failed (then it is not acknowledged: the broker sends it again after a reconnect).
        Handlers reject bad content themselves (logged, acknowledged); an exception means
        they could not do their part (a full disk, ...)."""
        self.counters.add("received")
        ok = True
        for filt, handler in self._subs.items():
            if topic_matches(filt, packet.topic):
                try:
                    handler(packet)
                except Exception:
                    ok = False
                    self.counters.add("received_bad")
                    log.exception("handler for %s failed; not acknowledged", packet.topic)
        return ok
