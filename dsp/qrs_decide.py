"""The QRS detector's decisions: which candidate peaks are beats (pure, per candidate).

This is the part of the detector a reviewer must be able to read; the signal side
(filters, feature, candidate peaks, measurements) is in :mod:`dsp.qrs_front`. Candidates
arrive in sample order, each measured: its energy peak, steepest slope, R-peak position,
amplitude and QRS width. Rules (Hamilton & Tompkins 1986, after Pan & Tompkins 1985):

1. **learning**: the first ``learn_s`` seconds of a stream train the levels: the signal
   level is the highest peak, the noise level the mean of the peaks under 30 % of it;
2. **threshold**: ``THR1 = NPK + 0.3125 (SPK - NPK)`` with SPK and NPK the medians of
   the last 8 QRS peaks and the last 8 noise peaks;
3. **refractory**: nothing within 200 ms of the last beat;
4. **T wave**: a candidate above THR1 within 360 ms of the last beat whose steepest
   slope is under half that beat's is a T wave (noise);
5. **search-back**: when no beat has come for 1.66 × the mean of the last 8 RR
   intervals (capped at 1.5 s, which bounds the latency), the largest candidate since
   the last beat that is above ``THR1 / 2`` is taken; with none, the signal level is
   halved (a drop in amplitude is followed) and the wait starts again;
6. **width label**: a beat much wider (1.6 ×) than the median of the last 32 is marked
   likely ventricular — a width measurement, not a diagnosis.

Every decision depends on sample indices only, never on how the stream was cut into
blocks.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Candidate", "QrsDecider", "RunningMedian", "compiled_decider", "learnt_levels"]

_LEARN_S = 2.0
_REFRACTORY_S = 0.200
_T_WAVE_S = 0.360
_SEARCHBACK_RR = 1.66
_RR_CAP_S = 1.5  # mean RR used for search-back is capped: bounds the latency
_RR_HISTORY = 8
_LEVEL_HISTORY = 8  # peaks in the median signal and noise levels
_WIDE = 1.6  # wider than 1.6 x the median of recent beats (the dominant width)
_WIDTH_HISTORY = 32  # beats in that median
_THRESHOLD = 0.3125


@dataclass(slots=True)
class Candidate:
    """A local maximum of the energy feature, measured on the window that produced it."""

    idx: int  # sample index of the energy peak
    peak: float  # feature value at the peak
    slope: float  # steepest derivative in the QRS window
    r_idx: int  # R-peak location
    amplitude: float  # mV at r_idx (0.5-40 Hz signal)
    rr: float = float("nan")  # samples since the previous beat's R peak
    width: float = 0.0  # samples of steep slope around R
    ventricular: bool = False


def learnt_levels(peaks: list[float]) -> tuple[float, float]:
    """Rule 1: the signal and noise levels from the learning period's candidate peaks (the
    highest; the mean of those under 30 % of it, or 0). Also the compiled decider's."""
    p = np.array(peaks)
    top = float(p.max())
    low = p[p < 0.3 * top]
    return top, float(low.mean()) if low.size else 0.0


