"""A bounded, gap-aware history of one device's recorded samples.

Strips and post-symptom events are cut from this history. It keeps blocks as
they arrived (no copy per sample), in sequence order, for a fixed number of
seconds; holes stay holes and come back as NaN, so a strip always says exactly
which samples were recorded.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from core.block import SampleBlock
from core.ranges import runs_of

__all__ = ["SampleHistory", "Window"]


@dataclass(frozen=True, slots=True)
class Window:
    """Samples ``[first_seq, end_seq)``; ``missing`` lists ``(first, end)`` runs not recorded."""

    block: SampleBlock
    missing: tuple[tuple[int, int], ...]

    @property
    def complete(self) -> bool:
        return not self.missing


class SampleHistory:
    """Keep the last ``keep_s`` seconds of samples from one source.

    Parameters
    ----------
    keep_s
        Seconds of samples kept behind the newest one (holes not counted).
    """

    def __init__(self, keep_s: float) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        self.keep_s = float(keep_s)
        self._blocks: list[SampleBlock] = []
        self._starts: list[int] = []
        self._held = 0  # samples in ``_blocks``
        self.late_or_duplicate = 0  # blocks (or parts) that overlapped what was already held

    @property
    def empty(self) -> bool:
        return not self._blocks

    @property
    def first_seq(self) -> int | None:
        return self._blocks[0].seq if self._blocks else None

    @property
    def end_seq(self) -> int | None:
        """One past the newest sample held (None when empty)."""
        return max(b.end_seq for b in self._blocks[-4:]) if self._blocks else None

    def add(self, block: SampleBlock) -> None:
        """Insert a block (in order or late, e.g. a backfilled range). Overlaps are trimmed."""
        if block.n == 0:
            return
        i = bisect.bisect_right(self._starts, block.seq)
        # Trim against the neighbour before and after so held samples never overlap.
        if i > 0 and self._blocks[i - 1].end_seq > block.seq:
            self.late_or_duplicate += 1
            block = block.slice_seq(self._blocks[i - 1].end_seq, block.end_seq)
        if i < len(self._blocks) and block.end_seq > self._starts[i]:
            self.late_or_duplicate += 1
            block = block.slice_seq(block.seq, self._starts[i])
        if block.n == 0:
            return
        self._blocks.insert(i, block)
        self._starts.insert(i, block.seq)
        self._held += block.n
        self._prune()

    def _prune(self) -> None:
        """Drop the oldest blocks beyond ``keep_s`` of samples held behind the newest
        sample. Counted in samples held, not in sample numbers: across a jump (a hole
        analysis moved past), the samples before it stay until as many came after it, so
        the strips still waiting for them find them."""
        keep = int(round(self.keep_s * self._blocks[-1].fs))
        drop = 0
        while drop < len(self._blocks) - 1 and self._held - self._blocks[drop].n >= keep:
            self._held -= self._blocks[drop].n
            drop += 1
        if drop:
            del self._blocks[:drop]
            del self._starts[:drop]

    def window(self, first_seq: int, end_seq: int) -> Window | None:
        """Samples ``[first_seq, end_seq)``, NaN where not recorded; None if nothing overlaps.
        A window cannot begin before the stream's first sample (0)."""
        first_seq = max(first_seq, 0)
        if end_seq <= first_seq or not self._blocks:
            return None
        ref = self._blocks[-1]
        # held blocks are sorted and never overlap: those that may overlap the window,
        # found by bisection (hours of small frames are thousands of blocks)
        lo = max(0, bisect.bisect_right(self._starts, first_seq) - 1)
        hi = bisect.bisect_left(self._starts, end_seq)
        parts = [b for b in self._blocks[lo:hi] if b.end_seq > first_seq]
        if not parts:
            return None
        out = np.full((end_seq - first_seq, ref.n_leads), np.nan, dtype=np.float32)
        covered = np.zeros(end_seq - first_seq, dtype=bool)
        for b in parts:
            lo = max(b.seq, first_seq)
            hi = min(b.end_seq, end_seq)
            out[lo - first_seq : hi - first_seq] = b.samples[lo - b.seq : hi - b.seq]
            covered[lo - first_seq : hi - first_seq] = True
        # Time of first_seq, extrapolated from the nearest held block.
        anchor = parts[0]
        start = anchor.start + (first_seq - anchor.seq) / anchor.fs
        block = SampleBlock(out, ref.fs, start, first_seq, ref.leads, ref.source, ref.units)
        return Window(block, runs_of(~covered, first_seq))
