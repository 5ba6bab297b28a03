"""Log lines for repeated problems, at most one per minute per kind, each with its count.

A device can send junk as fast as its link carries it (a bad frame every 40 ms, a
reconnection every 100 ms); one log line per problem would bury the journal (issue #10
measured 20 MB of noise). Every problem is still *counted* where it happens (driver and
channel counters, the status); the log gets, per kind of problem (``key``):

- the first occurrence at once;
- then at most one line per ``period_s``, saying how many were left out since the last line.

A burst that stops leaves its last left-out count unlogged: the counters in the status
have it. :class:`LogBudget` is the pure decision; :class:`RateLimitedLog` the thin shell
over a :class:`logging.Logger`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LogBudget", "RateLimitedLog"]

_KEYS_KEPT = 256  # kinds remembered (a device inventing keys cannot grow this)


class LogBudget:
    """Which occurrences of each kind of problem get a line (see the module docstring).

    Parameters
    ----------
    period_s
        At most one line per kind per this many seconds.
    """

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}  # key -> time of its last line
        self._left_out: dict[str, int] = {}  # key -> occurrences since that line

    def take(self, key: str, now: float) -> int | None:
        """An occurrence of ``key`` at ``now`` (s): None to stay quiet, else how many were
        left out since the last line (0 for the first)."""
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= _KEYS_KEPT:
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self._left_out.pop(oldest, None)
        self._last[key] = now
        return self._left_out.pop(key, 0)


class RateLimitedLog:
    """A :class:`logging.Logger` whose lines are rationed by a :class:`LogBudget`."""

    def __init__(
        self,
        logger: logging.Logger,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.budget = LogBudget(period_s)
        self._clock = clock

    def log(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``msg % args`` for ``key`` if its budget allows; True if a line was written."""
        left_out = self.budget.take(key, self._clock())
        if left_out is None:
            return False
        if left_out:
            msg += " [%d more like this since the last line]"
            args = (*args, left_out)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True
