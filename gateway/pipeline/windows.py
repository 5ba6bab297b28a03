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

    def advance(self, end_seq: int) -> None:
        """Schedule the periodic strips complete by ``end_seq``. The strips that would lie
        wholly inside a lost range are skipped in one step, however long the range: each
        turn of the loop queues a strip or passes a whole lost range."""
        trigger = Trigger("periodic", pre_s=self.settings.strip_duration_s)
        while self._next_periodic + self._dur <= end_seq:
            first = self._next_periodic
            inside = next(
                ((a, b) for a, b in self._lost if a <= first and first + self._dur <= b), None
            )
            if inside is not None:  # to the first strip that ends past the lost range
                self._next_periodic += (
                    (inside[1] - self._dur - first) // self._period + 1
                ) * self._period
                continue
            self._queue(PendingWindow("strip", first, first + self._dur, trigger))
            self._next_periodic += self._period
        self._lost = [(a, b) for a, b in self._lost if b > self._next_periodic]

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
