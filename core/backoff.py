"""Capped, jittered exponential backoff shared by every reconnecting link.

Many gateways (and several devices on one gateway) lose their link at the same
moment when a home router or a broker restarts; without jitter they all come back
in lockstep. The delay before attempt ``n`` (``n`` = consecutive failures, 1-based)
is ``min(cap, first * 2**(n-1))`` scaled by a uniform factor in [0.5, 1.0]
("equal jitter"): never zero, never above the cap.
"""

from __future__ import annotations

import random

__all__ = ["Backoff", "backoff_s"]


def backoff_s(failures: int, delays: tuple[float, float], rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failures; ``delays`` = (first, cap) s."""
    first, cap = delays
    exponent = min(max(0, failures - 1), 62)  # 2**62 s is far beyond any cap
    return min(cap, first * 2**exponent) * rng.uniform(0.5, 1.0)


class Backoff:
    """Stateful form of :func:`backoff_s`: ``next()`` after a failure, ``reset()`` on success."""

    def __init__(self, delays: tuple[float, float], rng: random.Random | None = None) -> None:
        self.delays = delays
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """Count one more failure; seconds to wait before the next attempt."""
        self.failures += 1
        return backoff_s(self.failures, self.delays, self._rng)

    def at_cap(self) -> float:
        """Count a failure that retrying soon cannot fix (e.g. refused credentials): wait ~cap."""
        self.failures += 1
        return self.delays[1] * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        """The link works again: the next failure starts from the first delay."""
        self.failures = 0
