"""The QRS detector's signal side: filters, energy feature, candidate peaks (no decisions).

For each block of one lead (Pan & Tompkins 1985, Hamilton & Tompkins 1986):

1. band-pass 5-18 Hz (the QRS energy band) and 0.5-40 Hz (for the R peak's place and
   amplitude), each with its state carried from block to block;
2. the feature ``e``: a 150 ms moving average of the absolute slope of the QRS band
   (linear in amplitude, so one large ectopic beat does not hide the small ones), from a
   running sum carried across blocks, so it is the same whatever the block sizes;
3. candidate peaks: samples of ``e`` that rise, are above 0, and are the largest of
   their ± 200 ms neighbourhood (this look-ahead is part of the latency);
4. each candidate measured on the window that produced it: the R peak at the largest
   deflection of the 0.5-40 Hz signal, its amplitude, steepest slope and QRS width.

Blocks of a second are short, so the fixed cost per block matters more than the cost
per sample: the history decisions look back on lives in one preallocated array (the
last ``hist_n`` samples, then the new block, computed straight into place), and the
views each block size needs are made once.

Two interchangeable paths compute the same numbers: :class:`_Compiled` (the optional C
kernel ``dsp._qrs_kernel``, built at install when a C compiler is there) and
:class:`_Numpy`. Which one runs is chosen when the detector is made; nothing is tried
or probed at import. The tests check that both give bit-identical beats. The compiled
path reads the samples as they come (float32 or float64, any stride) and can hand each
block's candidates straight to the compiled decider (:mod:`dsp.qrs_decide`).
"""

from __future__ import annotations

import math

import numpy as np

from dsp.beat_measure import FEATURES, N_STATS
from dsp.filters import SosFilter, band_edges
from dsp.qrs_decide import Candidate
from dsp.sos import butter_sos

__all__ = ["WIDTH_SLOPE", "QrsFront", "compiled_kernel"]

_QRS_BAND_HZ = (5.0, 18.0)
_MWI_S = 0.150
_REFRACTORY_S = 0.200
WIDTH_SLOPE = 0.3  # QRS width: span where the slope exceeds 30 % of its peak
_ROWS = 6  # f, |slope| d, running sum of d, feature e, amp, |slope| of amp
_KERNEL_SAMPLES = (np.dtype(np.float32), np.dtype(np.float64))  # what the kernel reads as is


#: What the Python side calls in ``dsp._qrs_kernel``.
_KERNEL_NAMES = ("AfCore", "Decider", "all_finite", "beat", "candidate", "feature", "forest",
                 "front", "nearest", "peaks", "pwave", "sosfilt", "window_stats")  # fmt: skip
#: What its ``beat`` must measure: (features with one lead, with two, running means).
_BEAT_LAYOUT = (len(FEATURES[1]), len(FEATURES[2]), N_STATS)


def compiled_kernel() -> object | None:
    """The compiled kernel module, or None when it was not built (asked when needed). A
    build older than this code (one without every function the Python side calls, say a
    module left from a previous install, or one whose beat() measures other features)
    counts as not built: the numpy code runs."""
    try:
        from dsp import _qrs_kernel
    except ImportError:  # pragma: no cover - built wherever a C compiler was at install
        return None
    if not all(hasattr(_qrs_kernel, name) for name in _KERNEL_NAMES):
        return None
    if getattr(_qrs_kernel, "beat_layout", None) != _BEAT_LAYOUT:
        return None
    return _qrs_kernel


