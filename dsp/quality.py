"""Signal quality per 1-second window: flat line / lead-off, saturation, noise.

Windows are aligned on sample numbers (window k covers samples
``[k * n, (k + 1) * n)`` with ``n = round(fs)``), so the same recording cut into
blocks of any size yields the same windows and the same verdicts.

For each window and lead:

- **flat** (electrode off or amplifier railed quiet): peak-to-peak under 20 µV;
- **saturated**: more than 5 % of samples sitting at the window's extreme value
  (an ADC or amplifier clipping), or any sample beyond +/- 10 mV;
- **noise**: the share of signal power above 40 Hz (muscle, mains residue) against
  the QRS-band (5-25 Hz) power: the larger of the window's own and the patient's usual
  one, the median of the last ``USUAL_WINDOWS`` (30) windows of that lead that were
  neither flat nor saturated. Against its own power alone, a second without a QRS
  complex (a pause, a slow rhythm's diastole) read as noise whatever its noise was;
  on the MIT-BIH development records the usual power took the clean windows judged
  unusable from 0.59 % to 0.17 % (record 114: 7.6 % to 1.7 %) and kept muscle noise at
  12 dB flagged (BENCHMARKS.md, "Noise behaviour").

The quality index is 1 for clean signal and falls towards 0 as these get worse;
0 means unusable (flat or saturated). Beats and rhythm found in windows under
``usable`` (0.5) are to be flagged, not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.block import SampleBlock
from dsp.filters import SosFilter
from dsp.qrs_decide import RunningMedian
from dsp.qrs_front import compiled_kernel
from dsp.sos import butter_sos

__all__ = ["QualityTracker", "QualityWindow"]

_FLAT_MV = 0.020
_RAIL_MV = 10.0
_CLIP_SHARE = 0.05
USABLE = 0.5
USUAL_WINDOWS = 30  # windows in the median of a lead's usual QRS-band power


@dataclass(frozen=True, slots=True)
class QualityWindow:
    """Quality of one window (per lead arrays, in block lead order)."""

    first_seq: int
    end_seq: int
    index: np.ndarray  # 0..1 per lead
    flat: np.ndarray  # bool per lead
    saturated: np.ndarray  # bool per lead
    hf_ratio: np.ndarray  # share of power above 40 Hz, per lead

    @property
    def usable(self) -> bool:
        """True when at least one lead is usable (index >= 0.5)."""
        return bool((self.index >= USABLE).any())

    @property
    def lost(self) -> bool:
        """True when no lead carries a signal at all: every lead flat or saturated (an
        electrode off, an amplifier railed). A window can be unusable without being lost:
        the silence of a real pause has no QRS-band power, but it is not flat."""
        return bool((self.flat | self.saturated).all())


class QualityTracker:
    """Streaming per-window quality for a stream of blocks.

    Parameters
    ----------
    fs
        Sample rate, Hz.
    n_leads
        Leads per block.
    """

    def __init__(self, fs: float, n_leads: int) -> None:
        self.fs = fs
        self.n_leads = n_leads
        self.window = max(int(round(fs)), 1)
        hf = min(40.0, 0.4 * fs)
        self._hp = SosFilter(butter_sos(2, hf, "highpass", fs), n_leads)
        self._band = SosFilter(
            butter_sos(2, (5.0, min(25.0, 0.45 * fs)), "bandpass", fs),
            n_leads,
        )
        self._kernel: Any = compiled_kernel() if n_leads == 1 else None
        self._buf: list[np.ndarray] = []
        self._buf_n = 0
        self._next_seq: int | None = None
        self._win_start: int | None = None
        # per lead: the QRS-band power of its last windows with a signal (arrival order)
        self._usual = [RunningMedian(USUAL_WINDOWS) for _ in range(n_leads)]

    def process(self, block: SampleBlock) -> list[QualityWindow]:
        """Take a block; return the windows it completed."""
        if self._next_seq is not None and block.seq != self._next_seq:
            self._reset()  # gap: windows restart at the next aligned boundary
        self._next_seq = block.end_seq
        x = block.samples
        seq = block.seq
        if self._win_start is None:
            aligned = -(-seq // self.window) * self.window  # first boundary at or after seq
            skip = aligned - seq
            if skip >= x.shape[0]:
                return []
            x = x[skip:]
            seq = aligned
            self._win_start = aligned
        self._buf.append(x)
        self._buf_n += x.shape[0]
        out: list[QualityWindow] = []
        if self._buf_n < self.window:
            return out
        data = self._buf[0] if len(self._buf) == 1 else np.concatenate(self._buf)
        n_full = data.shape[0] // self.window
        for k in range(n_full):
            w = data[k * self.window : (k + 1) * self.window]
            out.append(self._judge(self._win_start, w))
            self._win_start += self.window
        rest = data[n_full * self.window :]
        self._buf = [rest] if rest.size else []
        self._buf_n = rest.shape[0]
        return out

    def _reset(self) -> None:
        self._buf, self._buf_n, self._win_start = [], 0, None
        self._hp.reset()
        self._band.reset()

    def _judge(self, first: int, w: np.ndarray) -> QualityWindow:
        n = w.shape[0]
        if self._kernel is not None:  # one lead: filters and sums in one compiled pass
            x1 = np.ascontiguousarray(w[:, 0], dtype=np.float64)
            hp, band = self._hp, self._band
            za, zb = hp.state(x1[:1]), band.state(x1[:1])
            hi, lo, c_hi, c_lo, e_hf, e_band = self._kernel.window_stats(
                hp.sos, za[0], band.sos, zb[0], x1
            )
            return self._verdict(first, n, [hi], [lo], [c_hi], [c_lo], [e_hf / n], [e_band / n])
        # The window laid out (leads, n) and reduced per lead by ufuncs (the same sums as
        # the kernel's, bit for bit: tests/dsp/test_quality.py).
        leads = w.shape[1]
        x = np.ascontiguousarray(w.T, dtype=np.float64)  # (leads, n)
        ext = np.empty((2, leads))  # per lead: highest, lowest
        np.maximum.reduce(x, axis=1, out=ext[0])
        np.minimum.reduce(x, axis=1, out=ext[1])
        n_hi, n_lo = _add(x == ext[:, :, None], axis=2).tolist()
        hi, lo = ext.tolist()
        y = self._filtered(x)
        np.multiply(y, y, out=y)
        p_hf, p_band = (_add(y, axis=2) / n).tolist()
        return self._verdict(first, n, hi, lo, n_hi, n_lo, p_hf, p_band)

    def _verdict(
        self,
        first: int,
        n: int,
        hi: list[float],
        lo: list[float],
        n_hi: list[int],
        n_lo: list[int],
        p_hf: list[float],
        p_band: list[float],
    ) -> QualityWindow:
        """The window's verdict from per-lead numbers (in plain Python: numpy's per-call
        cost on arrays of one to twelve values exceeds the arithmetic)."""
        flat, saturated, hf_ratio, index = [], [], [], []
        rows = zip(hi, lo, n_hi, n_lo, p_hf, p_band, self._usual, strict=True)
        for h, lw, c_hi, c_lo, ph, pb, usual in rows:
            is_flat = (h - lw) < _FLAT_MV
            clipped = not is_flat and max(c_hi, c_lo) / n > _CLIP_SHARE
            is_sat = clipped or max(h, -lw) > _RAIL_MV
            if not (is_flat or is_sat) and pb == pb:
                usual.append(pb)
            ratio = ph / (ph + (max(pb, usual.median()) + 1e-12))
            flat.append(is_flat)
            saturated.append(is_sat)
            hf_ratio.append(ratio)
            index.append(0.0 if is_flat or is_sat else max(1.0 - 2.0 * ratio, 0.0))
        return QualityWindow(
            first,
            first + self.window,
            np.array(index),
            np.array(flat),
            np.array(saturated),
            np.array(hf_ratio),
        )

    def _filtered(self, x: np.ndarray) -> np.ndarray:
        """(2, leads, n): ``x`` (leads, n) high-passed, and band-passed, one cascade after
        the other (the kernel's ``window_stats`` does both in one pass for one lead)."""
        y = np.empty((2, *x.shape))
        y[0] = x
        y[1] = x
        self._hp.filter_inplace(y[0])
        self._band.filter_inplace(y[1])
        return y


_add = np.add.reduce

