"""Which episode starts become auto-triggered events: a pure alarm-fatigue policy.

:class:`AutoTriggerPolicy` takes the episode changes of
:class:`~dsp.episodes.EpisodeTracker` and decides, with "now" given by the caller
(it reads no clock), which become auto-triggered events, as implantable loop
recorders do with their limited memory:

- **Minimum duration per reason**: an episode triggers once it has lasted
  ``min_duration_s[reason]`` (AF 30 s, the clinical definition of an AF episode;
  brady and tachy 10 s; a pause, VT or SVT run as soon as it is one).
- **Merging**: an episode that starts within ``merge_s`` (60 s) of an event already
  triggered (any reason, while that episode lasts or within ``merge_s`` after it)
  is part of that event, not a new one (AF with a rapid rate, VT inside AF).
- **At most** ``max_per_day`` **per reason** (3) in any 24 hours; past that, a new
  episode triggers only if it is more significant than the least significant of the
  day's (longer pause; slower bradycardia; faster VT, SVT, tachycardia or AF
  response; longer AF), and the event says which one it supersedes. An episode found
  in unusable signal ranks below every one found in usable signal: a stretch of lost
  signal read as a long pause never takes the place of a real one.
- **No contact, no pause**: a pause over time the device reported its electrodes off
  (``lead_off_s`` in its details) is a technical condition the gateway reports as such
  (the ``lead_off`` event, the device's health), not an arrhythmia: it raises no event
  (counted in :attr:`AutoTriggerPolicy.lead_off`).

Patient-triggered events never pass through this policy: nothing here limits them.
Memory is bounded: candidates are the open episodes, events are those of the last
24 hours (at most ``max_per_day`` per reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from dsp.episodes import TRIGGER_REASON, EpisodeChange, EpisodeEnded, EpisodeStarted

__all__ = ["DEFAULT_MIN_DURATION_S", "AutoTrigger", "AutoTriggerPolicy"]

DEFAULT_MIN_DURATION_S = MappingProxyType(
    {"pause": 0.0, "vt": 0.0, "svt": 0.0, "af_onset": 30.0, "af_rvr": 30.0, "brady": 10.0,
     "tachy": 10.0}
)  # fmt: skip
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class AutoTrigger:
    """An auto-triggered event to raise (``trigger.reason`` = ``reason``).

    Attributes
    ----------
    reason
        ``pause``, ``vt``, ``af_onset``, ``af_rvr``, ``brady``, ``tachy`` or ``svt``.
    episode_id, start_seq
        The episode (:attr:`dsp.episodes.EpisodeChange.id`) and where it began.
    at
        The caller's "now" when decided, POSIX seconds.
    significance
        What "longest / fastest" compared (s, or bpm; larger is more significant).
    supersedes
        Episode id of an earlier event of the same reason this one replaces in the
        day's quota (None when under the quota).
    in_unusable_signal
        The episode was found in unusable signal (it ranks below every one that was not).
    """

    reason: str
    episode_id: int
    start_seq: int
    at: float
    significance: float
    supersedes: int | None = None
    in_unusable_signal: bool = False

    @property
    def rank(self) -> tuple[bool, float]:
        """The order of the day's quota: usable signal first, then significance."""
        return (not self.in_unusable_signal, self.significance)


@dataclass(slots=True)
class _Candidate:
    reason: str
    change: EpisodeChange


