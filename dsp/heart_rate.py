"""Heart rate from detected beats: instant (last RR) and averaged (median of recent RRs).

The median of the last 8 RR intervals is the averaged rate monitors display: one
missed or extra beat does not move it. When no beat has come for longer than
``stale_s`` seconds the rate is unknown (NaN): a monitor must not keep showing an
old number through a pause or a lead-off.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from dsp.qrs import Beats

__all__ = ["HeartRate", "HeartRateTracker"]


@dataclass(frozen=True, slots=True)
class HeartRate:
    """Heart rate after the latest beats, beats per minute (NaN when unknown)."""

    instant_bpm: float
    average_bpm: float
    n_intervals: int


class HeartRateTracker:
    """Running heart rate from a stream of :class:`~dsp.qrs.Beats`.

    Parameters
    ----------
    n_average
        RR intervals in the median (default 8).
    stale_s
        Seconds without a beat after which the rate is unknown (default 5 s).
    """

    def __init__(self, n_average: int = 8, stale_s: float = 5.0) -> None:
        self.n_average = n_average
        self.stale_s = stale_s
        self._rr: deque[float] = deque(maxlen=n_average)
        self._last_seq: int | None = None
        self._fs: float | None = None

    def process(self, beats: Beats, now_seq: int) -> HeartRate:
        """Add new beats; ``now_seq`` is the sequence number of the latest sample received."""
        if len(beats):  # plain Python: a block brings one or two beats
            self._fs = beats.fs
            self._rr.extend(v for v in beats.rr_s.tolist() if math.isfinite(v))
            self._last_seq = beats.seq.item(-1)
        return self.current(now_seq)

    def current(self, now_seq: int) -> HeartRate:
        """The rate as of sample ``now_seq``."""
        n = len(self._rr)
        if (
            n == 0
            or self._fs is None
            or self._last_seq is None
            or (now_seq - self._last_seq) / self._fs > self.stale_s
        ):
            return HeartRate(float("nan"), float("nan"), n)
        ordered = sorted(self._rr)
        median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
        return HeartRate(60.0 / self._rr[-1], 60.0 / median, n)
