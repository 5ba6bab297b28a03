"""The per-beat rules behind :class:`dsp.episodes.EpisodeTracker`, one small class each.

Each rule sees every beat (sample number, interval in samples or None at a stream's
start, class label, P-wave score or None, whether it fell in unusable signal) and
returns :class:`Verdict` s: an episode of its kind starts or ends. Only the AF rule
uses the last: a beat in noise is no evidence of the rhythm's irregularity. Rules keep
only a few beats of state; ``reset()`` forgets the stream (a gap).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dsp.af import AfDetector

if TYPE_CHECKING:
    from dsp.episodes import BeatCounts

__all__ = ["AfRule", "EctopyRule", "PauseRule", "RateRule", "Verdict"]

_RATE_BEATS = 4  # consecutive beats past a rate limit that start or end an episode
_RVR_BEATS = 8
_RVR_HYSTERESIS_BPM = 10.0
_PATTERN_CYCLES = 4  # bigeminy / trigeminy: cycles that start an episode
_ECTOPIC = frozenset("VS")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Episode ``kind`` starts at ``start`` or ends at ``end`` (sample numbers); a
    ``start_only`` verdict (a pause) carries both."""

    kind: str
    start: int | None = None
    end: int | None = None
    confidence: float = 1.0
    details: dict[str, float] = field(default_factory=dict)
    start_only: bool = False


class PauseRule:
    """An interval of at least ``pause_s`` seconds."""

    def __init__(self, fs: float, pause_s: float) -> None:
        self.fs = fs
        self._min = pause_s * fs

    def reset(self) -> None:
        pass

    def beat(
        self, s: int, rr: int | None, label: str, p_wave: float | None = None, noisy: bool = False
    ) -> list[Verdict]:
        if rr is None or rr < self._min:
            return []
        bpm = round(60.0 * self.fs / rr, 1)
        details = {"duration_s": round(rr / self.fs, 3), "min_rate_bpm": bpm, "max_rate_bpm": bpm}
        return [Verdict("pause", s - rr, s, 1.0, details, start_only=True)]


