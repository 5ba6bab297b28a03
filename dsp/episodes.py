"""Rhythm episodes from classified beats, as typed changes: started, updated, ended.

Pure and streaming. :class:`EpisodeTracker` takes the beats a
:class:`~dsp.beat_class.BeatClassifier` labelled (or plain detector beats, or beats
read from an annotation file) and, optionally, the signal-quality windows of the
same stretch, and returns what changed::

    tracker = EpisodeTracker(fs, RhythmLimits(brady_bpm=40, tachy_bpm=150, pause_s=3.0))
    for block in blocks:
        beats = qrs.process(block)
        classes = classifier.process(block, beats)
        windows = quality.process(block)
        for change in tracker.process(classes, windows):
            ...  # EpisodeStarted / EpisodeUpdated / EpisodeEnded
    tracker.finish(end_seq)

Kinds (:data:`KINDS`) and their rules:

- ``af``: :class:`~dsp.af.AfDetector` (RR irregularity, V beats left out); details
  give the mean ventricular rate; ``af_rvr``: inside AF, the ventricular rate
  (median of the last 16 intervals) over ``af_rvr_bpm`` (110 bpm) for 8 beats;
- ``vt``: at least ``vt_beats`` (3) consecutive V beats faster than ``vt_bpm``
  (100 bpm); couplets (2 V) and triplets (3 V) are counted (:class:`BeatCounts`);
- ``svt``: at least 3 consecutive S beats faster than ``svt_bpm`` (100 bpm), lasting
  while the rhythm stays that fast without V beats (not during AF);
- ``bigeminy`` / ``trigeminy``: a normal beat then an ectopic (V or S) one, or two
  normal beats then an ectopic one, repeated 4 times; lasting while the pattern
  holds;
- ``pause``: an interval of at least ``pause_s`` (3 s); started and ended at once,
  when the beat that ends it arrives. The signal it spans is judged too: seconds
  with no signal at all (every lead flat or saturated, :attr:`QualityWindow.lost
  <dsp.quality.QualityWindow.lost>`) or while the device reported its electrodes off
  (:meth:`EpisodeTracker.contact`) are given in its details (``signal_lost_s``,
  ``lead_off_s``) and mark it as found in unusable signal: beats may have been
  there, unseen;
- ``brady`` / ``tachy``: the median rate of the last 8 intervals below
  ``brady_bpm`` / above ``tachy_bpm`` for 4 consecutive beats; left after 4 beats
  back inside.

Every change carries the episode's extremes (lowest and highest rate, bpm, each
the median of 4 intervals), a confidence (0..1), details, and whether it was found
in unusable signal: more than half of its beats fell in quality windows with no
usable lead (:class:`~dsp.quality.QualityWindow`). An open episode is reported
again (:class:`EpisodeUpdated`) when its rate extremes moved by 10 bpm.

Bounded: the tracker keeps only open episodes, the last 8 intervals and labels, and
the last 5 minutes of quality windows (and, with ``quality=True``, the beats of the
second whose window is not judged yet). Decisions depend only on the beats and the
quality windows, never on how the stream was cut. Beats in unusable signal do not count
towards AF (:mod:`dsp.af`, step 7). Measurements for monitoring staff, not a diagnosis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dsp.beat_class import ClassifiedBeats
from dsp.qrs import Beats
from dsp.quality import QualityWindow
from dsp.rhythm_rules import AfRule, EctopyRule, PauseRule, RateRule, Verdict

__all__ = [
    "KINDS",
    "TRIGGER_REASON",
    "BeatCounts",
    "EpisodeChange",
    "EpisodeEnded",
    "EpisodeStarted",
    "EpisodeTracker",
    "EpisodeUpdated",
    "RhythmLimits",
]

KINDS = ("af", "af_rvr", "vt", "svt", "pause", "brady", "tachy", "bigeminy", "trigeminy")
#: The auto-trigger reason an episode start raises (kinds not listed raise none).
TRIGGER_REASON = MappingProxyType(
    {
        "pause": "pause",
        "vt": "vt",
        "af": "af_onset",
        "af_rvr": "af_rvr",
        "brady": "brady",
        "tachy": "tachy",
        "svt": "svt",
    }
)
_QUALITY_KEEP_S = 300.0
_HOLD_MAX_S = 60.0  # beats wait at most this long behind the newest for their quality
_UPDATE_BPM = 10.0


@dataclass(frozen=True, slots=True)
class EpisodeChange:
    """An episode as of a change; the subclass says which change.

    Attributes
    ----------
    id
        Number of the episode in this tracker (the same in its start, updates, end).
    kind
        One of :data:`KINDS`.
    start_seq, end_seq
        Sample numbers; ``end_seq`` is None while the episode lasts.
    min_rate_bpm, max_rate_bpm
        Extremes of the rate during the episode so far, bpm.
    confidence
        0..1.
    details
        Measurements (read-only mapping of names to numbers).
    in_unusable_signal
        More than half of its beats fell in windows of unusable signal.
    """

    id: int
    kind: str
    start_seq: int
    end_seq: int | None
    min_rate_bpm: float
    max_rate_bpm: float
    confidence: float
    details: Mapping[str, float]
    in_unusable_signal: bool

    @property
    def trigger_reason(self) -> str | None:
        """The auto-trigger reason of this kind (``trigger.reason``), if any."""
        return TRIGGER_REASON.get(self.kind)


@dataclass(frozen=True, slots=True)
class EpisodeStarted(EpisodeChange):
    """An episode began (``end_seq`` None, except for a pause: known once it ended)."""


@dataclass(frozen=True, slots=True)
class EpisodeUpdated(EpisodeChange):
    """An open episode's extremes moved."""


