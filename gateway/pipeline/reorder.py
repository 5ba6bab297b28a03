"""Put a device's blocks back in sample order before analysis (pure, no I/O).

A patch with memory answers a dropped connection by backfilling the missed
samples later, while live samples keep coming: blocks reach the gateway out of
order. QRS detection, rhythm tracking and strips need the samples in order, so
the pipeline holds what arrives after a hole until the hole is

- filled (the backfilled blocks arrive: everything contiguous is released),
- declared lost (a final :class:`~core.events.Gap` from the driver covers it), or
- waited for long enough: once ``max_hold_s`` of stream has arrived after the hole
  (held samples), analysis moves on without it (the hole is released as a sequence
  jump, which the detectors treat as a gap). The hole's own length does not count:
  a patch back after an hour away gets ``max_hold_s`` to backfill that hour.

Samples that arrive after analysis moved past them (a late backfill, a duplicate)
are counted and not analysed again in order; the ranges analysis gave up waiting for
are listed in :attr:`BlockReorderer.gave_up_ranges`, so that strips and events whose
window falls in them can be completed from the late samples
(:class:`~gateway.pipeline.DevicePipeline` does). A device without backfill (Polar PMD,
the serial cart) uses ``max_hold_s = 0``: nothing is held.

Memory is bounded by ``max_hold_s`` of samples per device.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from core.block import SampleBlock

__all__ = ["BlockReorderer", "ReorderStats"]


@dataclass(slots=True)
class ReorderStats:
    """Counters, in samples unless named otherwise."""

    held_max: int = 0  # most samples ever held at once
    reordered_blocks: int = 0  # blocks that arrived before the samples preceding them
    filled: int = 0  # hole samples that arrived in time (backfill) and were analysed in order
    skipped: int = 0  # hole samples analysis moved past without (lost or waited too long)
    gave_up: int = 0  # holes released because the wait ran out (not declared lost)
    late: int = 0  # samples that arrived after analysis moved past them (not analysed)


class BlockReorderer:
    """Releases blocks in strictly increasing, gap-aware sample order.

    Parameters
    ----------
    max_hold_s
        Longest stretch of stream, seconds, held while waiting for a hole to be filled.
        0 disables holding (blocks are released as they come; late ones are dropped).
    """

    def __init__(self, max_hold_s: float) -> None:
        if max_hold_s < 0:
            raise ValueError("max_hold_s must be >= 0")
        self.max_hold_s = max_hold_s
        self.next_seq: int | None = None  # first sample analysis has not passed yet
        self._fs = 0.0
        self._held: dict[int, SampleBlock] = {}  # by first seq; never overlapping
        self._keys: list[int] = []  # the first seqs of ``_held``, sorted
        self._held_n = 0  # samples in ``_held``
        #: Ranges ``(first, end)`` analysis moved past because the wait ran out (not
        #: declared lost): their samples may still arrive, late. The latest 1000.
        self.gave_up_ranges: list[tuple[int, int]] = []
        self._lost: list[tuple[int, int]] = []  # final gaps analysis has not reached yet
        self.stats = ReorderStats()

    @property
    def held_samples(self) -> int:
        """Samples waiting for a hole before them to be filled."""
        return self._held_n

    def push(self, block: SampleBlock) -> list[SampleBlock]:
        """Take a block in arrival order; return the blocks now releasable, in order."""
        if block.n == 0:
            return []
        if self.next_seq is None:
            self.next_seq = block.seq
        self._fs = block.fs
        pieces = self._new_pieces(block)
        if not pieces:
            return []
        if self._keys and self._keys[-1] > block.seq:  # it fills a hole behind held data
            self.stats.reordered_blocks += 1
            self.stats.filled += sum(p.n for p in pieces)
        for piece in pieces:
            self._hold(piece)
        self.stats.held_max = max(self.stats.held_max, self.held_samples)
        return self._release()

    def start_at(self, first_seq: int) -> None:
        """The stream begins at ``first_seq`` (e.g. the oldest sample in the patch's
        memory), whatever arrives first; ignored once analysis has started."""
        if self.next_seq is None:
            self.next_seq = first_seq

    def lost(self, first_seq: int, end_seq: int) -> list[SampleBlock]:
        """The device will never deliver ``[first_seq, end_seq)``; return what that frees."""
        if self.next_seq is None or end_seq <= self.next_seq:
            return []
        self._lost.append((first_seq, end_seq))
        return self._release()

    def flush(self) -> list[SampleBlock]:
        """Release everything held (at shutdown), in order, holes left as they are."""
        out: list[SampleBlock] = []
        while self._keys:
            block = self._unhold()
            assert self.next_seq is not None
            self.stats.skipped += max(0, block.seq - self.next_seq)
            self.next_seq = block.end_seq
            out.append(block)
        return out

    # --- internals ---------------------------------------------------------------------
    def _new_pieces(self, block: SampleBlock) -> list[SampleBlock]:
        """The parts of ``block`` not yet analysed nor held (duplicates are counted late)."""
        assert self.next_seq is not None
        cur, pieces = max(block.seq, self.next_seq), []
        keys = self._keys
        # held blocks are sorted and never overlap: only those from the one holding ``cur``
        # up to the block's end can overlap it
        for i in range(max(bisect.bisect_right(keys, cur) - 1, 0), len(keys)):
            held = self._held[keys[i]]
            if held.seq >= block.end_seq:
                break
            if held.end_seq <= cur:
                continue
            if held.seq > cur:
                pieces.append(block.slice_seq(cur, held.seq))
            cur = max(cur, held.end_seq)
        if cur < block.end_seq:
            pieces.append(block.slice_seq(cur, block.end_seq))
        self.stats.late += block.n - sum(p.n for p in pieces)
        return pieces

    def _release(self) -> list[SampleBlock]:
        assert self.next_seq is not None
        out: list[SampleBlock] = []
        while True:
            self._skip_lost()
            if not self._keys:
                break
            first = self._keys[0]
            if first <= self.next_seq:
                block = self._unhold()
                out.append(block)
                self.next_seq = block.end_seq
                continue
            # A hole [next_seq, first): wait for it, unless the hold is full.
            if self._held_n <= self.max_hold_s * self._fs:
                break
            self.stats.gave_up += 1
            self.stats.skipped += first - self.next_seq
            self.gave_up_ranges.append((self.next_seq, first))
            del self.gave_up_ranges[:-1000]
            self.next_seq = first
        return out

    def _skip_lost(self) -> None:
        """Move past holes that final gaps declared lost (up to the next held block)."""
        assert self.next_seq is not None
        moved = True
        while moved:
            moved = False
            for first, end in self._lost:
                if first <= self.next_seq < end:
                    i = bisect.bisect_right(self._keys, self.next_seq)
                    upto = min(end, self._keys[i]) if i < len(self._keys) else end
                    self.stats.skipped += upto - self.next_seq
                    self.next_seq = upto
                    moved = True
            self._lost = [(f, e) for f, e in self._lost if e > self.next_seq]

    def _hold(self, block: SampleBlock) -> None:
        self._held[block.seq] = block
        bisect.insort(self._keys, block.seq)
        self._held_n += block.n

    def _unhold(self) -> SampleBlock:
        """Remove and return the earliest held block."""
        block = self._held.pop(self._keys.pop(0))
        self._held_n -= block.n
        return block
