"""Consumer-side bookkeeping for strips and events: de-duplication and sequence gaps.

Delivery is at least once (a message whose acknowledgement was lost is sent
again), so a consumer de-duplicates by ``msg_id``. ``seq`` counts 1, 2, 3... per
gateway, device and kind; a jump means messages the consumer has not seen (yet:
they may still arrive, after a reconnect). Pure: feed it parsed bodies.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Accepted", "MessageTracker"]

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :meth:`MessageTracker.accept` concluded about one message."""

    new: bool
    key: Key
    seq: int | None
    missing: tuple[range, ...] = ()
    late: bool = False  # arrived after a higher seq (fills an earlier hole)

    @property
    def missing_seqs(self) -> list[range]:
        """The seqs this message revealed as not received (yet), as ranges."""
        return list(self.missing)


@dataclass
class MessageTracker:
    """Remembers the last ``remember`` message ids and, per stream, which seqs were seen."""

    remember: int = 100_000
    duplicates: int = 0
    out_of_order: int = 0
    _ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _last: dict[Key, int] = field(default_factory=dict)
    _holes: dict[Key, set[int]] = field(default_factory=dict)

    def accept(self, body: dict[str, Any]) -> Accepted:
        """Register a strip/event body; ``new`` is False for a duplicate."""
        key = (str(body.get("gateway_id")), str(body.get("device_id")), str(body.get("kind")))
        msg_id = str(body.get("msg_id"))
        seq = body.get("seq")
        seq = int(seq) if isinstance(seq, int) else None
        if msg_id in self._ids:
            self.duplicates += 1
            return Accepted(False, key, seq)
        self._ids[msg_id] = None
        if len(self._ids) > self.remember:
            self._ids.popitem(last=False)
        if seq is None:
            return Accepted(True, key, None)
        last = self._last.get(key)
        holes = self._holes.setdefault(key, set())
        if last is None or seq > last:
            first = 1 if last is None else last + 1
            missing = (range(first, seq),) if seq > first else ()
            holes.update(range(first, seq))
            self._last[key] = seq
            return Accepted(True, key, seq, missing)
        self.out_of_order += 1
        holes.discard(seq)
        return Accepted(True, key, seq, (), late=True)

    def missing(self) -> dict[Key, list[int]]:
        """Sequence numbers not seen so far, per stream."""
        return {k: sorted(v) for k, v in self._holes.items() if v}
