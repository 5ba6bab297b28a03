"""Atrial fibrillation from RR intervals (and, optionally, atrial activity): streaming.

Pure and causal: :class:`AfDetector` takes beats one at a time (sample number,
whether the beat is ventricular, optionally a P-wave score) and reports where AF
began or ended. Its state is explicit and bounded, and the cost per beat is
constant, so the result never depends on how the beat stream was cut into blocks.

The design follows the ideas of Petrėnas, Marozas and Sörnmo, "Low-complexity
detection of atrial fibrillation in continuous long-term monitoring", Comput Biol
Med 65:184-191 (2015) — a short RR window, ectopic-beat filtering, bigeminy
suppression and fusion with the heart rate — in our own form:

1. **Ectopic beats are left out.** An interval is left out when it starts or ends
   on a ventricular beat, or when it belongs to a premature beat: an interval
   under 85 % of the median of the 8 intervals before it, followed by one at
   least as long as that median (the premature beat and its pause). So are the
   traces of detection errors: two intervals that together come within 15 % of
   the median, one of them under half of it (a false detection split one
   interval: both parts are left out), and an interval within 15 % of twice the
   median (a beat not detected). Deciding this needs the next interval: every
   interval is judged one beat late.
2. **Irregularity with bigeminy and trigeminy suppressed.** Over the last 16
   intervals, the median absolute difference between kept intervals 1, 2 and 3
   beats apart, each over the median kept interval; the smallest of the three
   is the irregularity. A rhythm that repeats every two or three beats
   (bigeminy, trigeminy, alternans, 3:2 block) is regular at its own period;
   AF is irregular at every lag. A lag with fewer than 8 kept pairs is not
   used; when no lag is, the window is not judged and the last value stands.
3. **Fusion with the heart rate.** The irregularity is scaled by
   ``sqrt(0.8 s / median RR)``: sinus arrhythmia is largest at slow rates, AF
   usually conducts fast.
4. **Optional atrial evidence.** When a P-wave score (0: none, 1: a P wave as
   clear as the patient's own) comes with a beat, a clear
   P wave lowers the irregularity (a premature atrial beat, sinus arrhythmia);
   its absence leaves the RR verdict alone. Without it (annotations only, a lead
   without visible P waves) the detector is the RR detector. The score comes
   from :class:`~dsp.beat_class.BeatClassifier` (:mod:`dsp.atrial`); it does not
   tell atrial flutter from AF (flutter waves are not locked to the QRS either).
5. **Poincaré spread (atrial ectopy is structured).** Every interval with the
   one before it is a point of the Poincaré plot (all intervals, ectopic ones
   included); its distance to the nearest of the previous 31 points (Chebyshev,
   each coordinate relative to the new point's) measures how new it is. Premature
   beats, bigeminy, trigeminy and short runs, mixed as they come, revisit a few
   tight clusters (median distance over the last 32 points about 0.01-0.03);
   AF is a diffuse cloud (about 0.03-0.09). See Lian, Wang and Muessig, "A simple
   method to detect atrial fibrillation using RR intervals", Am J Cardiol
   107:1494-1497 (2011), and Sarkar, Ritscher and Mehra, IEEE Trans Biomed Eng
   55:1219-1224 (2008), for the plot as an AF feature; the nearest-neighbour
   form is ours.
6. **Decision.** The mean of the last 32 values; AF begins when it exceeds
   ``ENTER`` and the spread exceeds ``SPREAD``, and ends when the mean
   falls under ``LEAVE`` or the spread under ``SPREAD_LEAVE`` x ``SPREAD``
   (hysteresis). The change is placed
   where the rhythm changed, not where it was decided: 25 beats before the
   deciding beat (the centres of the averaging and irregularity windows plus
   the beat of delay), so AF is *reported* some 20-40 beats after its onset,
   with its estimated onset. The end is placed no later than the middle of the
   last 16-interval window that was irregular on its own (the mean falls slowly
   after a very irregular stretch). AF already there at the first verdict of a
   stream (or after a gap) is placed at the stream's first beat.
7. **Noise.** A beat found in unusable signal (``noisy``: the caller's quality
   verdict) is no evidence of rhythm: the intervals that start or end on it are
   left out of everything (the irregularity windows, the Poincaré plot, the
   median intervals), so a stretch of noise holds the last verdict. Muscle noise
   at 12 dB added to the 22 MIT-BIH records without AF made 1,800 s of false AF
   before this rule and none with it (BENCHMARKS.md).

The thresholds were chosen by cross-validation over records of the Long-Term AF
Database (BENCHMARKS.md gives the folds and per-fold results): ``ENTER`` before
the spread came, ``LEAVE`` and ``SPREAD`` with it; ``SPREAD_LEAVE`` was set
beforehand. RR intervals
alone do not tell atrial flutter with variable conduction from AF: such flutter
is reported as AF.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsp.qrs_front import compiled_kernel

__all__ = ["AfChange", "AfDetector", "AfState"]

WINDOW = 16  # RR intervals in the irregularity window
REF_BEATS = 8  # intervals in the reference median of the premature-beat test
PREMATURE = 0.85  # an interval under 85 % of the reference ...
COMPENSATORY = 1.0  # ... followed by one at least as long as the reference
LAGS = (1, 2, 3)  # bigeminy (2) and trigeminy (3) are regular at their period
MIN_PAIRS = 8  # kept pairs a lag needs to be used
RATE_RR_S = 0.8  # irregularity is scaled by sqrt(RATE_RR_S / median RR)
AVERAGE = 32  # values in the mean that is compared with the thresholds
ENTER = 0.11  # AF begins when the mean irregularity exceeds this ...
LEAVE = 0.04  # ... and ends when it falls under this
POINTS = 32  # Poincaré points: each new one against the previous POINTS - 1
SPREAD_WINDOW = 32  # the spread is the median of the last 32 nearest-point distances
SPREAD = 0.02  # AF begins only when the spread exceeds this (relative) ...
SPREAD_LEAVE = 0.8  # ... and ends when it falls under SPREAD_LEAVE * SPREAD
P_WAVE_WEIGHT = 0.5  # a clear P wave (score 1) halves the irregularity
SPLIT = 0.15  # two intervals within 15 % of the reference together ...
SPLIT_SHORT = 0.5  # ... one of them under half of it: a false detection split one interval
MISSED = 0.15  # an interval within 15 % of twice the reference: a beat not detected


class _Window:
    """The last ``size`` values (None for "no value") with their valid values sorted."""

    __slots__ = ("_sorted", "_values")

    def __init__(self, size: int) -> None:
        self._values: deque[float | None] = deque(maxlen=size)
        self._sorted: list[float] = []

    def push(self, value: float | None) -> None:
        values = self._values
        if len(values) == values.maxlen:
            old = values[0]
            if old is not None:
                del self._sorted[bisect.bisect_left(self._sorted, old)]
        values.append(value)
        if value is not None:
            bisect.insort(self._sorted, value)

    def clear(self) -> None:
        self._values.clear()
        self._sorted.clear()

    @property
    def count(self) -> int:
        """Valid values in the window."""
        return len(self._sorted)

    def median(self) -> float:
        v, n = self._sorted, len(self._sorted)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


@dataclass(frozen=True, slots=True)
class AfState:
    """What the detector measured at its last judged beat.

    Attributes
    ----------
    irregularity
        Mean rate-scaled irregularity of the last 32 beats (dimensionless; AF
        begins above ``ENTER``).
    rate_bpm
        Ventricular rate, median of the last 16 intervals, beats per minute.
    spread
        Poincaré spread: median relative distance of the last 32 successive-RR
        points to their nearest earlier point (dimensionless; NaN before the
        first point).
    """

    irregularity: float
    rate_bpm: float
    spread: float = math.nan

    @property
    def confidence(self) -> float:
        """0.5 at the entry threshold, 1 at twice it."""
        return max(0.0, min(1.0, 0.5 * self.irregularity / ENTER))

    def details(self) -> dict[str, float]:
        out = {"rr_irregularity": round(self.irregularity, 3), "rate_bpm": round(self.rate_bpm, 1)}
        if math.isfinite(self.spread):
            out["rr_spread"] = round(self.spread, 3)
        return out


@dataclass(frozen=True, slots=True)
class AfChange:
    """AF began (``began`` True) or ended at beat ``seq`` (a sample number)."""

    began: bool
    seq: int
    state: AfState


class _PoincareSpread:
    """How new each successive-RR point is: its distance to the nearest of the
    previous ``POINTS - 1`` points; the spread is the median of the last
    ``SPREAD_WINDOW`` distances. Constant memory, a few small in-place vector operations
    per point."""

    __slots__ = ("_at", "_distances", "_kernel", "_new", "_points", "_prev", "_work")

    def __init__(self) -> None:
        self._kernel: Any = compiled_kernel()
        self._points = np.full((2, POINTS - 1), np.inf)  # (previous RR, RR) of earlier points
        self._work = np.empty_like(self._points)
        self._new = np.empty((2, 1))
        self._at = 0
        self._prev: int | None = None
        self._distances = _Window(SPREAD_WINDOW)

    def clear(self) -> None:
        self._points.fill(np.inf)
        self._at = 0
        self._prev = None
        self._distances.clear()

    def push(self, rr: int) -> None:
        """The next interval (samples, > 0)."""
        prev, self._prev = self._prev, rr
        if prev is None:
            return
        points = self._points
        if self._kernel is not None:  # the same arithmetic, compiled
            distance = self._kernel.nearest(points, float(prev), float(rr))
        else:  # Chebyshev distance, each coordinate relative to the new point's
            new, work = self._new, self._work
            new[0, 0], new[1, 0] = prev, rr
            np.subtract(points, new, out=work)
            np.abs(work, out=work)
            np.divide(work, new, out=work)
            distance = float(np.maximum(work[0], work[1]).min())
        if distance != math.inf:
            self._distances.push(distance)
        at = self._at
        points[0, at] = prev
        points[1, at] = rr
        self._at = (at + 1) % (POINTS - 1)

    @property
    def value(self) -> float:
        """The spread (relative), NaN before the first distance."""
        return self._distances.median() if self._distances.count else math.nan


class AfDetector:
    """Streaming AF episodes from beats (see the module docstring).

    Parameters
    ----------
    fs
        Sample rate of the beat sample numbers, Hz.

    Notes
    -----
    Push every beat of a stream with :meth:`push`; call :meth:`start` for the first
    beat after a gap. Memory and time per beat are constant. ``compiled``: run the
    steps in the compiled kernel when it is built (``dsp._qrs_kernel.AfCore``: the same
    state and arithmetic, the same verdicts bit for bit; tests/dsp/test_af.py); False
    keeps them in Python, whose state a benchmark may read.
    """

    def __init__(self, fs: float, compiled: bool = True) -> None:
        self.fs = float(fs)
        kernel: Any = compiled_kernel() if compiled else None
        self._core: Any = None
        if kernel is not None:
            self._core = kernel.AfCore(
                fs=self.fs, window=WINDOW, ref_beats=REF_BEATS, premature=PREMATURE,
                compensatory=COMPENSATORY, min_pairs=MIN_PAIRS, rate_rr_s=RATE_RR_S,
                average=AVERAGE, enter=ENTER, leave=LEAVE, points=POINTS,
                spread_window=SPREAD_WINDOW, spread=SPREAD, spread_leave=SPREAD_LEAVE,
                p_wave_weight=P_WAVE_WEIGHT, split=SPLIT, split_short=SPLIT_SHORT,
                missed=MISSED,
            )  # fmt: skip
        self._beats: deque[int] = deque(maxlen=AVERAGE // 2 + WINDOW // 2 + 2)
        self._ref = _Window(REF_BEATS)  # raw intervals before the one being judged
        # the interval waiting for the next one: (rr, touches V, P-wave score, touches noise)
        self._pending: tuple[int, bool, float | None, bool] | None = None
        self._prev_premature = False
        self._kept: deque[int | None] = deque(maxlen=max(LAGS))  # last judged, None = left out
        self._lag = [_Window(WINDOW) for _ in LAGS]
        self._kept_rr = _Window(WINDOW)
        self._all_rr = _Window(WINDOW)
        self._p = _Window(WINDOW)
        self._spread = _PoincareSpread()
        self._values: deque[float] = deque(maxlen=AVERAGE)
        self._last_value: float | None = None
        self._last_wide = False
        self._last_noisy = False
        self.active = False
        self._onset = self._last_irregular = 0
        self._first_seq: int | None = None
        self.state = AfState(0.0, float("nan"))

    def start(self, seq: int, ventricular: bool = False, noisy: bool = False) -> None:
        """First beat of a stream, or first after a gap: forget the past."""
        self.active = False
        if self._core is not None:
            self._core.start(seq, bool(ventricular), bool(noisy))
            return
        self._beats.clear()
        self._ref.clear()
        self._pending = None
        self._prev_premature = False
        self._kept.clear()
        for w in (*self._lag, self._kept_rr, self._all_rr, self._p):
            w.clear()
        self._spread.clear()
        self._values.clear()
        self._last_value = None
        self.active = False
        self._first_seq = seq  # until the first verdict of this stream
        self._beats.append(seq)
        self._last_wide = bool(ventricular)
        self._last_noisy = bool(noisy)

    def push(
        self,
        seq: int,
        ventricular: bool = False,
        p_wave: float | None = None,
        noisy: bool = False,
    ) -> AfChange | None:
        """The next beat; returns the change of AF state it confirmed, if any.

        Parameters
        ----------
        seq
            Sample number of the beat.
        ventricular
            The beat is ventricular (its intervals are left out).
        p_wave
            Optional P-wave score of the beat, 0..1 (None: not known).
        noisy
            The beat was found in unusable signal (its intervals are left out of
            everything, step 7 of the module docstring).
        """
        if self._core is not None:
            p = math.nan if p_wave is None else p_wave
            judged = self._core.push(seq, bool(ventricular), p, bool(noisy))
            if judged is None:
                return None
            what, at, irregularity, rate, spread = judged
            self.state = state = AfState(irregularity, rate, spread)
            if not what:
                return None
            self.active = what == 1
            return AfChange(self.active, at, state)
        if not self._beats:
            self.start(seq, ventricular, noisy)
            return None
        rr = seq - self._beats[-1]
        self._beats.append(seq)
        touches_v = bool(ventricular) or self._last_wide
        self._last_wide = bool(ventricular)
        touches_noise = noisy or self._last_noisy
        self._last_noisy = noisy
        pending, self._pending = self._pending, (rr, touches_v, p_wave, touches_noise)
        if pending is not None:
            self._judge_interval(pending, rr)
        if not touches_noise:
            self._ref.push(rr)
        return self._decide()

    def _judge_interval(
        self, pending: tuple[int, bool, float | None, bool], next_rr: int
    ) -> None:
        """Keep or leave out the pending interval now that the next one is known, and
        slide it into the windows."""
        rr, touches_v, p_wave, noise = pending
        premature = split = missed = False
        if self._ref.count == REF_BEATS:
            ref = self._ref.median()
            premature = rr < PREMATURE * ref and next_rr >= COMPENSATORY * ref
            split = abs(rr + next_rr - ref) < SPLIT * ref and min(rr, next_rr) < SPLIT_SHORT * ref
            missed = abs(rr - 2 * ref) < MISSED * ref
        keep = not (touches_v or noise or premature or split or missed or self._prev_premature)
        self._prev_premature = premature or split  # the pause, or the split's second part
        value = rr if keep else None
        for lag, window in zip(LAGS, self._lag, strict=True):
            before = self._kept[-lag] if len(self._kept) >= lag else None
            window.push(abs(rr - before) if value is not None and before is not None else None)
        self._kept.append(value)
        self._kept_rr.push(value)
        if not noise:
            self._spread.push(rr)
            self._all_rr.push(rr)
        self._p.push(None if noise else p_wave)
        self._last_value = self._irregularity()

    def _irregularity(self) -> float | None:
        """Rate-scaled irregularity of the current window (None: not judged)."""
        usable = [w.median() for w in self._lag if w.count >= MIN_PAIRS]
        if not usable or not self._kept_rr.count:
            return self._last_value
        typical = self._kept_rr.median()
        median_rr = self._all_rr.median()
        value = min(usable) / typical * math.sqrt(RATE_RR_S * self.fs / median_rr)
        if self._p.count >= MIN_PAIRS:
            value *= 1.0 - P_WAVE_WEIGHT * min(max(self._p.median(), 0.0), 1.0)
        return value

    def _decide(self) -> AfChange | None:
        value = self._last_value
        if value is None:
            return None
        values = self._values
        values.append(value)
        if value > ENTER and len(self._beats) >= WINDOW // 2 + 2:
            # the middle of the last window judged irregular on its own
            self._last_irregular = self._beats[-(WINDOW // 2 + 2)]
        if len(values) < AVERAGE:
            return None
        mean = math.fsum(values) / AVERAGE
        median_rr = self._all_rr.median()
        spread = self._spread.value
        rate = 60.0 * self.fs / median_rr if median_rr else math.nan
        self.state = AfState(mean, rate, spread)
        first, self._first_seq = self._first_seq, None
        if not self.active and mean > ENTER and spread > SPREAD:
            self.active = True
            # AF from the first verdict of a stream: no earlier rhythm to place it after
            self._onset = self._beats[0] if first is None else first
            return AfChange(True, self._onset, self.state)
        if self.active and (mean < LEAVE or spread < SPREAD_LEAVE * SPREAD):
            self.active = False
            end = min(self._beats[0], max(self._last_irregular, self._onset))
            return AfChange(False, end, self.state)
        return None
