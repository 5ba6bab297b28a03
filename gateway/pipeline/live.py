"""Live ECG: the head of the stream, display-filtered, in chunks of about ``live_block_s``.

Only samples newer than any shown before are live (backfilled samples are history,
not live). Chunks are contiguous: a hole closes the chunk before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.block import SampleBlock, concat_blocks
from dsp.filters import EcgFilter
from gateway.pipeline.settings import PipelineSettings

__all__ = ["LiveChunk", "LiveChunker"]


@dataclass(frozen=True, slots=True)
class LiveChunk:
    """About ``live_block_s`` seconds of display-filtered ECG for the live topic."""

    block: SampleBlock
    hr_bpm: float | None


class LiveChunker:
    """Filters the stream's head for display and batches it (see the module docstring)."""

    def __init__(self, fs: float, n_leads: int, settings: PipelineSettings) -> None:
        self._filter = EcgFilter(fs, n_leads, band=settings.band, mains_hz=settings.mains_hz)
        self._chunk = int(round(settings.live_block_s * fs))
        self._parts: list[SampleBlock] = []
        self._n = 0
        self.next_seq: int | None = None  # one past the newest sample shown

    def is_new(self, block: SampleBlock) -> bool:
        """Whether ``block`` extends the head of the stream."""
        return self.next_seq is None or block.end_seq > self.next_seq

    def add(self, block: SampleBlock, hr_bpm: float | None) -> list[LiveChunk]:
        """Filter the new part of ``block``; the chunks it completes."""
        if self.next_seq is not None and block.seq < self.next_seq:
            block = block.slice_seq(self.next_seq, block.end_seq)
        self.next_seq = block.end_seq
        shown = self._filter.process(block)
        out: list[LiveChunk] = []
        if self._parts and self._parts[-1].end_seq != shown.seq:
            out += self.flush(hr_bpm)  # a hole: what came before it is a chunk of its own
        self._parts.append(shown)
        self._n += shown.n
        if self._n >= self._chunk:
            out += self.flush(hr_bpm)
        return out

    def flush(self, hr_bpm: float | None) -> list[LiveChunk]:
        """The partial chunk (at a hole or at shutdown)."""
        if not self._parts:
            return []
        chunk = LiveChunk(concat_blocks(self._parts), hr_bpm)
        self._parts, self._n = [], 0
        return [chunk]
