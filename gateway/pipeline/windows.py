"""When strips and events are due: the windows of ECG waiting to be cut (pure).

- **periodic**: ``strip_duration_s`` every ``strip_period_s``, the first as soon as
  one is recorded. Strips that would lie wholly inside a final gap are skipped in one
  step, so a gap of any length costs the same (a counter jumping far ahead included).
- **button** (post-symptom event, CPT 93012): ``event_pre_s`` before to
  ``event_post_s`` after the press; less before it when less was recorded.
- **stage end** (stress test, CPT 93017): the last ``strip_duration_s`` of the stage
  that ended (at most the stage itself), with the blood pressure measured during it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.events import BloodPressure, ButtonPressed, StageChanged
from gateway.pipeline.facts import Trigger
from gateway.pipeline.settings import PipelineSettings

__all__ = ["PendingWindow", "WindowScheduler"]


@dataclass(slots=True)
class PendingWindow:
    """Samples ``[first_seq, end_seq)`` to send as ``kind`` once they are analysed."""

    kind: str  # "strip" or "event"
    first_seq: int
    end_seq: int
    trigger: Trigger
    blood_pressure: BloodPressure | None = None  # measured during the stage (stage end)


class WindowScheduler:
    """The windows waiting for their samples (see the module docstring).

    Parameters
    ----------
    settings
        Window lengths and the strip period.
    fs
        Sample rate, Hz.
    start_seq
        The stream's first sample (the first periodic strip starts there).
    """

    def __init__(self, settings: PipelineSettings, fs: float, start_seq: int) -> None:
        self.settings = settings
        self.fs = fs
        self._dur = self._samples(settings.strip_duration_s)
        self._period = max(self._samples(settings.strip_period_s), 1)
        self._next_periodic = start_seq
        self._pending: list[PendingWindow] = []
        self._lost: list[tuple[int, int]] = []  # final gaps not yet skipped over
        self.created = 0  # windows ever queued (work is per window: see advance)
        self.not_held = 0  # periodic strips over an awaited range beyond what can wait

    def _queue(self, p: PendingWindow) -> None:
        self.created += 1
        self._pending.append(p)

    def _samples(self, seconds: float) -> int:
        return int(round(seconds * self.fs))

    @property
    def pending(self) -> list[PendingWindow]:
        return self._pending

    def button(self, press: ButtonPressed, seq: int, oldest: int | None) -> None:
        """An event window around a press at sample ``seq`` (``oldest``: first sample held)."""
        s = self.settings
        first = seq - self._samples(s.event_pre_s)
        trigger = Trigger(
            "button",
            pre_s=s.event_pre_s,
            post_s=s.event_post_s,
            time=press.time,
            seq=seq,
            press_id=press.press_id,
        )
        if oldest is not None and first < oldest:
            trigger = trigger.but(pre_available_s=round((seq - oldest) / self.fs, 3))
            first = oldest
        self._queue(PendingWindow("event", first, seq + self._samples(s.event_post_s), trigger))

    def stage_ended(
        self,
        stage: StageChanged,
        stage_start: int | None,
        seq: int,
        time: float,
        blood_pressure: BloodPressure | None,
    ) -> None:
        """``stage`` (begun at ``stage_start``) ended at sample ``seq``, UTC ``time``: a
        strip of its last ``strip_duration_s``."""
        first = seq - self._dur
        if stage_start is not None:
            first = max(first, stage_start)
        trigger = Trigger(
            "stage_end", pre_s=round((seq - first) / self.fs, 3), time=time, seq=seq, stage=stage
        )
        self._queue(PendingWindow("strip", first, seq, trigger, blood_pressure))

    def auto(self, reason: str, seq: int, time: float, details: dict, oldest: int | None) -> None:
        """An auto-triggered event: an episode (``reason``) began at sample ``seq``, UTC
        ``time``; its window is ``auto_pre_s`` before to ``auto_post_s`` after (from
        ``oldest``, the first sample held, at the earliest)."""
        s = self.settings
        trigger = Trigger(
            "auto",
            pre_s=s.auto_pre_s,
            post_s=s.auto_post_s,
            time=time,
            seq=seq,
            reason=reason,
            details=details,
        )
        first, end = seq - self._samples(s.auto_pre_s), seq + self._samples(s.auto_post_s)
        if oldest is not None and first < oldest:
            trigger = trigger.but(pre_available_s=round((seq - oldest) / self.fs, 3))
            first = oldest
        self._queue(PendingWindow("event", first, end, trigger))

    def lost(self, first_seq: int, end_seq: int) -> None:
        """``[first_seq, end_seq)`` will never arrive: no periodic strip inside it."""
        self._lost.append((first_seq, end_seq))

    def advance(
        self, end_seq: int, awaited: Sequence[tuple[int, int]] = (), held_max: int = 0
    ) -> None:
        """Schedule the periodic strips complete by ``end_seq``. The strips that would lie
        wholly inside a lost range are skipped in one step, however long the range; of
        those wholly inside the ranges analysis gave up waiting for (``awaited``: their
        samples may still come late), only the last ``held_max`` of this step are queued
        (0: all), as only that many can wait for late samples (the older ones would go
        out empty at once). Each turn of the loop queues a strip or passes a range."""
        trigger = Trigger("periodic", pre_s=self.settings.strip_duration_s)
        dur = self._dur
        allowed = self._allowed(end_seq, awaited, held_max) if held_max else {}
        while self._next_periodic + dur <= end_seq:
            first = self._next_periodic
            inside = self._within(self._lost, first)
            if inside is not None:  # to the first strip that ends past the lost range
                skip = (inside[1] - dur - first) // self._period + 1
                self._next_periodic += skip * self._period
                continue
            waiting = self._within(list(allowed), first)
            if waiting is not None:
                n = self._count(first, min(waiting[1], end_seq))  # strips wholly inside
                if n > allowed[waiting]:
                    self._next_periodic += (n - allowed[waiting]) * self._period
                    self.not_held += n - allowed[waiting]
                    continue
            self._queue(PendingWindow("strip", first, first + dur, trigger))
            self._next_periodic += self._period
        self._lost = [(a, b) for a, b in self._lost if b > self._next_periodic]

    def _count(self, first: int, end: int) -> int:
        """Periodic strips from ``first`` on (on the grid) that end by ``end``."""
        return max(0, (end - self._dur - first) // self._period + 1)

    def _allowed(
        self, end_seq: int, awaited: Sequence[tuple[int, int]], held_max: int
    ) -> dict[tuple[int, int], int]:
        """How many strips each awaited range may queue in this advance: ``held_max``
        shared out from the newest range back."""
        nxt, period, out = self._next_periodic, self._period, {}
        for a, b in sorted(awaited, reverse=True):
            if b <= nxt + self._dur or a >= end_seq:
                continue
            g0 = nxt + -(-max(a - nxt, 0) // period) * period  # first grid start >= a
            out[(a, b)] = min(self._count(g0, min(b, end_seq)), held_max)
            held_max -= out[(a, b)]
        return out

    def _within(self, ranges: Sequence[tuple[int, int]], first: int) -> tuple[int, int] | None:
        """The range of ``ranges`` that a strip starting at ``first`` lies wholly inside."""
        return next(((a, b) for a, b in ranges if a <= first and first + self._dur <= b), None)

    def ready(self, end_seq: int, settle: int) -> list[PendingWindow]:
        """The windows whose samples are analysed: events as soon as their window is
        recorded (measured on the window alone: the tracing is what staff need first),
        strips once the stream's beats are final ``settle`` samples later."""
        if not self._pending:
            return []
        due, wait = [], []
        for p in self._pending:
            lag = 0 if p.kind == "event" else settle
            (due if p.end_seq + lag <= end_seq else wait).append(p)
        self._pending = wait
        return due

    def cut_short(self, end_seq: int) -> list[PendingWindow]:
        """At shutdown: every window that has begun, truncated at ``end_seq``."""
        out = []
        for p in self._pending:
            if p.first_seq < end_seq:
                p.trigger = p.trigger.but(truncated_at_shutdown=True)
                p.end_seq = min(p.end_seq, end_seq)
                out.append(p)
        self._pending = []
        return out
