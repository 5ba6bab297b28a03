"""The in-order analysis of one device's stream: quality, QRS, beat classes, rhythm episodes.

:class:`StreamAnalysis` takes blocks in sample order (after reordering) and keeps what
strips are cut from and measured with: the recent samples (a gap-aware
:class:`~gateway.pipeline.history.SampleHistory`), the 1-second quality windows, the
detected beats with their classes (N, S, V, Q: :class:`~dsp.beat_class.BeatClassifier`),
the heart rate and the rhythm episodes (:class:`~dsp.episodes.EpisodeTracker`). An
episode that begins may become an auto-triggered event (:mod:`dsp.auto_trigger`: minimum
duration, merging, a daily quota per reason). Everything it keeps is bounded.

:func:`analyse_window` measures one window on its own with fresh detectors (an event cut
as soon as its window is recorded; a strip whose samples came after the stream moved on).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.block import SampleBlock
from core.ranges import runs_of
from dsp.auto_trigger import DEFAULT_MIN_DURATION_S, AutoTrigger, AutoTriggerPolicy
from dsp.beat_class import BeatClassifier, ClassifiedBeats
from dsp.episodes import EpisodeChange, EpisodeTracker
from dsp.heart_rate import HeartRateTracker
from dsp.qrs import Beats, QrsDetector
from dsp.quality import QualityTracker, QualityWindow
from gateway.pipeline.history import SampleHistory
from gateway.pipeline.settings import PipelineSettings

__all__ = ["StreamAnalysis", "WindowAnalysis", "analyse_window", "beat_classifier", "qrs_lead"]

# Leads the QRS detector prefers, best first (lead II shows the tallest R in most people).
_QRS_LEAD_PREFERENCE = ("II", "ECG", "I", "V5", "V2")
_SECOND_LEAD = "V1"  # the beat classifier's second lead, when a stream has it
_MAX_BEATS_KEPT = 4096
_MAX_EPISODES_KEPT = 1000  # the latest episodes strips are matched against


def qrs_lead(leads: Sequence[str]) -> int:
    """Index of the lead the QRS detector runs on."""
    return next((leads.index(n) for n in _QRS_LEAD_PREFERENCE if n in leads), 0)


def beat_classifier(fs: float, leads: Sequence[str], lead: int) -> BeatClassifier:
    """The beat classifier of a stream: on the QRS lead, and on V1 beside it when the
    stream has one (a 12-lead cart). The two-lead forest learnt MIT-BIH's second channel,
    V1 in most records, beside MLII, and finds ventricular beats better than one lead
    (BENCHMARKS.md, "Beat classes"); a patch's single lead gets the one-lead forest."""
    second = leads.index(_SECOND_LEAD) if _SECOND_LEAD in leads else None
    if second == lead:
        second = None
    return BeatClassifier(fs, len(leads), lead, second_lead=second)


def _tracker(fs: float, s: PipelineSettings) -> EpisodeTracker:
    return EpisodeTracker(fs, s.rhythm, quality=True)