class AutoTriggerPolicy:
    """Decide auto-triggered events from episode changes (see the module docstring).

    Parameters
    ----------
    fs
        Sample rate of the episode sample numbers, Hz.
    min_duration_s
        Shortest episode, s, per reason (missing reasons: 0).
    max_per_day
        Events per reason in any 24 hours before only more significant ones count.
    merge_s
        Episodes starting this close to a triggered one join its event, s.
    """

    def __init__(
        self,
        fs: float,
        *,
        min_duration_s: Mapping[str, float] = DEFAULT_MIN_DURATION_S,
        max_per_day: int = 3,
        merge_s: float = 60.0,
    ) -> None:
        self.fs = float(fs)
        self.min_duration_s = dict(min_duration_s)
        self.max_per_day = max_per_day
        self.merge = int(round(merge_s * fs))
        self._candidates: dict[int, _Candidate] = {}
        self._fired: dict[str, list[tuple[float, AutoTrigger]]] = {}  # reason -> (at, event)
        self._spans: list[tuple[int, int | None, int]] = []  # events' (start, end, episode)
        self.merged = 0  # episodes that joined an event already raised
        self.suppressed = 0  # episodes over the day's quota and not more significant
        self.lead_off = 0  # pauses over time without electrode contact: no event

    def update(
        self, changes: Iterable[EpisodeChange], now: float, now_seq: int
    ) -> list[AutoTrigger]:
        """Take episode changes (possibly none) at time ``now`` (POSIX s), when the stream
        has reached sample ``now_seq``; return the events to raise now."""
        out: list[AutoTrigger] = []
        for c in changes:
            reason = TRIGGER_REASON.get(c.kind)
            if reason is None:
                continue
            if isinstance(c, EpisodeStarted):
                if c.details.get("lead_off_s"):
                    self.lead_off += 1
                    continue
                self._candidates[c.id] = _Candidate(reason, c)
            elif c.id in self._candidates:
                self._candidates[c.id].change = c
            self._end_span(c)
        for ep_id in list(self._candidates):
            cand = self._candidates[ep_id]
            end = cand.change.end_seq
            if (end if end is not None else now_seq) - cand.change.start_seq >= self._min(cand):
                del self._candidates[ep_id]
                event = self._decide(cand, now, now_seq)
                if event is not None:
                    out.append(event)
            elif end is not None:  # over before it lasted long enough
                del self._candidates[ep_id]
        return out

    def _min(self, cand: _Candidate) -> int:
        return int(round(self.min_duration_s.get(cand.reason, 0.0) * self.fs))

    def _end_span(self, c: EpisodeChange) -> None:
        if isinstance(c, EpisodeEnded):
            self._spans = [(a, c.end_seq if ep == c.id else b, ep) for a, b, ep in self._spans]

    def _decide(self, cand: _Candidate, now: float, now_seq: int) -> AutoTrigger | None:
        c = cand.change
        self._spans = [
            (a, b, ep) for a, b, ep in self._spans if b is None or now_seq - b <= self.merge
        ]
        for a, b, _ in self._spans:
            if a - self.merge <= c.start_seq and (b is None or c.start_seq <= b + self.merge):
                self.merged += 1
                return None
        day = [(t, e) for t, e in self._fired.get(cand.reason, []) if now - t < _DAY_S]
        significance = self._significance(cand, now_seq)
        event = AutoTrigger(
            cand.reason, c.id, c.start_seq, now, significance, None, c.in_unusable_signal
        )
        if len(day) >= self.max_per_day:
            weakest = min(range(len(day)), key=lambda i: day[i][1].rank)
            if event.rank <= day[weakest][1].rank:
                self._fired[cand.reason] = day
                self.suppressed += 1
                return None
            event = replace(event, supersedes=day.pop(weakest)[1].episode_id)
        day.append((now, event))
        self._fired[cand.reason] = day
        self._spans.append((c.start_seq, c.end_seq, c.id))
        return event

    def _significance(self, cand: _Candidate, now_seq: int) -> float:
        """Larger is more significant: duration (s) for pause and AF onset, the lowest
        rate's distance below 60 bpm for bradycardia, the highest rate otherwise."""
        c = cand.change
        duration = ((c.end_seq if c.end_seq is not None else now_seq) - c.start_seq) / self.fs
        if cand.reason in ("pause", "af_onset"):
            return duration
        rate = 60.0 - c.min_rate_bpm if cand.reason == "brady" else c.max_rate_bpm
        return rate if rate == rate else 0.0
