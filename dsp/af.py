"""Atrial fibrillation from RR intervals: window statistics and a streaming episode detector.

Pure and causal: :class:`AfDetector` takes beats one at a time (sample numbers
and whether the QRS was wide) and reports where AF began or ended. Its state is
explicit, so the result never depends on how the beat stream was cut into blocks.

**Window statistics** (:func:`window_stats`), over the last 32 RR intervals,
after Dash et al., "Automatic real time detection of atrial fibrillation",
Ann Biomed Eng 37:1701-1709 (2009):

- ectopic beats are left out first: intervals that start or end on a wide
  (likely ventricular) QRS, and premature beats, a short interval (under 85 % of
  the window median) followed by a compensatory long one (over 110 %);
- normalised RMSSD (RMS of successive differences between kept intervals over
  their mean) above 0.1;
- normalised Shannon entropy of the kept intervals' histogram (16 bins over
  mean +/- 50 %) above 0.7;
- a turning-point count consistent with a random series (within two standard
  deviations of its expectation), which keeps bigeminy and trigeminy out.

A window where fewer than half the intervals survive the ectopic filter cannot
be judged (frequent ventricular ectopy, bigeminy): it neither starts nor ends an
episode.

**Episodes** (:class:`AfDetector`): the window is judged at every beat and the
verdicts feed an up/down evidence count: +1 for an irregular window, -1 for a
regular one, kept within 0..64.
An episode begins when the count reaches 16 and ends when it falls back to 0, so
isolated verdicts either way (a run of ectopy inside AF, a noisy stretch in sinus
rhythm) neither split an episode nor start one, and the longer AF has lasted, the
more regular beats (at most 64) it takes to end it.

A verdict is about a whole window, so decisions come late (an onset about 30
beats after it happened, an end up to 64 + 16 beats after); the boundaries are
placed where the windows show the rhythm changed, not at the decision: the onset
at the centre of the window where the count last rose from 0 (a window turns
once about half of it is in the new rhythm), the end at the centre of the last
window at which the count was at its highest. At the start of a stream (or after
a gap), before a regular rhythm has been established, there is no earlier window
to compare with: AF found then starts at the start of its first window.

RR intervals alone do not tell atrial flutter with variable conduction from AF:
such flutter is reported as AF.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AfChange", "AfDetector", "AfStats", "window_stats"]

WINDOW = 32  # RR intervals per window
ENTER = 16  # net irregular verdicts (one per beat) that start an episode
EVIDENCE_MAX = 64  # the count saturates here: at most 64 regular verdicts end an episode
PREMATURE = 0.85  # an RR under 85 % of the window median followed by one over 110 %
COMPENSATORY = 1.10
NRMSSD = 0.10
ENTROPY = 0.70
BINS = 16


@dataclass(frozen=True, slots=True)
class AfStats:
    """Irregularity statistics of one window of RR intervals."""

    nrmssd: float
    entropy: float
    turning_points: int
    irregular: bool  # all three tests say "random, irregular intervals"

    @property
    def confidence(self) -> float:
        """Grows with how far RMSSD and entropy exceed their limits (0..1)."""
        c = 0.5 * (self.nrmssd / NRMSSD - 1) + 0.5 * (self.entropy / ENTROPY - 1) + 0.5
        return max(0.0, min(1.0, c))

    def details(self) -> dict[str, float]:
        return {
            "nrmssd": round(self.nrmssd, 3),
            "rr_entropy": round(self.entropy, 3),
            "turning_points": self.turning_points,
        }


@dataclass(frozen=True, slots=True)
class AfChange:
    """AF began (``began`` True) or ended at beat ``seq`` (a sample number)."""

    began: bool
    seq: int
    stats: AfStats


def _shannon_entropy(rr: list[float], mean: float) -> float:
    """Normalised Shannon entropy of the RR histogram: 16 bins over mean RR +/- 50 %."""
    counts = [0] * BINS
    half = 0.5 * mean
    for v in rr:
        b = (v - half) / mean * BINS
        if 0 <= b < BINS:
            counts[int(b)] += 1
    n = len(rr)
    h = 0.0
    for c in counts:
        if c:
            p = c / n
            h -= p * math.log(p)
    return h / math.log(BINS)


def window_stats(rr: Sequence[float], wide: Sequence[bool]) -> AfStats | None:
    """Statistics of one window of RR intervals (any unit); ``wide[i]``: interval i
    starts or ends on a wide QRS. None when too few intervals are left to judge.

    Plain Python on purpose: for 32 intervals, per-call numpy overhead would cost more
    than the arithmetic (this runs at every beat).
    """
    prepared = _prepare(rr, wide)
    if prepared is None:
        return None
    seq, kept, mean, nrmssd = prepared
    ent = _shannon_entropy(kept, mean) if mean > 0 else 0.0
    tp = _turning_points(seq)
    irregular = nrmssd > NRMSSD and ent > ENTROPY and _random_order(tp, len(seq))
    return AfStats(nrmssd, ent, tp, irregular)


def _irregular(rr: Sequence[float], wide: Sequence[bool]) -> bool | None:
    """``window_stats(rr, wide).irregular`` (None when it is None), computing only what
    the verdict needs: most windows are regular and fail the first test."""
    prepared = _prepare(rr, wide)
    if prepared is None:
        return None
    seq, kept, mean, nrmssd = prepared
    if not nrmssd > NRMSSD:
        return False
    if not _random_order(_turning_points(seq), len(seq)):
        return False
    return (_shannon_entropy(kept, mean) if mean > 0 else 0.0) > ENTROPY


def _prepare(
    rr: Sequence[float], wide: Sequence[bool]
) -> tuple[list[float], list[float], float, float] | None:
    """(intervals, those kept, their mean, normalised RMSSD), leaving out wide beats and
    premature-compensatory pairs; None when fewer than half are left."""
    seq = list(rr)  # ints (sample counts) stay ints: the arithmetic below is exact for them
    n = len(seq)
    ordered = sorted(seq)
    mid = n // 2
    med = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    lo, hi = PREMATURE * med, COMPENSATORY * med
    keep = list(map(operator.not_, wide))
    if ordered[0] < lo:  # some interval is short enough to be premature
        for i in range(n - 1):
            if seq[i] < lo and seq[i + 1] > hi:  # a premature beat and its compensatory pause
                keep[i] = keep[i + 1] = False
    kept = list(itertools.compress(seq, keep))
    n_kept = len(kept)
    # successive differences between kept intervals only
    diffs = [(b - a) ** 2 for a, b in itertools.pairwise(seq)]
    sq = list(itertools.compress(diffs, map(operator.and_, keep, keep[1:])))
    if n_kept < n // 2 or n_kept < 2:
        return None
    mean = math.fsum(kept) / n_kept
    nrmssd = math.sqrt(math.fsum(sq) / len(sq)) / mean if mean > 0 and sq else 0.0
    return seq, kept, mean, nrmssd


def _turning_points(seq: list[float]) -> int:
    return sum([(b - a) * (b - c) > 0 for a, b, c in zip(seq, seq[1:], seq[2:], strict=False)])


def _random_order(tp: int, n: int) -> bool:
    """Turning points consistent with a random series: AF's RR series is random;
    bigeminy and trigeminy alternate."""
    mu, sigma = (2 * n - 4) / 3, math.sqrt((16 * n - 29) / 90)
    return abs(tp - mu) < 2 * sigma


class AfDetector:
    """Streaming AF episodes from beats (see the module docstring)."""

    def __init__(self) -> None:
        self._beats: deque[int] = deque(maxlen=WINDOW + 1)
        self._rr: deque[int] = deque(maxlen=WINDOW)
        self._wide: deque[bool] = deque(maxlen=WINDOW)
        self._last_wide = False
        # the window kept sorted, with its count of wide flags, its sum and the sum of
        # its squared successive differences (exact integers): a regular window with no
        # ectopy is judged from these without going through the intervals
        self._sorted: list[int] = []
        self._n_wide = 0
        self._sum = 0
        self._sq_sum = 0
        self._state: bool | None = None  # None: nothing known yet in this stream
        self._evidence = 0  # up/down count of verdicts, 0..EVIDENCE_MAX
        self._regular_run = 0  # consecutive regular verdicts while the state is unknown
        self._onset = 0  # where AF would be placed to have begun
        self._peak = 0  # highest evidence since then
        self._offset = 0  # where it would be placed to have ended

    @property
    def active(self) -> bool:
        """AF is in progress."""
        return bool(self._state)

    def start(self, seq: int, wide: bool = False) -> None:
        """First beat of a stream, or first after a gap: forget the past."""
        self._beats.clear()
        self._rr.clear()
        self._wide.clear()
        self._sorted.clear()
        self._n_wide = self._sum = self._sq_sum = 0
        self._state = None
        self._evidence = 0
        self._regular_run = 0
        self._beats.append(seq)
        self._last_wide = bool(wide)

    def push(self, seq: int, wide: bool = False) -> AfChange | None:
        """The next beat; returns the change of AF state it confirmed, if any."""
        if not self._beats:
            self.start(seq, wide)
            return None
        # an interval that ends on or starts from a wide (ventricular) beat
        self._slide(seq - self._beats[-1], bool(wide) or self._last_wide)
        self._beats.append(seq)
        self._last_wide = bool(wide)
        if len(self._rr) < WINDOW:
            return None
        irregular = self._regular_window_verdict()
        if irregular is None:
            irregular = _irregular(self._rr, self._wide)
        if irregular is None:
            return None  # too much ectopy to judge: nothing changes
        centre = self._beats[WINDOW // 2]
        if irregular:
            if self._evidence == 0:
                # the rise starts here; a stream's first verdict covers its whole window
                self._onset = centre if self._state is not None else self._beats[0]
                self._peak = 0
            self._evidence = min(self._evidence + 1, EVIDENCE_MAX)
            if self._evidence >= self._peak:
                # the evidence is at its highest since the rise began: AF lasts at least
                # to this window's centre
                self._peak, self._offset = self._evidence, centre
            self._regular_run = 0
        else:
            self._evidence = max(self._evidence - 1, 0)
            self._regular_run += 1
        if not self._state and self._evidence >= ENTER:
            self._state = True
            return AfChange(True, self._onset, self._stats())
        if self._state and self._evidence == 0:
            self._state = False
            return AfChange(False, max(self._offset, self._onset), self._stats())
        if self._state is None and self._regular_run >= ENTER:
            self._state = False  # regular rhythm established; later onsets sit at a centre
        return None

    def _slide(self, rr: int, wide: bool) -> None:
        """Append an interval (samples) to the window, dropping its oldest when full."""
        window, ordered = self._rr, self._sorted
        if len(window) == WINDOW:
            old = window[0]
            self._sq_sum -= (window[1] - old) ** 2
            self._sum -= old
            self._n_wide -= self._wide[0]
            del ordered[bisect.bisect_left(ordered, old)]
        if window:
            self._sq_sum += (rr - window[-1]) ** 2
        window.append(rr)
        self._wide.append(wide)
        self._sum += rr
        self._n_wide += wide
        bisect.insort(ordered, rr)

    def _regular_window_verdict(self) -> bool | None:
        """``_irregular`` of the full window when nothing is left out of it (no wide
        flag, no interval short enough to be premature) and its normalised RMSSD is
        under the limit: False. None otherwise (the full computation decides). The
        same arithmetic on exact integer sums, so the same floats."""
        if self._n_wide:
            return None
        ordered, n = self._sorted, WINDOW
        mid = n // 2
        med = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        if ordered[0] < PREMATURE * med:
            return None
        mean = float(self._sum) / n
        nrmssd = math.sqrt(float(self._sq_sum) / (n - 1)) / mean if mean > 0 else 0.0
        return False if not nrmssd > NRMSSD else None

    def _stats(self) -> AfStats:
        stats = window_stats(self._rr, self._wide)
        assert stats is not None  # the same window just gave a verdict
        return stats
