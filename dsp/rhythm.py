"""Rhythm episodes as a growing list: the interface the gateway pipeline has used so far.

:class:`RhythmTracker` is a thin layer over :class:`dsp.episodes.EpisodeTracker`,
which is the interface to use in new code (typed, frozen changes: started, updated,
ended; beat classes; quality). This layer keeps a list of what it reports:
``RhythmTracker(EpisodeTracker(fs, limits))``, ``process(beats)`` returning
the episodes that began or ended, ``episodes`` (a list of mutable
:class:`RhythmEpisode`, the open ones completed in place when they end),
``current`` and ``finish(end_seq)``.

Fed plain detector :class:`~dsp.qrs.Beats` (as the pipeline does today), it reports
the kinds the width flag can support: ``brady``, ``tachy``, ``pause``, ``af`` and
``af_rvr`` (wide beats' intervals left out of AF). Fed
:class:`~dsp.beat_class.ClassifiedBeats`, it reports every kind of
:data:`dsp.episodes.KINDS`. The list is bounded: past ``max_episodes`` the oldest
ended episodes are dropped.

These are measurements for the monitoring staff to read, labelled as such; the
gateway does not diagnose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dsp.beat_class import ClassifiedBeats
from dsp.episodes import BeatCounts, EpisodeChange, EpisodeEnded, EpisodeStarted, EpisodeTracker
from dsp.qrs import Beats
from dsp.quality import QualityWindow

__all__ = ["RhythmEpisode", "RhythmTracker"]


@dataclass(slots=True)
class RhythmEpisode:
    """One episode; ``end_seq`` is None while it lasts."""

    kind: str  # one of dsp.episodes.KINDS
    start_seq: int
    end_seq: int | None = None
    confidence: float = 1.0
    details: dict[str, float] = field(default_factory=dict)
    in_unusable_signal: bool = False


class RhythmTracker:
    """The episodes of ``tracker`` kept as a list of at most ``max_episodes`` (the oldest
    ended ones go first; see the module docstring)."""

    def __init__(self, tracker: EpisodeTracker, max_episodes: int = 1000) -> None:
        self.tracker = tracker
        self.max_episodes = max_episodes
        self.episodes: list[RhythmEpisode] = []
        self._open: dict[int, RhythmEpisode] = {}

    @property
    def current(self) -> dict[str, RhythmEpisode]:
        """Episodes in progress, by kind."""
        return {e.kind: e for e in self._open.values()}

    @property
    def counts(self) -> BeatCounts:
        """Beat and run counts since the start."""
        return self.tracker.counts

    def process(
        self, beats: Beats | ClassifiedBeats, quality: Iterable[QualityWindow] = ()
    ) -> list[RhythmEpisode]:
        """Take new beats (in order); return episodes that began or ended with them."""
        return self._apply(self.tracker.process(beats, quality))

    def finish(self, end_seq: int) -> list[RhythmEpisode]:
        """End of the recording: close what is open at ``end_seq``."""
        return self._apply(self.tracker.finish(end_seq))

    def _apply(self, changes: list[EpisodeChange]) -> list[RhythmEpisode]:
        changed: list[RhythmEpisode] = []
        for c in changes:
            if isinstance(c, EpisodeStarted):
                ep = RhythmEpisode(c.kind, c.start_seq, c.end_seq, c.confidence, {})
                self.episodes.append(ep)
                self._open[c.id] = ep
            else:
                ep = self._open.get(c.id)
                if ep is None:
                    continue
            rates = {"min_rate_bpm": c.min_rate_bpm, "max_rate_bpm": c.max_rate_bpm}
            ep.details = {**c.details, **rates}
            ep.confidence = c.confidence
            ep.in_unusable_signal = c.in_unusable_signal
            if isinstance(c, EpisodeEnded):
                ep.end_seq = c.end_seq
                del self._open[c.id]
            if isinstance(c, (EpisodeStarted, EpisodeEnded)) and all(e is not ep for e in changed):
                changed.append(ep)
        if len(self.episodes) > self.max_episodes:
            keep = set(map(id, self._open.values()))
            extra = len(self.episodes) - self.max_episodes
            self.episodes = [e for i, e in enumerate(self.episodes) if i >= extra or id(e) in keep]
        return changed