class RunningMedian:
    """The last ``size`` values and their median (0.0 when empty), kept sorted as they come:
    the detector asks for medians of 8 to 32 values at every candidate."""

    __slots__ = ("_order", "_sorted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[float] = deque()  # arrival order
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def append(self, value: float) -> None:
        self._order.append(value)
        bisect.insort(self._sorted, value)
        if len(self._order) > self.size:
            del self._sorted[bisect.bisect_left(self._sorted, self._order.popleft())]

    def scale(self, factor: float) -> None:
        """Multiply every value by ``factor`` (> 0: the order is kept)."""
        self._order = deque(v * factor for v in self._order)
        self._sorted = [v * factor for v in self._sorted]

    def median(self) -> float:
        v, n = self._sorted, len(self._sorted)
        if not n:
            return 0.0
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


class QrsDecider:
    """The rules of the module docstring, candidate by candidate.

    Parameters
    ----------
    fs
        Sample rate, Hz (the rules' times are converted to samples once, here).

    Attributes
    ----------
    window
        Samples a search-back looks back: with the look-ahead, the detector's latency.
    """

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self.refractory = max(int(round(_REFRACTORY_S * fs)), 1)
        self.t_wave = int(round(_T_WAVE_S * fs))
        self.learn = int(round(_LEARN_S * fs))
        self.rr_cap = int(round(_RR_CAP_S * fs))
        self.window = int(np.ceil(_SEARCHBACK_RR * self.rr_cap))
        self._sig = RunningMedian(_LEVEL_HISTORY)  # recent QRS peak levels
        self._noi = RunningMedian(_LEVEL_HISTORY)  # recent noise peak levels
        self._thr: float | None = None  # THR1 of the current levels (None: to compute)
        self.trained = False
        self.new_segment(0)

    def new_segment(self, start: int) -> None:
        """A stream segment (after a gap) begins at sample ``start``: beat history is
        forgotten; the learnt levels are kept."""
        self.start = start
        self._learning: list[Candidate] = []
        self._noise_since_beat: list[Candidate] = []
        self._last_beat: int | None = None
        self._last_r: int | None = None
        self._last_slope = 0.0
        self._rr: list[int] = []
        self._widths = RunningMedian(_WIDTH_HISTORY)  # QRS widths of the last beats
        self._deadline: int | None = None

    # --- the detector's calls --------------------------------------------------------------
    def candidate(self, c: Candidate, out: list[Candidate]) -> None:
        """Decide one candidate (beats found on the way are appended to ``out``)."""
        if not self.trained:
            if c.idx < self.start + self.learn:
                self._learning.append(c)
                return
            self.train(out)
        if self._deadline is not None and self._deadline < c.idx:
            self.search_back_until(c.idx, out)
        self._decide(c, out)

    def scanned_to(self, horizon: int, final: bool, out: list[Candidate]) -> None:
        """Every candidate before ``horizon`` has been given: train or search back if due
        (``final``: the segment ends there, no search-back is forced yet)."""
        if not self.trained and horizon >= self.start + self.learn:
            self.train(out)
        if not final and self._deadline is not None and self._deadline < horizon:
            self.search_back_until(horizon, out)

    def end_segment(self, end: int, out: list[Candidate]) -> None:
        """The segment ends at ``end``: decide what is held."""
        if not self.trained and self._learning:
            self.train(out)
        self.search_back_until(end, out)

    # --- the rules -----------------------------------------------------------------------------
    def train(self, out: list[Candidate]) -> None:
        """Set the levels from the learning period and decide the candidates held. It runs
        once, in the first segment: later segments keep the levels (:meth:`new_segment`)."""
        held, self._learning = self._learning, []
        self.trained = True
        if not held:
            return
        top, low = learnt_levels([c.peak for c in held])
        self._sig.append(top)
        self._noi.append(low)
        self._thr = None
        for c in held:
            self.search_back_until(c.idx, out)
            self._decide(c, out)

    @property
    def thr1(self) -> float:
        """``NPK + 0.3125 (SPK - NPK)``, recomputed only after the levels changed."""
        if self._thr is None:
            spk = self._sig.median()
            npk = self._noi.median()
            self._thr = npk + _THRESHOLD * (spk - npk)
        return self._thr

    def _decide(self, c: Candidate, out: list[Candidate]) -> None:
        last = self._last_beat
        if last is not None and c.idx - last < self.refractory:
            return
        if c.peak > self.thr1:
            near = last is not None and c.idx - last < self.t_wave
            if near and c.slope < 0.5 * self._last_slope:
                self._noise(c)  # a T wave
                return
            self._sig.append(c.peak)
            self._thr = None
            out.append(self._accept(c))
            return
        self._noise(c)

    def _noise(self, c: Candidate) -> None:
        self._noi.append(c.peak)
        self._thr = None
        self._noise_since_beat.append(c)

    def _accept(self, c: Candidate) -> Candidate:
        if self._last_beat is not None:
            self._rr.append(c.idx - self._last_beat)
            if len(self._rr) > _RR_HISTORY:
                del self._rr[0]
        if self._last_r is not None:
            c.rr = float(c.r_idx - self._last_r)
        if len(self._widths) >= 4:
            c.ventricular = c.width > _WIDE * self._widths.median()
        # every beat counts: a wide rhythm (paced, bundle branch block) becomes the dominant one
        self._widths.append(c.width)
        self._last_beat = c.idx
        self._last_r = c.r_idx
        self._last_slope = c.slope
        self._noise_since_beat = []
        mean_rr = sum(self._rr) / len(self._rr) if self._rr else self.fs
        self._deadline = c.idx + math.ceil(_SEARCHBACK_RR * min(mean_rr, self.rr_cap))
        return c

    def search_back_until(self, upto: int, out: list[Candidate]) -> None:
        """Run every search-back whose deadline falls before sample ``upto``."""
        while self.trained and self._deadline is not None and self._deadline < upto:
            deadline = self._deadline
            oldest = deadline - self.window  # older candidates are final: bounded latency
            pool = [c for c in self._noise_since_beat if oldest <= c.idx <= deadline]
            thr2 = 0.5 * self.thr1
            pool = [c for c in pool if c.peak > thr2]
            if pool:
                best = max(pool, key=lambda c: c.peak)
                self._sig.append(best.peak)
                self._thr = None
                later = [c for c in self._noise_since_beat if c.idx > best.idx]
                out.append(self._accept(best))
                self._noise_since_beat = later
            else:
                self._sig.scale(0.5)
                self._thr = None
                self._deadline = deadline + self.window


def compiled_decider(kernel: Any, fs: float) -> Any:
    """These rules compiled (``dsp._qrs_kernel.Decider``), with the constants here."""
    rules = QrsDecider(fs)
    return kernel.Decider(
        fs=rules.fs,
        refractory=rules.refractory,
        t_wave=rules.t_wave,
        learn=rules.learn,
        rr_cap=rules.rr_cap,
        window=rules.window,
        threshold=_THRESHOLD,
        searchback_rr=_SEARCHBACK_RR,
        wide=_WIDE,
        rr_history=_RR_HISTORY,
        level_history=_LEVEL_HISTORY,
        width_history=_WIDTH_HISTORY,
        learnt_levels=learnt_levels,
    )