class StreamAnalysis:
    """Analysis of one stream in sample order (see the module docstring).

    Parameters
    ----------
    fs, leads
        The stream's sample rate (Hz) and lead names.
    settings
        Rhythm limits, auto-trigger rules and the longest window a strip or event needs.
    """

    def __init__(self, fs: float, leads: tuple[str, ...], settings: PipelineSettings) -> None:
        self.fs = fs
        lead = qrs_lead(leads)
        self.qrs = QrsDetector(fs, lead=lead)
        self.classifier = beat_classifier(fs, leads, lead)
        self.tracker = _tracker(fs, settings)
        self.policy = _policy(fs, settings)
        longest = max(
            settings.event_pre_s + settings.event_post_s,
            settings.auto_pre_s + settings.auto_post_s,
            settings.strip_duration_s,
        )
        self.history = SampleHistory(longest + 10.0 + self.qrs.latency_s)
        self.quality = QualityTracker(fs, len(leads))
        self.hr = HeartRateTracker()
        self.windows: deque[QualityWindow] = deque()
        self.beats: deque[int] = deque(maxlen=_MAX_BEATS_KEPT)
        self.labels: deque[str] = deque(maxlen=_MAX_BEATS_KEPT)
        self._episodes: OrderedDict[int, EpisodeChange] = OrderedDict()
        self.heart_rate_bpm: float | None = None
        self.beat_count = 0
        self.new_windows: list[QualityWindow] = []  # judged by the latest add

    @property
    def settle(self) -> int:
        """Samples behind the newest before beats and their classes are final (the QRS
        latency and a beat: a class waits for the next beat)."""
        return int(round((self.qrs.latency_s + 2.0) * self.fs))

    @property
    def end_seq(self) -> int | None:
        """One past the newest sample analysed."""
        return self.history.end_seq

    def add(self, block: SampleBlock) -> list[AutoTrigger]:
        """Analyse the next block of the stream; the auto-triggered events it raises."""
        self.history.add(block)
        new_windows = self.new_windows = self.quality.process(block)
        self.windows.extend(new_windows)
        horizon = self.history.first_seq or 0  # as long as their samples are kept
        while self.windows and self.windows[0].end_seq < horizon:
            self.windows.popleft()
        beats = self.qrs.process(block)
        if len(beats):
            self._rate(beats, block.end_seq)
        labelled = self.classifier.process(block, beats)
        self.beats.extend(int(s) for s in labelled.seq)
        self.labels.extend(labelled.labels)
        changes = self.tracker.process(labelled, new_windows)
        for c in changes:
            self._episodes[c.id] = c
            self._episodes.move_to_end(c.id)
        while len(self._episodes) > _MAX_EPISODES_KEPT:
            self._episodes.popitem(last=False)
        if self.policy is None:
            return []
        return self.policy.update(changes, now=block.end, now_seq=block.end_seq)

    @property
    def pauses_lead_off(self) -> int:
        """Pauses over time the device reported its electrodes off (no auto event)."""
        return 0 if self.policy is None else self.policy.lead_off

    def _rate(self, beats: Beats, now_seq: int) -> None:
        self.beat_count += len(beats)
        bpm = float(self.hr.process(beats, now_seq).average_bpm)
        self.heart_rate_bpm = None if np.isnan(bpm) else round(bpm, 1)

    def beats_in(self, first: int, end: int) -> tuple[list[int], list[str]]:
        """Beats detected in ``[first, end)`` and their classes."""
        pairs = [(s, c) for s, c in zip(self.beats, self.labels, strict=True) if first <= s < end]
        return [s for s, _ in pairs], [c for _, c in pairs]

    def episodes(self) -> list[EpisodeChange]:
        """The latest rhythm episodes, each as of its last change."""
        return list(self._episodes.values())

    def episode(self, episode_id: int) -> EpisodeChange | None:
        return self._episodes.get(episode_id)


def _policy(fs: float, s: PipelineSettings) -> AutoTriggerPolicy | None:
    if not s.auto_enabled:
        return None
    durations = {**DEFAULT_MIN_DURATION_S, **dict(s.auto_min_duration_s)}
    return AutoTriggerPolicy(
        fs, min_duration_s=durations, max_per_day=s.auto_max_per_day, merge_s=s.auto_merge_s
    )


@dataclass(frozen=True, slots=True)
class WindowAnalysis:
    """A window measured on its own: beats, their classes, quality windows, episodes."""

    beats: list[int]
    labels: list[str]
    quality: list[QualityWindow]
    episodes: list[EpisodeChange]


def analyse_window(
    block: SampleBlock, have: np.ndarray, lead: int, settings: PipelineSettings
) -> WindowAnalysis:
    """One window measured on it alone, with fresh detectors run to its end.

    ``have`` marks the samples that arrived; each recorded run is fed after a gap, so
    no missing sample (NaN) reaches a detector. A window with no sample at all is
    nothing to measure (a strip over a long loss: building the detectors would be the
    whole cost, per window).
    """
    if not have.any():
        return WindowAnalysis([], [], [], [])
    qrs = QrsDetector(block.fs, lead=lead)
    classifier = beat_classifier(block.fs, block.leads, lead)
    tracker = _tracker(block.fs, settings)
    quality_tracker = QualityTracker(block.fs, block.n_leads)
    parts: list[ClassifiedBeats] = []
    quality: list[QualityWindow] = []
    changes: list[EpisodeChange] = []
    for a, b in runs_of(have, block.seq):
        run = block.slice_seq(a, b)
        windows = quality_tracker.process(run)
        quality += windows
        labelled = classifier.process(run, qrs.process(run))
        parts.append(labelled)
        changes += tracker.process(labelled, windows)
    empty = block.slice_seq(block.end_seq, block.end_seq)
    parts.append(classifier.process(empty, qrs.finish()))
    parts.append(classifier.finish())
    found = ClassifiedBeats.concat(parts, block.fs)
    changes += tracker.process(ClassifiedBeats.concat(parts[-2:], block.fs), ())
    changes += tracker.finish(block.end_seq)
    latest: dict[int, EpisodeChange] = {}
    for c in changes:
        latest[c.id] = c
    return WindowAnalysis(
        [int(s) for s in found.seq], list(found.labels), quality, list(latest.values())
    )