class RateRule:
    """Bradycardia / tachycardia: the median rate of the last 8 intervals past a limit
    for 4 consecutive beats; back inside for 4 beats ends it."""

    def __init__(self, fs: float, brady_bpm: float, tachy_bpm: float) -> None:
        self.fs = fs
        self.limits = {"brady": brady_bpm, "tachy": tachy_bpm}
        self._rr: deque[int] = deque(maxlen=8)
        self._beats: deque[int] = deque(maxlen=_RATE_BEATS)
        self._streak = dict.fromkeys(self.limits, 0)
        self._open = dict.fromkeys(self.limits, False)

    def reset(self) -> None:
        self._rr.clear()
        self._beats.clear()
        self._streak = dict.fromkeys(self.limits, 0)
        self._open = dict.fromkeys(self.limits, False)

    def beat(
        self, s: int, rr: int | None, label: str, p_wave: float | None = None, noisy: bool = False
    ) -> list[Verdict]:
        out: list[Verdict] = []
        if rr is not None:
            self._rr.append(rr)
        self._beats.append(s)
        if len(self._rr) < 4:
            return out
        ordered = sorted(self._rr)
        k = len(ordered)
        median = ordered[k // 2] if k % 2 else 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])
        bpm = 60.0 * self.fs / median
        past = {"brady": bpm < self.limits["brady"], "tachy": bpm > self.limits["tachy"]}
        for kind, inside in past.items():
            self._streak[kind] = self._streak[kind] + 1 if inside != self._open[kind] else 0
            if self._streak[kind] >= _RATE_BEATS:
                self._streak[kind] = 0
                self._open[kind] = inside
                first = self._beats[0]
                if inside:
                    rate = {"heart_rate_bpm": round(bpm, 1)}
                    out.append(Verdict(kind, start=first, details=rate))
                else:
                    out.append(Verdict(kind, end=first))
        return out


class AfRule:
    """AF from :class:`~dsp.af.AfDetector` (the intervals of V, S and Q beats left out: the
    classifier calls beats S only in a regular rhythm, so AF keeps its beats); AF with
    a rapid ventricular response once the AF rate (median of 16 intervals) has been
    over ``rvr_bpm`` for 8 beats, until it has been under ``rvr_bpm`` - 10 for 8."""

    def __init__(self, fs: float, rvr_bpm: float) -> None:
        self.fs = fs
        self.rvr_bpm = rvr_bpm
        self._af = AfDetector(fs)
        self._beats: deque[int] = deque(maxlen=_RVR_BEATS)
        self._rvr_streak = 0
        self._rvr = False

    def reset(self) -> None:
        self._af = AfDetector(self.fs)
        self._beats.clear()
        self._rvr_streak = 0
        self._rvr = False

    def beat(
        self, s: int, rr: int | None, label: str, p_wave: float | None = None, noisy: bool = False
    ) -> list[Verdict]:
        out: list[Verdict] = []
        ectopic = label != "N"  # V, S and Q beats' intervals are left out
        self._beats.append(s)
        if rr is None:
            self._af.start(s, ectopic, noisy)
            return out
        change = self._af.push(s, ectopic, p_wave, noisy)
        if change is not None:
            st = change.state
            details = {**st.details(), "mean_rate_bpm": round(st.rate_bpm, 1)}
            if change.began:
                out.append(Verdict("af", change.seq, None, st.confidence, details))
            else:
                if self._rvr:
                    self._rvr, self._rvr_streak = False, 0
                    out.append(Verdict("af_rvr", end=change.seq))
                out.append(Verdict("af", end=change.seq))
        self._judge_rvr(out)
        return out

    def _judge_rvr(self, out: list[Verdict]) -> None:
        # 10 bpm of hysteresis: a rate hovering at the limit is one episode, not many
        limit = self.rvr_bpm - (_RVR_HYSTERESIS_BPM if self._rvr else 0.0)
        fast = self._af.active and self._af.state.rate_bpm > limit
        self._rvr_streak = self._rvr_streak + 1 if fast != self._rvr else 0
        if self._rvr_streak < _RVR_BEATS:
            return
        self._rvr, self._rvr_streak = fast, 0
        if fast:
            rate = {"rate_bpm": round(self._af.state.rate_bpm, 1)}
            out.append(Verdict("af_rvr", start=self._beats[0], details=rate))
        else:
            out.append(Verdict("af_rvr", end=self._beats[0]))


class EctopyRule:
    """Runs of V and S beats (couplets, triplets, VT, SVT) and bigeminy / trigeminy."""

    def __init__(
        self, fs: float, vt_bpm: float, svt_bpm: float, vt_beats: int, counts: BeatCounts
    ) -> None:
        self.fs = fs
        self.vt_bpm, self.svt_bpm, self.vt_beats = vt_bpm, svt_bpm, vt_beats
        self.counts = counts
        self._labels: deque[str] = deque(maxlen=3 * _PATTERN_CYCLES)
        self._seqs: deque[int] = deque(maxlen=3 * _PATTERN_CYCLES)
        self._runs = {"V": _Run(), "S": _Run()}
        self._svt_open = False
        self._pattern_open = {"bigeminy": False, "trigeminy": False}
        self._last: int | None = None

    def reset(self) -> None:
        self._labels.clear()
        self._seqs.clear()
        self._runs = {"V": _Run(), "S": _Run()}
        self._svt_open = False
        self._pattern_open = {"bigeminy": False, "trigeminy": False}
        self._last = None

    def beat(
        self, s: int, rr: int | None, label: str, p_wave: float | None = None, noisy: bool = False
    ) -> list[Verdict]:
        out: list[Verdict] = []
        self._labels.append(label)
        self._seqs.append(s)
        self._v_run(s, rr, label, out)
        self._s_run(s, rr, label, out)
        for kind, period in (("bigeminy", 2), ("trigeminy", 3)):
            self._pattern(kind, period, s, out)
        self._last = s
        return out

    def _v_run(self, s: int, rr: int | None, label: str, out: list[Verdict]) -> None:
        run = self._runs["V"]
        if label == "V" and rr is not None:
            run.add(s, rr)
            bpm = run.bpm(self.fs)
            if run.n == self.vt_beats and bpm > self.vt_bpm:
                run.open = True
                details = {"min_rate_bpm": round(bpm, 1), "max_rate_bpm": round(bpm, 1)}
                out.append(Verdict("vt", start=run.first, details=details))
            return
        if run.n == 2:
            self.counts.couplets += 1
        elif run.n == 3:
            self.counts.triplets += 1
        if run.n >= 3:
            self.counts.v_runs += 1
        if run.open:
            out.append(Verdict("vt", end=run.last, details=run.facts(self.fs)))
        run.clear()
        if label == "V":  # the first V of a stream: a run of one
            run.add(s, None)

    def _s_run(self, s: int, rr: int | None, label: str, out: list[Verdict]) -> None:
        run = self._runs["S"]
        fast = rr is not None and 60.0 * self.fs / rr > self.svt_bpm
        if self._svt_open:
            if label in ("N", "S") and fast:
                run.add(s, rr)
                return
            self._svt_open = False
            out.append(Verdict("svt", end=run.last, details=run.facts(self.fs)))
            run.clear()
        if label == "S" and rr is not None:
            run.add(s, rr)
            if run.n == 3 and run.bpm(self.fs) > self.svt_bpm:
                self._svt_open = True
                self.counts.s_runs += 1
                out.append(Verdict("svt", start=run.first, details=run.facts(self.fs)))
            return
        if run.n >= 3:
            self.counts.s_runs += 1
        run.clear()

    def _pattern(self, kind: str, period: int, s: int, out: list[Verdict]) -> None:
        labels = list(self._labels)
        if self._pattern_open[kind]:
            if not _repeats(labels[-2 * period :], period):
                self._pattern_open[kind] = False
                out.append(Verdict(kind, end=self._last if self._last is not None else s))
            return
        window = labels[-_PATTERN_CYCLES * period :]
        if len(window) == _PATTERN_CYCLES * period and _repeats(window, period):
            self._pattern_open[kind] = True
            v = sum(x == "V" for x in window) / _PATTERN_CYCLES
            start = self._seqs[-len(window)]
            out.append(Verdict(kind, start=start, details={"ventricular_share": round(v, 2)}))


def _repeats(labels: list[str], period: int) -> bool:
    """One ectopic (V or S) beat in every ``period`` beats, at the same place, the others
    N: bigeminy (2), trigeminy (3), whatever beat the window starts on."""
    if len(labels) < period or len(labels) % period:
        return False
    text = "".join(labels)  # one ectopic beat per period is needed: none in sinus rhythm
    if text.count("V") + text.count("S") != len(labels) // period:
        return False
    for offset in range(period):
        if all(
            (x in _ECTOPIC) == (i % period == offset) and x in "NVS" for i, x in enumerate(labels)
        ):
            return True
    return False


@dataclass(slots=True)
class _Run:
    """Consecutive beats of one class: count, first and last, summed intervals."""

    n: int = 0
    first: int = 0
    last: int = 0
    rr_sum: int = 0
    rr_n: int = 0
    open: bool = False

    def add(self, s: int, rr: int | None) -> None:
        if self.n == 0:
            self.first = s
        elif rr is not None:
            self.rr_sum += rr
            self.rr_n += 1
        self.n += 1
        self.last = s

    def bpm(self, fs: float) -> float:
        return 60.0 * fs * self.rr_n / self.rr_sum if self.rr_sum else 0.0

    def facts(self, fs: float) -> dict[str, float]:
        return {"beats": self.n, "rate_bpm": round(self.bpm(fs), 1)}

    def clear(self) -> None:
        self.n = self.first = self.last = self.rr_sum = self.rr_n = 0
        self.open = False
