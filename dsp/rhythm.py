"""Rhythm episodes from the beat stream: bradycardia, tachycardia, pause, atrial fibrillation.

Pure and streaming: :meth:`RhythmTracker.process` takes the beats a
:class:`~dsp.qrs.QrsDetector` reported and returns the episodes that ended or
began. Decisions depend only on the beats (sample numbers), never on how the
stream was cut into blocks, so offline analysis gives what streaming gives.

- **Rate** episodes use the median heart rate of the last 8 RR intervals:
  bradycardia below ``brady_bpm``, tachycardia above ``tachy_bpm``, entered after
  4 consecutive beats past the limit and left after 4 beats back inside it.
- **Pause**: an RR interval of at least ``pause_s`` seconds (default 3 s).
- **Atrial fibrillation**: RR irregularity over a sliding window of 32 beats
  (normalised RMSSD of successive RR differences above 0.1 and a Shannon
  entropy of the RR histogram above 0.7, after dropping premature beats — a short
  interval followed by a compensatory long one — and the differences that involve
  them, so ectopic beats do not count, and a turning-point count consistent with a
  random series, which keeps bigeminy and trigeminy out; after Dash et al.,
  Ann Biomed Eng 2009). Confidence grows with how far both
  statistics exceed their limits.

These are measurements for the monitoring staff to read, labelled as such;
the gateway does not diagnose.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from dsp.qrs import Beats

__all__ = ["RhythmEpisode", "RhythmTracker"]

_RATE_BEATS = 4
_AF_WINDOW = 32
_PREMATURE = 0.85  # an RR under 85 % of the window median followed by one over 110 %
_COMPENSATORY = 1.10
_AF_NRMSSD = 0.10
_AF_ENTROPY = 0.70
_AF_BINS = 16
_AF_EVERY = 4  # the AF statistics are evaluated every 4th beat (they change slowly)


@dataclass(slots=True)
class RhythmEpisode:
    """One episode; ``end_seq`` is None while it lasts."""

    kind: str  # "brady", "tachy", "pause", "af"
    start_seq: int
    end_seq: int | None = None
    confidence: float = 1.0
    details: dict[str, float] = field(default_factory=dict)


def _shannon_entropy(rr: np.ndarray, mean: float) -> float:
    """Normalised Shannon entropy of the RR histogram: 16 bins over mean RR +/- 50 %."""
    bins = np.floor((rr - 0.5 * mean) / mean * _AF_BINS).astype(np.int64)
    bins = bins[(bins >= 0) & (bins < _AF_BINS)]
    counts = np.bincount(bins, minlength=_AF_BINS)
    p = counts[counts > 0] / rr.size
    return float(-(p * np.log(p)).sum() / math.log(_AF_BINS))


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
        self._rr: deque[int] = deque(maxlen=_AF_WINDOW)
        self._ectopic: deque[bool] = deque(maxlen=_AF_WINDOW)
        self._last_wide = False
        self._rate_rr: deque[int] = deque(maxlen=8)
        self._beats: deque[int] = deque(maxlen=_AF_WINDOW + 1)
        self._af_count = 0
        self._open: dict[str, RhythmEpisode] = {}
        self._streak: dict[str, int] = {"brady": 0, "tachy": 0, "af": 0}
        self._back: dict[str, int] = {"brady": 0, "tachy": 0, "af": 0}
        self.episodes: list[RhythmEpisode] = []

    @property
    def current(self) -> dict[str, RhythmEpisode]:
        """Episodes in progress, by kind."""
        return dict(self._open)

    def process(self, beats: Beats) -> list[RhythmEpisode]:
        """Take new beats (in order); return episodes that began or ended with them."""
        changed: list[RhythmEpisode] = []
        wide = beats.ventricular.tolist() if beats.ventricular is not None else [False] * len(beats)
        for s, rr_s, v in zip(beats.seq.tolist(), beats.rr_s.tolist(), wide, strict=True):
            if self._last is None or math.isnan(rr_s):
                # first beat, or first after a gap in the stream: no interval to judge
                self._rr.clear()
                self._ectopic.clear()
                self._rate_rr.clear()
                self._beats.clear()
                self._close_all(s, changed)
            else:
                rr = s - self._last
                self._rr.append(rr)
                # an interval that ends on or starts from a wide (ventricular) beat
                self._ectopic.append(bool(v) or self._last_wide)
                self._rate_rr.append(rr)
                if rr >= self.pause_s * self.fs:
                    ep = RhythmEpisode(
                        "pause", self._last, s, 1.0, {"duration_s": round(rr / self.fs, 3)}
                    )
                    self.episodes.append(ep)
                    changed.append(ep)
                self._judge_rate(s, changed)
                self._judge_af(s, changed)
            self._beats.append(s)
            self._last = s
            self._last_wide = bool(v)
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
        self, kind: str, inside: bool, s: int, need: int, conf: float, det: dict, out: list
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
            self._open_ep(kind, start, conf, det, out)
            self._streak[kind] = 0

    def _judge_rate(self, s: int, out: list[RhythmEpisode]) -> None:
        if len(self._rate_rr) < 4:
            return
        ordered = sorted(self._rate_rr)
        k = len(ordered)
        median = ordered[k // 2] if k % 2 else 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])
        bpm = 60.0 * self.fs / median
        det = {"heart_rate_bpm": round(bpm, 1)}
        self._episode_rule("brady", bpm < self.brady_bpm, s, _RATE_BEATS, 1.0, det, out)
        self._episode_rule("tachy", bpm > self.tachy_bpm, s, _RATE_BEATS, 1.0, det, out)

    def _judge_af(self, s: int, out: list[RhythmEpisode]) -> None:
        self._af_count += 1
        if len(self._rr) < _AF_WINDOW or self._af_count % _AF_EVERY:
            return
        seq = np.asarray(self._rr, dtype=np.float64)
        # drop premature beats: a short interval followed by a compensatory long one
        med = float(np.median(seq))
        ectopic = (seq[:-1] < _PREMATURE * med) & (seq[1:] > _COMPENSATORY * med)
        keep = ~np.asarray(self._ectopic, dtype=bool)
        keep[:-1] &= ~ectopic
        keep[1:] &= ~ectopic
        if keep.sum() < seq.size // 2:
            keep[:] = False  # mostly ectopic couplets (bigeminy): not an AF pattern
            rr = seq
        else:
            rr = seq[keep]
        mean = float(rr.mean())
        pairs = keep[1:] & keep[:-1]  # successive differences between kept intervals only
        diffs = np.diff(seq)[pairs]
        nrmssd = float(np.sqrt(np.mean(diffs**2)) / mean) if mean > 0 and diffs.size else 0.0
        ent = _shannon_entropy(rr, mean)
        # turning point ratio: AF's RR series is random; bigeminy and trigeminy alternate
        n = seq.size
        tp = int(np.count_nonzero((seq[1:-1] - seq[:-2]) * (seq[1:-1] - seq[2:]) > 0))
        mu, sigma = (2 * n - 4) / 3, math.sqrt((16 * n - 29) / 90)
        random_order = abs(tp - mu) < 2 * sigma
        irregular = bool(keep.any()) and nrmssd > _AF_NRMSSD and ent > _AF_ENTROPY and random_order
        conf = min(1.0, 0.5 * (nrmssd / _AF_NRMSSD - 1) + 0.5 * (ent / _AF_ENTROPY - 1) + 0.5)
        det = {"nrmssd": round(nrmssd, 3), "rr_entropy": round(ent, 3), "turning_points": tp}
        need = max(8 // _AF_EVERY, 1)  # 8 beats' worth of consecutive verdicts
        self._episode_rule("af", irregular, s, need, max(conf, 0.0), det, out)
