"""Device sample numbers to UTC, tracking the device clock's drift (pure, no I/O).

A patch counts samples with its own crystal: 250 Hz nominal is 250.0125 Hz on a
patch 50 ppm fast, 4.3 s a day, a minute over a two-week study. The gateway's
clock is NTP-disciplined, so the arrival times of live frames measure the
patch's true rate, but each arrival is late by a variable Bluetooth and
scheduling latency (milliseconds to seconds when the link retries).

:class:`ClockTracker` uses the *earliest* arrivals: the stream is cut into
windows of ``WINDOW_S`` (device) seconds and each window keeps its observation with
the smallest ``arrival - seq / fs``, i.e. the least-delayed frame (a lower
envelope). A straight line fitted to the last ``FIT_WINDOWS`` window minima gives
the offset and the drift. Until two windows are complete the mapping comes from
the anchor (the device's own clock read, or the first arrival).

The mapping ``utc_of(seq)`` is piecewise linear and continuous in ``seq``: each
refit starts a new segment at the current stream position that slews towards the
fitted line (at most ``MAX_SLEW`` relative rate change) instead of jumping, so
block times stay monotonic across refits and reconnections. Earlier samples
(backfill) keep the times of the segment they belong to.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ClockTracker"]

WINDOW_S = 30.0  # device seconds per envelope window
FIT_WINDOWS = 120  # windows in the line fit (WINDOW_S * FIT_WINDOWS of stream: 1 h)
MAX_SLEW = 0.01  # largest relative rate change used to converge on a new fit (1 %)


@dataclass(frozen=True, slots=True)
class _Segment:
    seq: int  # first sample number of the segment
    t: float  # its UTC, POSIX s
    rate: float  # seconds of UTC per sample


class ClockTracker:
    """Maps sample numbers to UTC with drift tracking (see module docstring).

    ``fs`` is the nominal sample rate, Hz; the module's constants tune the tracking.
    """

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self.window = max(int(WINDOW_S * fs), 1)
        self._minima: deque[tuple[int, float]] = deque(maxlen=FIT_WINDOWS)
        self._current: tuple[int, int, float] | None = None  # (window, seq, excess)
        self._segments: list[_Segment] = []
        self._seqs: list[int] = []
        self.drift_ppm: float | None = None  # device clock rate error (+ = device fast)
        self.refits = 0

    # --- inputs ----------------------------------------------------------------------------
    def anchor(self, seq: int, utc: float) -> None:
        """Initial mapping (a device time read): used only until the first fit."""
        if not self._segments:
            self._add(_Segment(seq, utc, 1.0 / self.fs))

    def observe(self, seq: int, arrival_utc: float) -> None:
        """A live sample ``seq`` arrived at host time ``arrival_utc`` (NTP UTC, s)."""
        if not self._segments:
            self._add(_Segment(seq, arrival_utc, 1.0 / self.fs))
        window = seq // self.window
        excess = arrival_utc - seq / self.fs
        cur = self._current
        if cur is None or window > cur[0]:
            if cur is not None:
                self._minima.append((cur[1], cur[2] + cur[1] / self.fs))
                self._refit(seq)
            self._current = (window, seq, excess)
        elif window == cur[0] and excess < cur[2]:
            self._current = (window, seq, excess)

    # --- output ----------------------------------------------------------------------------
    def utc_of(self, seq: int) -> float:
        """UTC (POSIX s) of sample ``seq``; monotonic in ``seq``."""
        if not self._segments:
            raise ValueError("no anchor yet")
        i = max(bisect.bisect_right(self._seqs, seq) - 1, 0)
        s = self._segments[i]
        return s.t + (seq - s.seq) * s.rate

    @property
    def anchored(self) -> bool:
        """Whether :meth:`utc_of` can answer (an anchor or an observation was given)."""
        return bool(self._segments)

    @property
    def rate_hz(self) -> float:
        """The device's current estimated true sample rate, Hz."""
        if self.drift_ppm is None:
            return self.fs
        return self.fs * (1.0 + self.drift_ppm * 1e-6)

    # --- internals -------------------------------------------------------------------------
    def _add(self, seg: _Segment) -> None:
        if self._segments and seg.seq <= self._segments[-1].seq:
            self._segments[-1] = seg  # replaces a segment that never got used
            self._seqs[-1] = seg.seq
        else:
            self._segments.append(seg)
            self._seqs.append(seg.seq)

    def _refit(self, now_seq: int) -> None:
        if len(self._minima) < 2:
            return
        pts = np.array(self._minima, dtype=np.float64)
        seq, t = pts[:, 0], pts[:, 1]
        s0 = seq[-1]
        slope, intercept = np.polyfit(seq - s0, t, 1)  # t = intercept + slope (seq - s0)
        if slope <= 0:
            return
        self.drift_ppm = (1.0 / (slope * self.fs) - 1.0) * 1e6
        self.refits += 1
        # slew from where the mapping is now towards the fitted line
        t_now = self.utc_of(now_seq)
        target = intercept + slope * (now_seq - s0)
        horizon = self.window  # converge within one window when the slew allows it
        rate = slope + (target - t_now) / horizon
        lo, hi = slope * (1 - MAX_SLEW), slope * (1 + MAX_SLEW)
        rate = min(max(rate, lo), hi)
        self._add(_Segment(now_seq, t_now, rate))
        # where the slewed segment meets the fitted line, follow the line
        if rate != slope:
            meet = now_seq + (target - t_now) / (rate - slope)
            if now_seq < meet <= now_seq + horizon:
                m = int(np.ceil(meet))
                self._add(_Segment(m, intercept + slope * (m - s0), slope))