@dataclass(frozen=True, slots=True)
class EpisodeEnded(EpisodeChange):
    """An episode ended at ``end_seq``."""


@dataclass(slots=True)
class BeatCounts:
    """Counts for reports, since the tracker started."""

    beats: int = 0
    ventricular: int = 0  # V beats
    supraventricular: int = 0  # S beats
    unclassified: int = 0  # Q beats
    couplets: int = 0  # 2 consecutive V
    triplets: int = 0  # 3 consecutive V
    v_runs: int = 0  # 3 or more consecutive V (triplets included)
    s_runs: int = 0  # 3 or more consecutive S
    episodes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


@dataclass(slots=True)
class _Open:
    id: int
    kind: str
    start_seq: int
    confidence: float
    details: dict[str, float]
    lo: float
    hi: float
    reported: tuple[float, float]
    beats: int = 0
    unusable: int = 0

    def change(self, cls: type[EpisodeChange], end: int | None) -> EpisodeChange:
        return cls(
            self.id, self.kind, self.start_seq, end, round(self.lo, 1), round(self.hi, 1),
            round(self.confidence, 3), MappingProxyType(dict(self.details)),
            self.beats > 0 and 2 * self.unusable > self.beats,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RhythmLimits:
    """What makes an episode (see the module docstring).

    Attributes
    ----------
    brady_bpm, tachy_bpm
        Rate limits, beats per minute.
    pause_s
        Shortest interval reported as a pause, seconds.
    af_rvr_bpm, vt_bpm, svt_bpm
        Rates above which AF has a rapid ventricular response, a V run is VT, an S run
        is SVT, bpm.
    vt_beats
        Consecutive V beats that make a VT episode.
    """

    brady_bpm: float = 40.0
    tachy_bpm: float = 150.0
    pause_s: float = 3.0
    af_rvr_bpm: float = 110.0
    vt_bpm: float = 100.0
    svt_bpm: float = 100.0
    vt_beats: int = 3


class EpisodeTracker:
    """Streaming episodes for one device (see the module docstring): beats sampled at
    ``fs`` (Hz; positions are sample numbers) judged against ``limits``.

    ``quality``: the caller passes every quality window of the stream as it is judged
    (:class:`~dsp.quality.QualityTracker`, as the gateway and ``analyze`` do). Each beat
    then waits (under a second, usually) until the window holding it is known, so that
    whether it fell in unusable signal — for AF, whether it counts at all — never depends
    on how the stream was cut into blocks. Without it (beats only, e.g. from an
    annotation file) beats are judged as they come, in usable signal unless a window
    passed so far says otherwise."""

    def __init__(
        self, fs: float, limits: RhythmLimits = RhythmLimits(), quality: bool = False
    ) -> None:
        self.limits = limits
        self.fs = float(fs)
        self.quality = quality
        self.counts = BeatCounts()
        self._rules = (
            PauseRule(fs, limits.pause_s),
            RateRule(fs, limits.brady_bpm, limits.tachy_bpm),
            AfRule(fs, limits.af_rvr_bpm),
            EctopyRule(fs, limits.vt_bpm, limits.svt_bpm, limits.vt_beats, self.counts),
        )
        self._open: dict[str, _Open] = {}
        self._next_id = 1
        self._rate: deque[float] = deque(maxlen=4)  # for the extremes
        self._last: int | None = None
        self._bad: deque[tuple[int, int]] = deque()  # unusable windows, recent
        self._lost: deque[tuple[int, int]] = deque()  # windows with no signal, recent
        self._lead_off: deque[tuple[int, int | None]] = deque()  # (first, end: None if on)
        self._judged_to = 0  # one past the last sample the quality windows covered
        # beats waiting for the quality window that holds them (quality=True)
        self._held: deque[tuple[int, float, str, float | None, tuple]] = deque()

    @property
    def current(self) -> dict[str, EpisodeChange]:
        """Episodes in progress, by kind (as of their last change)."""
        return {k: o.change(EpisodeUpdated, None) for k, o in self._open.items()}

    def process(
        self, beats: ClassifiedBeats | Beats, quality: Iterable[QualityWindow] = ()
    ) -> list[EpisodeChange]:
        """Take new beats (in order) and the quality windows completed meanwhile; return
        the changes. Plain detector beats (no classes) give the rate, pause and AF
        kinds only (their wide beats' intervals are left out of AF)."""
        self._note_quality(quality)
        # the detector's width flag is no beat classifier: without classes, no ectopy kinds
        rules = self._rules if isinstance(beats, ClassifiedBeats) else self._rules[:3]
        if isinstance(beats, Beats):
            beats = ClassifiedBeats.from_beats(beats)
        out: list[EpisodeChange] = []
        seqs, rrs = beats.seq.tolist(), beats.rr_s.tolist()
        p_waves = beats.p_wave.tolist() if beats.p_wave is not None else [None] * len(seqs)
        for s, rr_s, label, p in zip(seqs, rrs, beats.labels, p_waves, strict=True):
            self._held.append((int(s), rr_s, label, None if p != p else p, rules))
        self._release(out, final=not self.quality)
        return out

    def _release(self, out: list[EpisodeChange], final: bool) -> None:
        """Judge the held beats whose quality window is known (all when ``final``, or
        when the oldest is more than ``_HOLD_MAX_S`` behind the newest: quality that
        never comes does not hold the rhythm up)."""
        held = self._held
        limit = self._judged_to
        if held and held[-1][0] - held[0][0] > _HOLD_MAX_S * self.fs:
            limit = max(limit, held[-1][0] - int(_HOLD_MAX_S * self.fs))
        while held and (final or held[0][0] < limit):
            s, rr_s, label, p, rules = held.popleft()
            self._beat(s, rr_s, label, p, rules, out)

    def contact(self, seq: int, in_contact: bool) -> None:
        """The device reports its electrodes' skin contact from sample ``seq`` on: lost
        (False) or back (True). A pause over time without contact is flagged (see the
        module docstring); call it before passing the beats after ``seq``."""
        spans = self._lead_off
        open_ = bool(spans) and spans[-1][1] is None
        if not in_contact and not open_:
            spans.append((seq, None))
        elif in_contact and open_:
            first = spans.pop()[0]
            spans.append((first, max(seq, first)))

    def finish(self, end_seq: int) -> list[EpisodeChange]:
        """End of the recording (or a gap): judge the beats still held, close every open
        episode at ``end_seq``."""
        out: list[EpisodeChange] = []
        self._release(out, final=True)
        return out + self._close(end_seq)

    def _close(self, end_seq: int) -> list[EpisodeChange]:
        """Close every open episode at ``end_seq`` and forget the stream (a gap)."""
        out: list[EpisodeChange] = []
        for kind in list(self._open):
            self._end(kind, end_seq, out)
        for rule in self._rules:
            rule.reset()
        self._rate.clear()
        self._last = None
        return out

    # --- per beat ---------------------------------------------------------------------
    def _beat(
        self,
        s: int,
        rr_s: float,
        label: str,
        p_wave: float | None,
        rules: tuple,
        out: list[EpisodeChange],
    ) -> None:
        if self._last is None or rr_s != rr_s:  # first beat of a stream, or after a gap
            if self._last is not None:
                out += self._close(self._last)
            rr = None
        else:
            rr = s - self._last
            self._rate.append(rr)
        self._last = s
        self._count(label)
        bad = self._unusable(s)
        bpm = self._bpm()
        for o in self._open.values():
            o.beats += 1
            o.unusable += bad
            if bpm == bpm:
                o.lo, o.hi = min(o.lo, bpm), max(o.hi, bpm)
        for rule in rules:
            for verdict in rule.beat(s, rr, label, p_wave, bad):
                self._apply(verdict, bpm, bad, out)
        for o in self._open.values():
            lo, hi = o.reported
            if abs(o.lo - lo) >= _UPDATE_BPM or abs(o.hi - hi) >= _UPDATE_BPM:
                o.reported = (o.lo, o.hi)
                out.append(o.change(EpisodeUpdated, None))

    def _apply(self, v: Verdict, bpm: float, bad: bool, out: list[EpisodeChange]) -> None:
        if v.start is not None and v.kind not in self._open:
            lo = v.details.get("min_rate_bpm", bpm)
            hi = v.details.get("max_rate_bpm", bpm)
            details = dict(v.details)
            if v.start_only and v.end is not None:  # a pause: what did the silence hold?
                bad = self._judge_span(v.start, v.end, details) or bad
            o = _Open(self._next_id, v.kind, v.start, v.confidence, details, lo, hi, (lo, hi))
            o.beats, o.unusable = 1, int(bad)
            self._next_id += 1
            self._open[v.kind] = o
            self.counts.episodes[v.kind] += 1
            out.append(o.change(EpisodeStarted, v.end if v.start_only else None))
            if v.start_only:  # a pause: known only once over
                self._open.pop(v.kind)
                out.append(o.change(EpisodeEnded, v.end))
            return
        if v.end is not None and v.kind in self._open:
            self._open[v.kind].details.update(v.details)
            self._end(v.kind, v.end, out)

    def _end(self, kind: str, end: int, out: list[EpisodeChange]) -> None:
        o = self._open.pop(kind)
        out.append(o.change(EpisodeEnded, max(end, o.start_seq)))

    def _count(self, label: str) -> None:
        c = self.counts
        c.beats += 1
        if label == "V":
            c.ventricular += 1
        elif label == "S":
            c.supraventricular += 1
        elif label == "Q":
            c.unclassified += 1

    def _bpm(self) -> float:
        """Median rate of the last 4 intervals, bpm (NaN before there are 4)."""
        if len(self._rate) < 4:
            return float("nan")
        _, b, c, _ = sorted(self._rate)
        return 120.0 * self.fs / (b + c)

    # --- signal quality ------------------------------------------------------------------
    def _note_quality(self, windows: Iterable[QualityWindow]) -> None:
        for w in windows:
            self._judged_to = max(self._judged_to, w.end_seq)
            if not w.usable:
                self._bad.append((w.first_seq, w.end_seq))
            if w.lost:
                self._lost.append((w.first_seq, w.end_seq))
        if self._last is not None:
            horizon = self._last - int(_QUALITY_KEEP_S * self.fs)
            for spans in (self._bad, self._lost, self._lead_off):
                while spans and spans[0][1] is not None and spans[0][1] < horizon:
                    spans.popleft()

    def _judge_span(self, first: int, end: int, details: dict[str, float]) -> bool:
        """Seconds of ``[first, end)`` with no signal or no electrode contact, into
        ``details``; True when there were any."""
        found = False
        for name, spans in (("signal_lost_s", self._lost), ("lead_off_s", self._lead_off)):
            n = sum(max(0, min(end, end if b is None else b) - max(first, a)) for a, b in spans)
            if n:
                details[name] = round(n / self.fs, 1)
                found = True
        return found

    def _unusable(self, s: int) -> bool:
        return any(a <= s < b for a, b in self._bad)
