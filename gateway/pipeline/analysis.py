"""The in-order analysis of one device's stream: history, quality, QRS, heart rate, rhythm.

:class:`StreamAnalysis` takes blocks in sample order (after reordering) and keeps what
strips are cut from and measured with: the recent samples (a gap-aware
:class:`~gateway.pipeline.history.SampleHistory`), the 1-second quality windows, the
detected beats, the heart rate and the rhythm episodes. Everything it keeps is bounded.

:func:`analyse_window` measures one window on its own with fresh detectors (a strip
whose samples arrived after the stream had moved past them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from core.block import SampleBlock
from core.ranges import runs_of
from dsp.heart_rate import HeartRateTracker
from dsp.qrs import Beats, QrsDetector
from dsp.quality import QualityTracker, QualityWindow
from dsp.rhythm import RhythmEpisode, RhythmTracker
from gateway.pipeline.history import SampleHistory
from gateway.pipeline.settings import PipelineSettings

__all__ = ["StreamAnalysis", "analyse_window", "qrs_lead"]

# Leads the QRS detector prefers, best first (lead II shows the tallest R in most people).
_QRS_LEAD_PREFERENCE = ("II", "ECG", "I", "V5", "V2")
_MAX_BEATS_KEPT = 4096
_MAX_EPISODES_SHOWN = 1000  # the latest episodes strips are matched against


def qrs_lead(leads: Sequence[str]) -> int:
    """Index of the lead the QRS detector runs on."""
    return next((leads.index(n) for n in _QRS_LEAD_PREFERENCE if n in leads), 0)


def _rhythm(fs: float, s: PipelineSettings) -> RhythmTracker:
    return RhythmTracker(fs, brady_bpm=s.brady_bpm, tachy_bpm=s.tachy_bpm, pause_s=s.pause_s)


class StreamAnalysis:
    """Analysis of one stream in sample order (see the module docstring).

    Parameters
    ----------
    fs, leads
        The stream's sample rate (Hz) and lead names.
    settings
        Rhythm limits and the longest window a strip or event needs.
    """

    def __init__(self, fs: float, leads: tuple[str, ...], settings: PipelineSettings) -> None:
        self.fs = fs
        self.qrs = QrsDetector(fs, lead=qrs_lead(leads))
        longest = max(settings.event_pre_s + settings.event_post_s, settings.strip_duration_s)
        self.history = SampleHistory(longest + 10.0 + self.qrs.latency_s)
        self.quality = QualityTracker(fs, len(leads))
        self.rhythm = _rhythm(fs, settings)
        self.hr = HeartRateTracker()
        self.windows: deque[QualityWindow] = deque()
        self.beats: deque[int] = deque(maxlen=_MAX_BEATS_KEPT)
        self.heart_rate_bpm: float | None = None
        self.beat_count = 0

    @property
    def settle(self) -> int:
        """Samples behind the newest before beats there are final (the QRS latency)."""
        return int(round(self.qrs.latency_s * self.fs))

    @property
    def end_seq(self) -> int | None:
        """One past the newest sample analysed."""
        return self.history.end_seq

    def add(self, block: SampleBlock) -> None:
        """Analyse the next block of the stream."""
        self.history.add(block)
        self.windows.extend(self.quality.process(block))
        horizon = block.end_seq - int(self.history.keep_s * block.fs)
        while self.windows and self.windows[0].end_seq < horizon:
            self.windows.popleft()
        beats = self.qrs.process(block)
        if len(beats):
            self._note(beats, block.end_seq)

    def _note(self, beats: Beats, now_seq: int) -> None:
        self.beats.extend(int(s) for s in beats.seq)
        self.beat_count += len(beats)
        hr = self.hr.process(beats, now_seq)
        self.rhythm.process(beats)
        bpm = float(hr.average_bpm)
        self.heart_rate_bpm = None if np.isnan(bpm) else round(bpm, 1)

    def beats_in(self, first: int, end: int) -> list[int]:
        """Beats detected in ``[first, end)`` (sample numbers)."""
        return [s for s in self.beats if first <= s < end]

    def episodes(self) -> list[RhythmEpisode]:
        """The latest rhythm episodes."""
        return self.rhythm.episodes[-_MAX_EPISODES_SHOWN:]


def analyse_window(
    block: SampleBlock, have: np.ndarray, lead: int, settings: PipelineSettings
) -> tuple[list[int], list[QualityWindow], list[RhythmEpisode]]:
    """Beats, quality windows and rhythm episodes of one window, measured on it alone.

    ``have`` marks the samples that arrived; each recorded run is fed after a gap, so
    no missing sample (NaN) reaches a detector.
    """
    qrs = QrsDetector(block.fs, lead=lead)
    tracker = QualityTracker(block.fs, block.n_leads)
    parts: list[Beats] = []
    quality: list[QualityWindow] = []
    for a, b in runs_of(have, block.seq):
        run = block.slice_seq(a, b)
        parts.append(qrs.process(run))
        quality += tracker.process(run)
    found = Beats.concat([*parts, qrs.finish()], block.fs)
    rhythm = _rhythm(block.fs, settings)
    rhythm.process(found)
    rhythm.finish(block.end_seq)
    return [int(s) for s in found.seq], quality, list(rhythm.episodes)