def detector_sos(fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The detector's two cascades: the QRS band (5-18 Hz) and the 0.5-40 Hz signal."""
    low, high = _QRS_BAND_HZ
    qrs = butter_sos(2, (low, min(high, 0.45 * fs)), "bandpass", fs)
    lo, hi = band_edges("monitoring", fs)
    amp = np.vstack([butter_sos(2, lo, "highpass", fs), butter_sos(2, hi, "lowpass", fs)])
    return qrs, amp


class QrsFront:
    """Feature and candidates of one lead over a bounded history (see module docstring).

    Parameters
    ----------
    fs
        Sample rate, Hz.
    kernel
        The compiled kernel module, or None for the numpy path.
    """

    def __init__(self, fs: float, kernel: object | None) -> None:
        self.fs = fs
        self.w = max(int(round(_MWI_S * fs)), 1)
        self.r = max(int(round(_REFRACTORY_S * fs)), 1)
        # R is searched in [energy peak - window - delay, energy peak]
        self.locate = self.w + int(round(0.05 * fs))
        self.keep = self.r + self.locate + 2  # history the decisions read behind the scan
        self.qrs_f, self.amp_f = (SosFilter(sos, 1) for sos in detector_sos(fs))
        # history kept ahead of each block: what decisions read (keep) plus the look-ahead
        self.hist_n = self.keep + self.r
        #: The compiled decider (``dsp._qrs_kernel.Decider``) to which the kernel hands each
        #: block's candidates in the same call, or None: they wait for :meth:`peaks`.
        self.decider: object | None = None
        self._path = _Compiled(self, kernel) if kernel is not None else _Numpy(self)
        #: ``all_finite(x)``: whether every sample of a block is (the usual block: no hole).
        self.all_finite = self._path.all_finite
        #: ``append(x)``: filter a block and compute its feature, straight into the history.
        self.append = self._path.append
        self.alloc(self.hist_n + int(np.ceil(fs)))
        self.reset(None)

    # --- buffers --------------------------------------------------------------------------
    def alloc(self, cap: int) -> None:
        """(Re)allocate the history for blocks of up to ``cap - hist_n`` samples (the
        history itself is kept)."""
        buf = np.zeros((_ROWS, cap))
        old = getattr(self, "buf", None)
        if old is not None:
            buf[:, : self.hist_n] = old[:, : self.hist_n]
        self.buf = buf
        self.f, self.d, self.csum, self.e, self.amp, self.amp_slope = buf
        self.scratch = np.zeros(cap)  # sliding maximum of e (numpy path)
        self.cap = cap
        self.views: dict[int, tuple[np.ndarray, ...]] = {}

    def reset(self, first_seq: int | None) -> None:
        """A new stream segment begins at ``first_seq`` (no history before it)."""
        self.qrs_f.reset()
        self.amp_f.reset()
        if self.cap > 4 * (self.hist_n + self.fs):  # a huge block grew the buffers
            self.alloc(self.hist_n + int(np.ceil(self.fs)))
        self.start = first_seq  # first sample index of this segment
        seg0 = first_seq if first_seq is not None else 0
        self.base = seg0 - self.hist_n  # buffer slot i holds sample base + i
        self.pos = self.hist_n  # the next block goes in at slot pos
        self.buf[:, : self.hist_n] = 0.0  # no history: running sums start at 0
        self.fresh = True  # no sample yet: the first slope of the segment is 0
        self.scan_from = seg0
        self.found: tuple[int, int, list[int]] | None = None  # the kernel's

    @property
    def end(self) -> int:
        """One past the newest sample held."""
        return self.base + self.pos

    # --- per block --------------------------------------------------------------------------
    def candidates(self, horizon: int) -> list[Candidate] | None:
        """The measured candidates in [scan position, ``horizon``), in order, and the scan
        moved to ``horizon``; None when there is nothing new to scan."""
        slots = self.peaks(horizon)
        if slots is None:
            return None
        return [self._path.candidate(self.base + i) for i in slots]

    def peaks(self, horizon: int) -> list[int] | None:
        """The candidate peaks in [scan position, ``horizon``) as history slots (sample -
        :attr:`base`), in order, and the scan moved to ``horizon``; None when there is
        nothing new to scan."""
        if horizon <= self.scan_from:
            return None
        a, b = self.scan_window(horizon)
        found = self._peaks(a, b) if b > a else []
        self.scan_from = horizon
        return found

    def scan_window(self, horizon: int) -> tuple[int, int]:
        """[a, b): where a scan up to ``horizon`` looks for peaks (one sample of look-ahead
        and look-back inside the segment)."""
        assert self.start is not None
        return max(self.scan_from, self.start + 1), min(horizon, self.end - 1)

    def _peaks(self, a: int, b: int) -> list[int]:
        """Slots of the candidate peaks in samples [a, b)."""
        assert self.start is not None
        found, self.found = self.found, None
        if found is not None and found[0] == a and found[1] == b:  # found with the block
            return found[2]
        first, stop, base = self.start - self.base, self.pos, self.base
        if not math.isfinite(self.csum[stop - 1]):  # NaN or inf in the segment: exact search
            return _local_peaks(self.e, a - base, b - base, self.r, first, stop)
        return self._path.peaks(a - base, b - base, first, stop)

    def block_views(self, n: int) -> tuple[np.ndarray, ...]:
        """Views of the history for a block of ``n`` samples (made once per size)."""
        views = self.views.get(n)
        if views is None:
            if len(self.views) > 16:  # block sizes vary: keep the cache small
                self.views.clear()
            h, w, q = self.hist_n, self.w, self.hist_n + n
            f, csum, e, amp = self.f, self.csum, self.e, self.amp
            views = self.views[n] = (
                self.buf[:, n:q],  # the history to keep after this block
                self.buf[0:1, h:q],  # filter outputs, (1, n) as SosFilter wants them
                self.buf[4:5, h:q],
                f[h:q],  # f and the sample before each
                f[h - 1 : q - 1],
                self.d[h:q],
                csum[h - 1 : q],  # running sums, from the one before the block
                csum[h:q],
                csum[h - w : q - w],  # ... and w samples earlier
                e[h:q],
                amp[h:q],  # amp and the sample before each
                amp[h - 1 : q - 1],
                self.amp_slope[h:q],
            )
        return views

    def shift(self, n: int) -> int:
        """Make room for a block of ``n`` (the caller moved the previous block's tail to
        the front): returns the previous block's size."""
        done = self.pos - self.hist_n
        if done:
            self.base += done
            self.pos = self.hist_n
        if self.hist_n + n > self.cap:
            self.alloc(max(self.hist_n + n, (3 * self.cap) // 2))
        return done


class _Numpy:
    """The numpy path: a handful of array operations per block."""

    def __init__(self, front: QrsFront) -> None:
        self.front = front

    @staticmethod
    def all_finite(x: np.ndarray) -> bool:
        return math.isfinite(float(np.add.reduce(x)))

    def append(self, x: np.ndarray) -> None:
        fr = self.front
        h, n = fr.hist_n, x.shape[0]
        done = fr.pos - h
        if done:  # its last h samples become the history
            fr.buf[:, :h] = fr.block_views(done)[0]
        fr.shift(n)
        views = fr.block_views(n)
        _, f_out, amp_out, f, f_prev, d, run, csum, lag, e, amp, amp_prev, amp_slope = views
        fr.qrs_f.process_into(x, f_out)
        fr.amp_f.process_into(x, amp_out)
        if fr.fresh:  # first sample of the segment: its slope is 0
            fr.f[h - 1] = fr.f[h]
            fr.fresh = False
        np.subtract(f, f_prev, out=d)
        np.abs(d, out=d)
        csum[...] = d  # moving average of |slope| from the running sum
        np.add.accumulate(run, out=run)
        np.subtract(csum, lag, out=e)
        np.divide(e, float(fr.w), out=e)
        # |slope| of the 0.5-40 Hz signal, for QRS widths (garbage at a segment's first
        # sample, which no width window reaches back to)
        np.subtract(amp, amp_prev, out=amp_slope)
        np.abs(amp_slope, out=amp_slope)
        fr.pos = h + n

    def peaks(self, a: int, b: int, first: int, stop: int) -> list[int]:
        fr = self.front
        return _local_peaks_fast(fr.e, a, b, fr.r, first, stop, fr.scratch)

    def candidate(self, idx: int) -> Candidate:
        fr = self.front
        assert fr.start is not None
        base = fr.base
        lo, hi = max(idx - fr.locate, fr.start) - base, idx - base + 1
        amp = fr.amp[lo:hi]
        r_rel = int(np.abs(amp).argmax())
        width = 0.0
        if hi - lo > 1:  # QRS width: span where the slope exceeds a share of its steepest
            slope = fr.amp_slope[lo + 1 : hi]  # = np.abs(np.diff(amp))
            steep = (slope > WIDTH_SLOPE * _max(slope)).nonzero()[0].tolist()
            if steep:
                width = float(steep[-1] - steep[0] + 1)
        peak, slope_max = fr.e.item(hi - 1), _max(fr.d[lo:hi])
        return Candidate(idx, peak, slope_max, base + lo + r_rel, amp.item(r_rel), width=width)


class _Compiled:
    """The compiled path: one C call per block filters, computes the feature and finds
    the peaks the detector's scan after the block asks for; with a compiled decider
    (:attr:`QrsFront.decider`), it measures and decides them too, and the scan is done."""

    def __init__(self, front: QrsFront, kernel: object) -> None:
        self.front = front
        self.k = kernel

    def all_finite(self, x: np.ndarray) -> bool:
        if x.dtype in _KERNEL_SAMPLES:
            return self.k.all_finite(x)  # type: ignore[attr-defined]
        return _Numpy.all_finite(x)

    def append(self, x: np.ndarray) -> None:
        fr = self.front
        if x.dtype not in _KERNEL_SAMPLES:
            x = x.astype(np.float64)
        h, n = fr.hist_n, x.shape[0]
        done = fr.pos - h
        if h + n > fr.cap:  # a block larger than any before: grow, then filter here
            if done:
                fr.buf[:, :h] = fr.block_views(done)[0]
            fr.shift(n)
            views = fr.block_views(n)
            fr.qrs_f.process_into(x, views[1])
            fr.amp_f.process_into(x, views[2])
            self.k.feature(fr.buf, fr.cap, h, n, fr.w, fr.fresh)  # type: ignore[attr-defined]
            fr.fresh = False
            fr.pos = h + n
            return
        if done:
            fr.base += done
        first = x[:1]  # starts the filters' states (float32 widens exactly)
        assert fr.start is not None
        fr.pos = h + n
        horizon = fr.end - fr.r  # the detector's scan after this block
        a, b = fr.scan_window(horizon)
        base = fr.base
        args = (
            fr.buf, fr.cap, done, h, n, fr.w, fr.fresh,
            x, fr.qrs_f.sos, fr.qrs_f.state(first), fr.amp_f.sos, fr.amp_f.state(first),
            a - base, b - base, fr.r, fr.start - base,
        )  # fmt: skip
        fr.fresh = False
        fr.found = None
        if fr.decider is not None and horizon > fr.scan_from:  # that scan, done and decided
            if self.k.front(*args, fr.decider, base, fr.locate, WIDTH_SLOPE, horizon) is not None:
                fr.scan_from = horizon
            return
        found = self.k.front(*args)  # type: ignore[attr-defined]
        fr.found = None if found is None else (a, b, found)

    def peaks(self, a: int, b: int, first: int, stop: int) -> list[int]:
        fr = self.front
        return self.k.peaks(fr.buf, fr.cap, a, b, fr.r, first, stop)  # type: ignore[attr-defined]

    def candidate(self, idx: int) -> Candidate:
        fr = self.front
        assert fr.start is not None
        base = fr.base
        lo, hi = max(idx - fr.locate, fr.start) - base, idx - base + 1
        r_rel, amplitude, width, slope, peak = self.k.candidate(  # type: ignore[attr-defined]
            fr.buf, fr.cap, lo, hi, WIDTH_SLOPE
        )
        return Candidate(idx, peak, slope, base + lo + r_rel, amplitude, width=width)


def _max(x: np.ndarray) -> float:
    """``float(x.max())`` (NaN if any is NaN) for a short 1-D array: ``argmax`` costs less."""
    return x.item(x.argmax())


def _local_peaks(e: np.ndarray, a: int, b: int, r: int, first: int, stop: int) -> list[int]:
    """Candidate peaks of the feature ``e``, sample by sample: the indices ``i`` in [a, b).

    A candidate rises strictly and does not fall, ``e[i - 1] < e[i] >= e[i + 1]``, is
    above 0, and is the largest of ``e[max(i - r, first) : min(i + r + 1, stop)]``
    (NaN never qualifies, nor does a window holding one). Needs ``first < a`` and
    ``b < stop``.
    """
    mid = e[a:b]
    rising = (mid > e[a - 1 : b - 1]) & (mid >= e[a + 1 : b + 1]) & (mid > 0)
    return [
        i
        for i in (a + np.flatnonzero(rising)).tolist()
        if e[i] >= e[max(i - r, first) : min(i + r + 1, stop)].max()
    ]


def _local_peaks_fast(
    e: np.ndarray, a: int, b: int, r: int, first: int, stop: int, scratch: np.ndarray
) -> list[int]:
    """:func:`_local_peaks` for finite ``e``, with one sliding maximum instead of a loop.

    A sample equal to the maximum of its +/- r window is not below its right
    neighbour, so only the rise and the sign are left to check, on the few samples
    found. ``scratch`` is a float64 array as long as ``e``.
    """
    lo, hi = max(a - r, first), min(b + r, stop)
    _sliding_max(e[lo:hi], 2 * r + 1, scratch[lo:hi])
    hits = (e[a:b] == scratch[a:b]).nonzero()[0].tolist()
    item = e.item
    return [i for i in [a + h for h in hits] if item(i) > item(i - 1) and item(i) > 0]


def _sliding_max(x: np.ndarray, size: int, out: np.ndarray) -> None:
    """``out[i] = max(x[i - size // 2 : i + size // 2 + 1])``, the window clipped to ``x``."""
    half = size // 2
    padded = np.pad(x, half, mode="edge")  # repeating the edges never changes a maximum
    np.lib.stride_tricks.sliding_window_view(padded, size).max(axis=1, out=out)
