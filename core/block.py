"""The one typed unit of ECG data that moves through the gateway.

A :class:`SampleBlock` is a contiguous run of samples from one device: every
driver produces them, every DSP stage consumes them, and the payload builders
turn them into MQTT messages. Samples carry their own sequence numbers so that
gaps are always visible: block ``b`` covers sequence numbers
``b.seq .. b.end_seq - 1`` and the next block from the same source should
start at ``b.end_seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

__all__ = ["SampleBlock", "concat_blocks"]


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Samples from one device, shape ``(n, n_leads)``, in millivolts.

    Parameters
    ----------
    samples
        float32 array of shape ``(n, n_leads)`` in mV. A 1-D array is taken as
        one lead. The array is made read-only.
    fs
        Sample rate in Hz.
    start
        UTC time of the first sample, POSIX seconds.
    seq
        Sequence number of the first sample (per source, counts samples).
    leads
        Lead names, one per column (``"I"``, ``"II"``, ``"V1"``, ``"ECG"``...).
    source
        Device id the samples came from.
    """

    samples: np.ndarray
    fs: float
    start: float
    seq: int
    leads: tuple[str, ...]
    source: str = ""
    units: str = field(default="mV")

    def __post_init__(self) -> None:
        arr = np.asarray(self.samples, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"samples must be 2-D (n, n_leads), got shape {arr.shape}")
        leads = tuple(self.leads)
        if arr.shape[1] != len(leads):
            raise ValueError(f"{arr.shape[1]} sample columns but {len(leads)} lead names")
        if not self.fs > 0:
            raise ValueError(f"sample rate must be positive, got {self.fs!r} Hz")
        if self.seq < 0:
            raise ValueError(f"sequence number must be >= 0, got {self.seq}")
        if arr.flags.writeable:
            arr = arr.view()  # a read-only view; the caller's array keeps its flags
            arr.flags.writeable = False
        object.__setattr__(self, "samples", arr)
        object.__setattr__(self, "leads", leads)
        object.__setattr__(self, "seq", int(self.seq))
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "start", float(self.start))

    # --- sizes and times -------------------------------------------------
    @property
    def n(self) -> int:
        """Number of samples (rows)."""
        return int(self.samples.shape[0])

    @property
    def n_leads(self) -> int:
        return int(self.samples.shape[1])

    @property
    def end_seq(self) -> int:
        """Sequence number one past the last sample."""
        return self.seq + self.n

    @property
    def duration(self) -> float:
        """Duration covered by the samples, seconds."""
        return self.n / self.fs

    @property
    def end(self) -> float:
        """UTC POSIX seconds one sample period after the last sample."""
        return self.start + self.duration

    @property
    def start_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.start, tz=UTC)

    def time_of(self, seq: int | np.ndarray) -> float | np.ndarray:
        """UTC POSIX seconds of sample number ``seq`` (extrapolated linearly)."""
        return self.start + (np.asarray(seq) - self.seq) / self.fs

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples as a 1-D view, mV."""
        return self.samples[:, self.leads.index(name)]

    # --- slicing ---------------------------------------------------------
    def slice_seq(self, first: int, end: int) -> SampleBlock:
        """The samples with sequence numbers in ``[first, end)`` (clipped to this block)."""
        lo = max(first, self.seq) - self.seq
        hi = min(end, self.end_seq) - self.seq
        hi = max(hi, lo)
        return SampleBlock(
            self.samples[lo:hi],
            self.fs,
            self.start + lo / self.fs,
            self.seq + lo,
            self.leads,
            self.source,
            self.units,
        )

    def with_samples(self, samples: np.ndarray, leads: Sequence[str] | None = None) -> SampleBlock:
        """Same timing and identity, new sample values (e.g. after a filter)."""
        return SampleBlock(
            samples,
            self.fs,
            self.start,
            self.seq,
            tuple(leads) if leads is not None else self.leads,
            self.source,
            self.units,
        )


def concat_blocks(blocks: Sequence[SampleBlock]) -> SampleBlock:
    """Join contiguous blocks of one source into one block.

    Raises ``ValueError`` if the blocks are not contiguous in sequence or
    differ in sample rate, leads or source.
    """
    if not blocks:
        raise ValueError("no blocks to concatenate")
    first = blocks[0]
    expected = first.seq
    for b in blocks:
        if b.fs != first.fs or b.leads != first.leads or b.source != first.source:
            raise ValueError("blocks differ in sample rate, leads or source")
        if b.seq != expected:
            raise ValueError(f"blocks not contiguous: expected seq {expected}, got {b.seq}")
        expected = b.end_seq
    if len(blocks) == 1:
        return first
    return SampleBlock(
        np.concatenate([b.samples for b in blocks], axis=0),
        first.fs,
        first.start,
        first.seq,
        first.leads,
        first.source,
        first.units,
    )
