"""Rhythm episodes from the beat stream: bradycardia, tachycardia, pause, atrial fibrillation.

Pure and streaming: :meth:`RhythmTracker.process` takes the beats a
:class:`~dsp.qrs.QrsDetector` reported and returns the episodes that ended or
began. Decisions depend only on the beats (sample numbers), never on how the
stream was cut into blocks, so offline analysis gives what streaming gives.

- **Rate** episodes use the median heart rate of the last 8 RR intervals:
  bradycardia below ``brady_bpm``, tachycardia above ``tachy_bpm``, entered after
  4 consecutive beats past the limit and left after 4 beats back inside it.
- **Pause**: an RR interval of at least ``pause_s`` seconds (default 3 s).
- **Atrial fibrillation**: RR irregularity over a sliding window of 32 intervals
  (normalised RMSSD above 0.1, Shannon entropy of the RR histogram above 0.7 and a
  turning-point count consistent with a random series, after leaving out ectopic
  beats; after Dash et al., Ann Biomed Eng 2009), judged at every beat. The
  verdicts feed an up/down evidence count (0..64): an episode begins when it
  reaches 16 and ends when it is back to 0. Boundaries are placed where the
  windows show the rhythm changed, not when the decision is made: an episode is
  reported some 30 beats after it began, with its estimated true start. Details in
  :mod:`dsp.af`. Confidence grows with how far both statistics exceed their limits.

These are measurements for the monitoring staff to read, labelled as such;
the gateway does not diagnose.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from dsp.af import AfDetector
from dsp.qrs import Beats

__all__ = ["RhythmEpisode", "RhythmTracker"]

_RATE_BEATS = 4


@dataclass(slots=True)
class RhythmEpisode:
    """One episode; ``end_seq`` is None while it lasts."""

    kind: str  # "brady", "tachy", "pause", "af"
    start_seq: int
    end_seq: int | None = None
    confidence: float = 1.0
    details: dict[str, float] = field(default_factory=dict)


class RhythmTracker:
    """Streaming rhythm episodes for one device.

    Parameters
    ----------
    fs
        Sample rate, Hz (beat positions are sample numbers).
    brady_bpm, tachy_bpm
        Rate limits, beats per minute.
    pause_s
        Shortest RR interval reported as a pause, seconds.
    """

    def __init__(
        self,
        fs: float,
        *,
        brady_bpm: float = 40.0,
        tachy_bpm: float = 150.0,
        pause_s: float = 3.0,
    ) -> None:
        self.fs = fs
        self.brady_bpm = brady_bpm
        self.tachy_bpm = tachy_bpm
        self.pause_s = pause_s
        self._last: int | None = None
        self._rate_rr: deque[int] = deque(maxlen=8)
        self._beats: deque[int] = deque(maxlen=_RATE_BEATS)
        self._af = AfDetector(fs)
        self._open: dict[str, RhythmEpisode] = {}
        self._streak: dict[str, int] = {"brady": 0, "tachy": 0}
        self._back: dict[str, int] = {"brady": 0, "tachy": 0}
        self.episodes: list[RhythmEpisode] = []

    @property
    def current(self) -> dict[str, RhythmEpisode]:
        """Episodes in progress, by kind."""
        return dict(self._open)

    def process(self, beats: Beats) -> list[RhythmEpisode]:
        """Take new beats (in order); return episodes that began or ended with them."""
        changed: list[RhythmEpisode] = []
        if not len(beats):
            return changed
        wide = beats.ventricular.tolist() if beats.ventricular is not None else [False] * len(beats)
        for s, rr_s, v in zip(beats.seq.tolist(), beats.rr_s.tolist(), wide, strict=True):
            if self._last is None or math.isnan(rr_s):
                # first beat, or first after a gap in the stream: no interval to judge
                self._rate_rr.clear()
                self._beats.clear()
                self._close_all(s, changed)
                self._af.start(s, bool(v))
            else:
                rr = s - self._last
                self._rate_rr.append(rr)
                if rr >= self.pause_s * self.fs:
                    ep = RhythmEpisode(
                        "pause", self._last, s, 1.0, {"duration_s": round(rr / self.fs, 3)}
                    )
                    self.episodes.append(ep)
                    changed.append(ep)
                self._judge_rate(s, changed)
                self._judge_af(s, bool(v), changed)
            self._beats.append(s)
            self._last = s
        return changed

    def finish(self, end_seq: int) -> list[RhythmEpisode]:
        """End of the recording: close what is open at ``end_seq``."""
        changed: list[RhythmEpisode] = []
        self._close_all(end_seq, changed)
        return changed

    # --- decisions --------------------------------------------------------------------
    def _close_all(self, s: int, changed: list[RhythmEpisode]) -> None:
        for kind in list(self._open):
            self._close(kind, s, changed)
        for k in self._streak:
            self._streak[k] = 0
            self._back[k] = 0

    def _open_ep(self, kind: str, start: int, conf: float, det: dict, out: list) -> None:
        ep = RhythmEpisode(kind, start, None, conf, det)
        self._open[kind] = ep
        self.episodes.append(ep)
        out.append(ep)

    def _close(self, kind: str, s: int, out: list[RhythmEpisode]) -> None:
        ep = self._open.pop(kind, None)
        if ep is not None:
            ep.end_seq = s
            out.append(ep)

    def _episode_rule(
        self, kind: str, inside: bool, s: int, need: int, bpm: float, out: list
    ) -> None:
        """Enter after ``need`` consecutive beats inside; leave after ``need`` outside."""
        if kind in self._open:
            self._back[kind] = 0 if inside else self._back[kind] + 1
            if self._back[kind] >= need:
                self._close(kind, s, out)
                self._back[kind] = 0
            return
        self._streak[kind] = self._streak[kind] + 1 if inside else 0
        if self._streak[kind] >= need:
            start = self._beats[-min(need, len(self._beats))] if self._beats else s
            self._open_ep(kind, start, 1.0, {"heart_rate_bpm": round(bpm, 1)}, out)
            self._streak[kind] = 0

    def _judge_rate(self, s: int, out: list[RhythmEpisode]) -> None:
        if len(self._rate_rr) < 4:
            return
        ordered = sorted(self._rate_rr)
        k = len(ordered)
        median = ordered[k // 2] if k % 2 else 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])
        bpm = 60.0 * self.fs / median
        self._episode_rule("brady", bpm < self.brady_bpm, s, _RATE_BEATS, bpm, out)
        self._episode_rule("tachy", bpm > self.tachy_bpm, s, _RATE_BEATS, bpm, out)

    def _judge_af(self, s: int, wide: bool, out: list[RhythmEpisode]) -> None:
        change = self._af.push(s, wide)
        if change is None:
            return
        if change.began:
            st = change.state
            self._open_ep("af", change.seq, st.confidence, st.details(), out)
        else:
            self._close("af", change.seq, out)
