"""Streaming ECG filters: band-pass and mains notch, block by block with carried state.

Every filter here is a cascade of second-order sections (:mod:`dsp.sos`) run with
its state carried from one block to the next, so filtering a recording in chunks of
any size gives exactly the samples that filtering it in one pass gives.

Bands (Hz):

- ``monitoring``: 0.5-40, what ambulatory monitors show (baseline wander and
  muscle noise suppressed);
- ``diagnostic``: 0.05-150, the AHA diagnostic band, with the upper edge pulled
  down to 0.45 x fs when the sample rate cannot carry 150 Hz (a 130 Hz patch
  gets 0.05-58.5 Hz).

The mains notch (50 or 60 Hz, Q = 30) is added when that frequency lies below
0.48 x fs.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from core.block import SampleBlock
from dsp.sos import butter_sos, notch_sos, sosfilt_inplace, steady_state

__all__ = ["BANDS", "EcgFilter", "SosFilter", "band_edges", "design_ecg_sos"]

Band = Literal["monitoring", "diagnostic"]

#: Nominal band edges, Hz.
BANDS: dict[str, tuple[float, float]] = {
    "monitoring": (0.5, 40.0),
    "diagnostic": (0.05, 150.0),
}

_NOTCH_Q = 30.0


def band_edges(band: Band, fs: float) -> tuple[float, float]:
    """Band edges (low, high) in Hz actually used at sample rate ``fs`` (Hz)."""
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; use one of {sorted(BANDS)}")
    low, high = BANDS[band]
    return low, min(high, 0.45 * fs)


def design_ecg_sos(
    fs: float, band: Band = "monitoring", mains_hz: float | None = 50.0
) -> np.ndarray:
    """Second-order sections for band-pass (Butterworth) plus mains notch.

    Parameters
    ----------
    fs
        Sample rate, Hz.
    band
        ``"monitoring"`` or ``"diagnostic"`` (see module docstring).
    mains_hz
        Mains frequency to notch out, Hz (50 or 60), or None for no notch.
    """
    low, high = band_edges(band, fs)
    parts = [butter_sos(2, low, "highpass", fs), butter_sos(4, high, "lowpass", fs)]
    if mains_hz and mains_hz < 0.48 * fs:
        parts.append(notch_sos(mains_hz, _NOTCH_Q, fs))
    return np.vstack(parts)


class SosFilter:
    """A fixed SOS cascade applied along time to (n, channels) arrays, state carried.

    The state starts as the steady state for the first sample seen (no start-up
    step), and :meth:`reset` forgets it (used after a gap in the stream).
    Blocks of a second are short, so the per-call overhead matters: the loop is a
    compiled one called directly (:func:`dsp.sos.sosfilt_inplace`).
    """

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.n_channels = n_channels
        self._zi_unit = steady_state(self.sos)  # (sections, 2) for a unit step
        self._zi: np.ndarray | None = None  # (channels, sections, 2)

    def reset(self) -> None:
        """Forget the state; the next sample restarts the filter in steady state."""
        self._zi = None

    def forget_if_not_finite(self) -> None:
        """After a NaN or inf went in, the state would carry it for ever: restart instead
        (the output is NaN from that sample to the end of its block, then clean again)."""
        if self._zi is not None and not math.isfinite(float(self._zi.sum())):
            self._zi = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` (n, channels) and return float64 (n, channels)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"expected (n, {self.n_channels}) samples, got {x.shape}")
        return self.process_channels(x.T).T

    def process_channels(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` laid out (channels, n); returns a new float64 (channels, n) array."""
        y = np.array(x, dtype=np.float64, order="C", ndmin=2)
        self.filter_inplace(y)
        return y

    def process_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Filter ``x`` (channels, n) into ``out``, a C-contiguous float64 (channels, n) array.

        ``out`` may be a view into a larger buffer: a streaming stage can write the
        filtered block straight into its history, with no new array per block.
        """
        out[...] = x
        self.filter_inplace(out)

    def state(self, first: np.ndarray) -> np.ndarray:
        """The carried state, (channels, sections, 2) C-contiguous float64, for code that
        filters in place itself; started in steady state for ``first`` (one float64 sample
        per channel) when there is none."""
        if self._zi is None:
            self._zi = np.ascontiguousarray(self._zi_unit[None, :, :] * first[:, None, None])
        return self._zi

    def filter_inplace(self, y: np.ndarray) -> None:
        """Filter ``y``, a C-contiguous float64 (channels, n) array, in place."""
        zi = self._zi
        if zi is None:
            if y.shape[1] == 0:
                return
            zi = self._zi = np.ascontiguousarray(self._zi_unit[None, :, :] * y[:, :1, None])
        sosfilt_inplace(self.sos, y, zi)


class EcgFilter:
    """Band-pass + mains notch for every lead of a stream of :class:`SampleBlock` s.

    A block whose first sequence number does not follow the previous block (a
    gap) restarts the filter, so samples on either side of a gap never mix.

    Parameters
    ----------
    fs
        Sample rate, Hz.
    n_leads
        Number of leads in each block.
    band
        ``"monitoring"`` (0.5-40 Hz) or ``"diagnostic"`` (0.05-150 Hz).
    mains_hz
        50 or 60 (Hz), or None.
    """

    def __init__(
        self,
        fs: float,
        n_leads: int,
        band: Band = "monitoring",
        mains_hz: float | None = 50.0,
    ) -> None:
        self.fs = fs
        self.band = band
        self.edges_hz = band_edges(band, fs)
        self.mains_hz = mains_hz if mains_hz and mains_hz < 0.48 * fs else None
        self._sos = SosFilter(design_ecg_sos(fs, band, mains_hz), n_leads)
        self._next_seq: int | None = None
        self.restarts = 0

    @property
    def description(self) -> str:
        """Human-readable summary, e.g. ``"0.5-40 Hz, notch 50 Hz"``."""
        low, high = self.edges_hz
        text = f"{low:g}-{high:g} Hz"
        return text + (f", notch {self.mains_hz:g} Hz" if self.mains_hz else "")

    def process(self, block: SampleBlock) -> SampleBlock:
        """The filtered block (same fs, start, seq and leads; float32 mV)."""
        if block.fs != self.fs:
            raise ValueError(f"filter designed for {self.fs} Hz, block is {block.fs} Hz")
        if self._next_seq is not None and block.seq != self._next_seq:
            self._sos.reset()
            self.restarts += 1
        self._next_seq = block.end_seq
        y = self._sos.process(block.samples)
        self._sos.forget_if_not_finite()
        return block.with_samples(y.astype(np.float32))
