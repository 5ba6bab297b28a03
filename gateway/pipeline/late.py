"""Strips and events whose samples arrive after analysis moved past them (pure).

A patch back after a day away backfills slower than analysis waits
(``backfill_wait_s``). A window analysis gave up waiting for is not sent with a hole:
it is held here, filled from the late samples as they arrive, and released when it is
complete, when the missing samples are declared lost, after ``LATE_WAIT_S`` of stream,
when too many are held, or at shutdown. Its facts are then measured on the window
alone (``trigger.analysed_late``). A periodic strip wholly inside such a hole is held only
once a late sample falls in it (:meth:`~gateway.pipeline.windows.WindowScheduler.owed`):
a stretch no sample comes for is no strip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.block import SampleBlock
from core.ranges import subtract
from gateway.pipeline.history import Window
from gateway.pipeline.windows import LATE_WAIT_S, PendingWindow

__all__ = ["LATE_MAX", "LATE_WAIT_S", "LateWindow", "LateWindows"]

LATE_MAX = 256  # windows waiting for late samples at once (oldest sent as they stand)


@dataclass(slots=True)
class LateWindow:
    """A window analysis moved past before all its samples came."""

    pending: PendingWindow
    samples: np.ndarray  # (n, leads) float32, NaN where nothing arrived (yet)
    have: np.ndarray  # bool (n,): samples that arrived
    awaited: list[tuple[int, int]]  # ranges still expected (neither arrived nor lost)
    start: float  # UTC POSIX s of the window's first sample
    head_seq: int  # the analysis head when the window was set aside

    @classmethod
    def of(
        cls,
        pending: PendingWindow,
        win: Window | None,
        n_leads: int,
        ref: SampleBlock,
        awaited: list[tuple[int, int]],
        head_seq: int,
    ) -> LateWindow:
        """``pending`` set aside with what the history holds of it (``win``; None: nothing,
        timed from ``ref``, a block of the stream) to wait for ``awaited``."""
        if win is not None:
            samples = np.array(win.block.samples)
            have = ~np.isnan(samples).any(axis=1)
            start = win.block.start
        else:
            n = pending.end_seq - pending.first_seq
            samples = np.full((n, n_leads), np.nan, dtype=np.float32)
            have = np.zeros(n, dtype=bool)
            start = ref.start + (pending.first_seq - ref.seq) / ref.fs
        return cls(pending, samples, have, awaited, start, head_seq)

    def take(self, block: SampleBlock) -> None:
        """Copy the part of ``block`` inside the window."""
        first = self.pending.first_seq
        lo, hi = max(block.seq, first), min(block.end_seq, self.pending.end_seq)
        if lo < hi:
            self.samples[lo - first : hi - first] = block.samples[lo - block.seq : hi - block.seq]
            self.have[lo - first : hi - first] = True

    def lost(self, first_seq: int, end_seq: int) -> None:
        """``[first_seq, end_seq)`` will never arrive: stop waiting for it."""
        self.awaited = subtract(self.awaited, first_seq, end_seq)

    @property
    def complete(self) -> bool:
        first = self.pending.first_seq
        return all(self.have[a - first : b - first].all() for a, b in self.awaited)

    def block(self, fs: float, leads: tuple[str, ...], source: str) -> SampleBlock:
        """The window's samples as they stand (NaN where still missing)."""
        return SampleBlock(self.samples, fs, self.start, self.pending.first_seq, leads, source)


class LateWindows:
    """The windows waiting for late samples (see the module docstring)."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self._held: list[LateWindow] = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, window: LateWindow) -> None:
        self._held.append(window)

    def take(self, block: SampleBlock) -> None:
        """A block arrived (in any order): fill the windows it overlaps."""
        for w in self._held:
            w.take(block)

    def lost(self, first_seq: int, end_seq: int) -> None:
        for w in self._held:
            w.lost(first_seq, end_seq)

    def due(self, head: int | None, *, force: bool = False) -> list[LateWindow]:
        """The windows to send now: complete, waited long enough, crowded out (or all)."""
        wait = int(round(LATE_WAIT_S * self.fs))
        out: list[LateWindow] = []
        keep: list[LateWindow] = []
        for i, w in enumerate(self._held):
            overdue = head is not None and head - w.head_seq > wait
            crowded = len(self._held) - i > LATE_MAX
            (out if force or w.complete or overdue or crowded else keep).append(w)
        self._held = keep
        return out

    def cut_short(self) -> None:
        """At shutdown: every held window goes out marked as truncated."""
        for w in self._held:
            w.pending.trigger = w.pending.trigger.but(truncated_at_shutdown=True)
