"""When strips and events are due: the windows of ECG waiting to be cut (pure).

- **periodic**: ``strip_duration_s`` every ``strip_period_s``, the first as soon as
  one is recorded. Strips that would lie wholly inside a final gap are skipped in one
  step, so a gap of any length costs the same (a counter jumping far ahead included).
  Strips wholly inside a range analysis gave up waiting for hold no sample when it moves
  past them: one record per range notes them as owed, and a strip is made only where
  late samples arrive (none for a stretch that stays empty), so the work of a step is
  bounded by the samples it brings, not by the length of a hole.
- **button** (post-symptom event, CPT 93012): ``event_pre_s`` before to
  ``event_post_s`` after the press; less before it when less was recorded.
- **stage end** (stress test, CPT 93017): the last ``strip_duration_s`` of the stage
  that ended (at most the stage itself), with the blood pressure measured during it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from core.events import BloodPressure, ButtonPressed, StageChanged
from gateway.pipeline.facts import Trigger
from gateway.pipeline.settings import PipelineSettings

__all__ = ["LATE_WAIT_S", "PendingWindow", "WindowScheduler"]

LATE_WAIT_S = 6 * 3600.0  # longest a window waits for late samples, seconds of stream
_OWED_MAX = 1000  # owed runs kept (the oldest dropped): as many as the ranges given up


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
    owed_s
        Seconds of stream an owed strip (see :meth:`advance`) waits for late samples.
    """

    def __init__(
        self, settings: PipelineSettings, fs: float, start_seq: int, owed_s: float = LATE_WAIT_S
    ) -> None:
        self.settings = settings
        self.fs = fs
        self._dur = self._samples(settings.strip_duration_s)
        self._period = max(self._samples(settings.strip_period_s), 1)
        self._next_periodic = start_seq
        self._pending: list[PendingWindow] = []
        self._lost: list[tuple[int, int]] = []  # final gaps not yet skipped over
        # owed periodic strips: starts g0, g0 + period, ... before g1, noted at analysis head
        self._owed: list[tuple[int, int, int]] = []  # (g0, g1, head), sorted, disjoint
        self._owed_wait = self._samples(owed_s)
        self.created = 0  # windows ever queued (work is per window: see advance)
        self.created_late = 0  # owed strips made for late samples (see owed)
        self.owed_dropped = 0  # owed strips no late sample came for in time (never made)

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
        first, trigger = self._held_from(first, seq, oldest, trigger)
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
        first = max(seq - self._dur, 0)
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
        first, trigger = self._held_from(first, seq, oldest, trigger)
        self._queue(PendingWindow("event", first, end, trigger))

    def _held_from(
        self, first: int, seq: int, oldest: int | None, trigger: Trigger
    ) -> tuple[int, Trigger]:
        """An event window's start no earlier than the first sample held (``oldest``; none
        held yet: the stream's sample 0, before which there is nothing), and its trigger
        saying how much came before ``seq`` when that cut it short."""
        lowest = max(oldest if oldest is not None else 0, 0)
        if first >= lowest:
            return first, trigger
        return lowest, trigger.but(pre_available_s=round(max(seq - lowest, 0) / self.fs, 3))

    def lost(self, first_seq: int, end_seq: int) -> None:
        """``[first_seq, end_seq)`` will never arrive: no periodic strip inside it."""
        self._lost.append((first_seq, end_seq))

    def advance(self, end_seq: int, awaited: Sequence[tuple[int, int]] = ()) -> None:
        """Schedule the periodic strips complete by ``end_seq``. The strips that would lie
        wholly inside a lost range are skipped in one step, however long the range. Those
        wholly inside a range analysis gave up waiting for (``awaited``, sorted, as
        :attr:`~gateway.pipeline.reorder.BlockReorderer.gave_up_ranges`: their samples may
        still come late) hold no sample yet: they are noted as one owed run per range and
        made only where late samples arrive (:meth:`owed`). Each turn of the loop queues a
        strip or passes a range."""
        trigger = Trigger("periodic", pre_s=self.settings.strip_duration_s)
        dur = self._dur
        ahead = self._ahead(awaited)
        while self._next_periodic + dur <= end_seq:
            first = self._next_periodic
            inside = self._within(self._lost, first)
            if inside is not None:  # to the first strip that ends past the lost range
                self._next_periodic = self._past(first, inside[1])
                continue
            inside = self._within(ahead, first)
            if inside is not None:  # owed, made only if late samples come
                self._next_periodic = self._past(first, inside[1])
                self._owe(first, self._next_periodic, end_seq)
                continue
            self._queue(PendingWindow("strip", first, first + dur, trigger))
            self._next_periodic += self._period
        self._lost = [(a, b) for a, b in self._lost if b > self._next_periodic]
        self._expire(end_seq)

    def _past(self, first: int, end: int) -> int:
        """The first strip start on the grid from ``first`` whose strip ends past ``end``."""
        return first + ((end - self._dur - first) // self._period + 1) * self._period

    def _ahead(self, awaited: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """The ranges of sorted ``awaited`` that end after the next periodic strip starts
        (found from the newest back: the list holds the latest 1,000 ranges)."""
        out = []
        for a, b in reversed(awaited):
            if b <= self._next_periodic:
                break
            out.append((a, b))
        return out

    def _within(self, ranges: Sequence[tuple[int, int]], first: int) -> tuple[int, int] | None:
        """The range of ``ranges`` that a strip starting at ``first`` lies wholly inside."""
        return next(((a, b) for a, b in ranges if a <= first and first + self._dur <= b), None)

    # --- owed strips: wholly inside a range given up waiting for ------------------------------
    def _owe(self, first: int, stop: int, head: int) -> None:
        """The strips starting at ``first``, ``first + period``, ... before ``stop`` are owed
        (noted when analysis reached ``head``)."""
        self._owed.append((first, stop, head))
        self._bound()

    def _bound(self) -> None:
        """At most ``_OWED_MAX`` runs (late samples in random order split them)."""
        while len(self._owed) > _OWED_MAX:
            self._drop(self._owed.pop(0))

    def _drop(self, run: tuple[int, int, int]) -> None:
        self.owed_dropped += (run[1] - run[0]) // self._period

    def _expire(self, head: int) -> None:
        """Owed runs noted more than ``owed_s`` of stream before ``head`` are dropped."""
        while self._owed and head - self._owed[0][2] > self._owed_wait:
            self._drop(self._owed.pop(0))

    @property
    def owes(self) -> bool:
        """Some periodic strips are owed to late samples."""
        return bool(self._owed)

    def owed(self, first_seq: int, end_seq: int) -> list[PendingWindow]:
        """Samples ``[first_seq, end_seq)`` arrived after analysis moved past them: the owed
        strips they fall in, each made once (at most ``(end_seq - first_seq +
        strip_duration_s * fs) / period + 1``, whatever the length of the owed runs)."""
        if not self._owed or end_seq <= first_seq:
            return []
        period, dur = self._period, self._dur
        lo = first_seq - dur + 1  # a strip starting here or later overlaps the samples
        i = j = bisect.bisect_left(self._owed, lo, key=lambda r: r[1] - period)
        kept: list[tuple[int, int, int]] = []
        out: list[PendingWindow] = []
        trigger = Trigger("periodic", pre_s=self.settings.strip_duration_s)
        while j < len(self._owed) and self._owed[j][0] < end_seq:
            g0, g1, head = self._owed[j]
            j += 1
            a = g0 + max(0, -(-(lo - g0) // period)) * period  # first start >= lo
            starts = range(a, min(g1, end_seq), period)
            if not starts:
                kept.append((g0, g1, head))
                continue
            out += [PendingWindow("strip", g, g + dur, trigger) for g in starts]
            rest = starts[-1] + period
            kept += [r for r in ((g0, a, head), (rest, g1, head)) if r[0] < r[1]]
        self._owed[i:j] = kept
        self._bound()
        self.created_late += len(out)
        return out

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
