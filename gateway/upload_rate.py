"""A share of the delivery window and a byte-rate cap for one message kind (pure).

Records (full disclosure, :mod:`gateway.upload`) are bulk: they may use at most
``max_inflight`` of the QoS 1 window and at most ``bytes_per_s`` of the uplink, so that an
event always finds room in the window and an uplink that is not saturated by us.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KindLimit", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """A byte-rate cap: ``rate`` bytes per second on average, bursts up to ``burst`` bytes.

    A message may go when the bucket is not in debt; it then takes its size, possibly
    into debt (a message larger than the burst is never blocked for ever), and the
    debt is repaid at ``rate``. Times are monotonic seconds given by the caller.
    """

    rate: float
    burst: float
    tokens: float = 0.0
    at: float | None = None

    def _refill(self, now: float) -> None:
        if self.at is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def ready(self, now: float) -> bool:
        """Whether a message may go now."""
        self._refill(now)
        return self.tokens >= 0.0

    def take(self, size: int, now: float) -> None:
        """A message of ``size`` bytes went."""
        self._refill(now)
        self.tokens -= size

    def wait_s(self, now: float) -> float:
        """Seconds until a message may go (0 when it may now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class KindLimit:
    """Most rows of one kind in flight at once, and an optional byte-rate cap."""

    max_inflight: int
    bucket: TokenBucket | None = None
    inflight: set[int] = field(default_factory=set)  # packet ids of this kind in flight

    def allows(self, now: float) -> bool:
        if len(self.inflight) >= self.max_inflight:
            return False
        return self.bucket is None or self.bucket.ready(now)

    def sent(self, packet_id: int, size: int, now: float) -> None:
        self.inflight.add(packet_id)
        if self.bucket is not None:
            self.bucket.take(size, now)
