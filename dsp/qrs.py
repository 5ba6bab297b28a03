"""Causal streaming QRS (R-peak) detector with a bounded decision latency.

The detector follows the classic energy-envelope design (Pan & Tompkins 1985,
Hamilton & Tompkins 1986), written to run block by block with explicit state:

1. band-pass 5-18 Hz (QRS energy band), derivative;
2. moving-window average of the absolute slope over 150 ms -> the feature ``e``
   (linear in amplitude, so one large ectopic beat does not hide the small ones);
3. candidate peaks: local maxima of ``e`` over +/- 200 ms (the refractory
   period; this look-ahead is part of the latency);
4. adaptive thresholds from running signal and noise peak levels
   (``THR1 = NPK + 0.3125 (SPK - NPK)``, medians of the last 8 QRS and noise
   peaks as in Hamilton & Tompkins), with T-wave rejection (a candidate
   within 360 ms of the last beat whose steepest slope is under half that beat's
   slope is a T wave);
5. search-back: when no beat has come for 1.66 x the mean RR interval, the
   largest candidate above ``THR1 / 2`` since the last beat is taken;
6. the R peak is placed at the largest deflection of the 0.5-40 Hz signal in
   the window that produced the energy peak.

Every decision depends only on sample indices, never on how the stream was cut
into blocks: processing a record in chunks of any size gives exactly the beats
that one pass gives (the tests check this). A beat is reported at most
:attr:`QrsDetector.latency_s` seconds after its R peak was received.

The first ``learn_s`` seconds (2 s) of a stream train the thresholds; beats in
them are reported once training ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from dsp.block import SampleBlock
from dsp.filters import SosFilter, band_edges

__all__ = ["Beats", "QrsDetector", "detect_beats"]

_QRS_BAND_HZ = (5.0, 18.0)
_MWI_S = 0.150
_REFRACTORY_S = 0.200
_T_WAVE_S = 0.360
_LEARN_S = 2.0
_SEARCHBACK_RR = 1.66
_RR_CAP_S = 1.5  # mean RR used for search-back is capped: bounds the latency
_RR_HISTORY = 8
_LEVEL_HISTORY = 8  # peaks in the median signal and noise levels (Hamilton & Tompkins)
_WIDTH_SLOPE = 0.3  # QRS width: span where the slope exceeds 30 % of its peak
_WIDE = 1.6  # wider than 1.6 x the median of recent narrow beats: likely ventricular
_THRESHOLD = 0.3125


@dataclass(frozen=True, slots=True)
class Beats:
    """Detected beats, in time order.

    Attributes
    ----------
    seq
        Sample sequence number of each R peak (int64).
    fs
        Sample rate, Hz.
    amplitude_mv
        R-peak deflection in the 0.5-40 Hz signal, mV.
    rr_s
        Interval from the previous beat, s (NaN for the first beat of a stream
        or after a gap).
    width_s
        QRS width estimate, s (span of steep slope around the R peak).
    ventricular
        True where the QRS is much wider than the recent narrow beats (over 1.6 x
        their median width): a likely ventricular beat. A measurement, not a
        diagnosis.
    """

    seq: np.ndarray
    fs: float
    amplitude_mv: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rr_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    width_s: np.ndarray | None = None
    ventricular: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.seq.size)

    @classmethod
    def empty(cls, fs: float) -> Beats:
        return cls(
            np.zeros(0, np.int64), fs, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool)
        )

    @classmethod
    def concat(cls, parts: list[Beats], fs: float) -> Beats:
        """One :class:`Beats` from several, in order."""
        if not parts:
            return cls.empty(fs)

        def cat(name: str, default: np.ndarray) -> np.ndarray:
            return np.concatenate(
                [
                    getattr(p, name) if getattr(p, name) is not None else default[: len(p)]
                    for p in parts
                ]
            )

        n = sum(len(p) for p in parts)
        return cls(
            np.concatenate([p.seq for p in parts]).astype(np.int64),
            fs,
            np.concatenate([p.amplitude_mv for p in parts]),
            np.concatenate([p.rr_s for p in parts]),
            cat("width_s", np.full(n, np.nan)),
            cat("ventricular", np.zeros(n, bool)),
        )


@dataclass(slots=True)
class _Candidate:
    idx: int  # sample index of the energy peak
    peak: float  # feature value at the peak
    slope: float  # steepest derivative in the QRS window
    r_idx: int  # R-peak location
    amplitude: float  # mV at r_idx (0.5-40 Hz signal)
    rr: float = float("nan")  # samples since the previous beat's R peak
    width: float = 0.0  # samples of steep slope around R
    ventricular: bool = False


class QrsDetector:
    """Streaming R-peak detector for one lead of a stream of blocks.

    Parameters
    ----------
    fs
        Sample rate, Hz (at least 100).
    lead
        Index of the lead to analyse in each block.
    """

    def __init__(self, fs: float, lead: int = 0) -> None:
        if fs < 100:
            raise ValueError(f"QRS detection needs fs >= 100 Hz, got {fs}")
        self.fs = float(fs)
        self.lead = lead
        self._w = max(int(round(_MWI_S * fs)), 1)
        self._r = max(int(round(_REFRACTORY_S * fs)), 1)
        self._t_wave = int(round(_T_WAVE_S * fs))
        self._learn = int(round(_LEARN_S * fs))
        self._rr_cap = int(round(_RR_CAP_S * fs))
        low, high = _QRS_BAND_HZ
        band = [low, min(high, 0.45 * fs)]
        self._qrs_sos = signal.butter(2, band, "bandpass", fs=fs, output="sos")
        lo, hi = band_edges("monitoring", fs)
        self._amp_sos = np.vstack(
            [
                signal.butter(2, lo, "highpass", fs=fs, output="sos"),
                signal.butter(2, hi, "lowpass", fs=fs, output="sos"),
            ]
        )
        # R is searched in [energy peak - window - delay, energy peak]
        self._locate = self._w + int(round(0.05 * fs))
        self._keep = self._r + self._locate + 2
        #: Longest time from receiving an R peak to reporting it, s.
        self._window = int(np.ceil(_SEARCHBACK_RR * self._rr_cap))
        self.latency_s = (self._r + self._locate + self._window + 1) / fs
        self.gaps = 0
        self._no_beats = Beats.empty(fs)
        self._reset_stream()
        self._sig: deque[float] = deque(maxlen=_LEVEL_HISTORY)  # recent QRS peak levels
        self._noi: deque[float] = deque(maxlen=_LEVEL_HISTORY)  # recent noise peak levels
        self._trained = False

    # --- state ----------------------------------------------------------------
    def _reset_stream(self, first_seq: int | None = None) -> None:
        self._qrs_f = SosFilter(self._qrs_sos, 1)
        self._amp_f = SosFilter(self._amp_sos, 1)
        self._prev_f: float | None = None
        self._csum_last = 0.0
        self._csum_hist = np.zeros(self._w)  # running sums of the last w samples
        self._start = first_seq  # first sample index of this stream segment
        self._next_seq = first_seq
        self._buf_start = first_seq if first_seq is not None else 0
        self._e = np.zeros(0)
        self._d = np.zeros(0)
        self._amp = np.zeros(0)
        self._scan_from = first_seq if first_seq is not None else 0
        self._learning: list[_Candidate] = []
        self._noise_since_beat: list[_Candidate] = []
        self._last_beat: int | None = None
        self._last_r: int | None = None
        self._last_slope = 0.0
        self._rr: list[int] = []
        self._narrow_widths: deque[float] = deque(maxlen=16)
        self._deadline: int | None = None

    # --- input ------------------------------------------------------------------
    def process(self, block: SampleBlock) -> Beats:
        """Take one block; return the beats now final (possibly from earlier blocks)."""
        if block.fs != self.fs:
            raise ValueError(f"detector set up for {self.fs} Hz, block is {block.fs} Hz")
        return self.process_array(block.samples[:, self.lead], block.seq)

    def process_array(self, x_mv: np.ndarray, seq: int) -> Beats:
        """Take samples (mV) whose first has sequence number ``seq``."""
        out: list[_Candidate] = []
        x = np.asarray(x_mv, dtype=np.float64)
        if x.size == 0:
            return self._beats(out)
        if self._next_seq is not None and seq != self._next_seq:
            out.extend(self._finish_segment())
            self.gaps += 1
            self._reset_stream(seq)
        elif self._next_seq is None:
            self._reset_stream(seq)
        self._next_seq = seq + x.size
        self._append(x)
        out.extend(self._scan(self._buf_start + self._e.size - self._r, final=False))
        return self._beats(out)

    def finish(self) -> Beats:
        """End of the stream: decide the remaining candidates (no more look-ahead)."""
        return self._beats(self._finish_segment())

    # --- feature ------------------------------------------------------------------
    def _append(self, x: np.ndarray) -> None:
        f = self._qrs_f.process_channels(x)[0]
        a = self._amp_f.process_channels(x)[0]
        if self._prev_f is None:
            self._prev_f = float(f[0])
        d = np.empty_like(f)
        d[0] = f[0] - self._prev_f
        np.subtract(f[1:], f[:-1], out=d[1:])
        np.abs(d, out=d)
        self._prev_f = float(f[-1])
        # moving average of |slope| over w samples, from a running sum carried across
        # blocks: the sums are formed in the same order whatever the block sizes
        csum = np.cumsum(np.concatenate(([self._csum_last], d)))
        self._csum_last = float(csum[-1])
        hist = np.concatenate((self._csum_hist, csum[1:]))
        e = (hist[self._w :] - hist[: -self._w]) / self._w
        self._csum_hist = hist[-self._w :]
        self._e = np.concatenate((self._e, e))
        self._d = np.concatenate((self._d, d))
        self._amp = np.concatenate((self._amp, a))

    def _scan(self, horizon: int, final: bool) -> list[_Candidate]:
        """Find and classify candidates with index in [scan_from, horizon)."""
        beats: list[_Candidate] = []
        lo = self._scan_from
        if horizon <= lo:
            return beats
        b0 = self._buf_start
        e = self._e
        n = e.size
        # local maxima first (few: e is a 150 ms moving average), then the +/- r test
        a = max(lo - b0, 1)
        b = min(horizon - b0, n - 1)
        if b > a:
            mid = e[a:b]
            rising = (mid > e[a - 1 : b - 1]) & (mid >= e[a + 1 : b + 1]) & (mid > 0)
            r = self._r
            for rel in np.flatnonzero(rising).tolist():
                i = a + rel
                if e[i] >= e[max(i - r, 0) : i + r + 1].max():
                    beats.extend(self._classify(self._candidate(b0 + i)))
        self._scan_from = horizon
        assert self._start is not None
        if not self._trained and horizon >= self._start + self._learn:
            beats.extend(self._train())
        if not final:
            beats.extend(self._search_back_until(horizon))
            self._trim()
        return beats

    def _candidate(self, idx: int) -> _Candidate:
        b0 = self._buf_start
        lo = max(idx - self._locate, b0)
        win = slice(lo - b0, idx - b0 + 1)
        amp = self._amp[win]
        r_rel = int(np.argmax(np.abs(amp)))
        slope = np.abs(np.diff(amp))
        steep = np.flatnonzero(slope > _WIDTH_SLOPE * slope.max()) if slope.size else slope
        width = float(steep[-1] - steep[0] + 1) if steep.size else 0.0
        return _Candidate(
            idx=idx,
            peak=float(self._e[idx - b0]),
            slope=float(self._d[lo - b0 : idx - b0 + 1].max()),
            r_idx=lo + r_rel,
            amplitude=float(amp[r_rel]),
            width=width,
        )

    def _trim(self) -> None:
        cut = self._scan_from - self._keep - self._buf_start
        if cut > 0:
            self._e = self._e[cut:]
            self._d = self._d[cut:]
            self._amp = self._amp[cut:]
            self._buf_start += cut

    # --- decisions ------------------------------------------------------------------
    def _classify(self, c: _Candidate) -> list[_Candidate]:
        assert self._start is not None
        beats: list[_Candidate] = []
        if not self._trained:
            if c.idx < self._start + self._learn:
                self._learning.append(c)
                return beats
            beats.extend(self._train())
        beats.extend(self._search_back_until(c.idx))
        beats.extend(self._decide(c))
        return beats

    def _train(self) -> list[_Candidate]:
        """Set the thresholds from the first ``learn_s`` and decide the candidates held."""
        held, self._learning = self._learning, []
        self._trained = True
        if not held:
            return []
        peaks = np.array([c.peak for c in held])
        top = float(peaks.max())
        low = peaks[peaks < 0.3 * top]
        if not self._sig:  # keep levels learned before a gap
            self._sig.append(top)
            self._noi.append(float(low.mean()) if low.size else 0.0)
        beats: list[_Candidate] = []
        for c in held:
            beats.extend(self._search_back_until(c.idx))
            beats.extend(self._decide(c))
        return beats

    @property
    def _thr1(self) -> float:
        spk = _median(self._sig)
        npk = _median(self._noi)
        return npk + _THRESHOLD * (spk - npk)

    def _decide(self, c: _Candidate) -> list[_Candidate]:
        last = self._last_beat
        if last is not None and c.idx - last < self._r:
            return []
        if c.peak > self._thr1:
            near = last is not None and c.idx - last < self._t_wave
            if near and c.slope < 0.5 * self._last_slope:
                self._noise(c)
                return []
            self._sig.append(c.peak)
            return [self._accept(c)]
        self._noise(c)
        return []

    def _noise(self, c: _Candidate) -> None:
        self._noi.append(c.peak)
        self._noise_since_beat.append(c)

    def _accept(self, c: _Candidate) -> _Candidate:
        if self._last_beat is not None:
            self._rr.append(c.idx - self._last_beat)
            if len(self._rr) > _RR_HISTORY:
                del self._rr[0]
        if self._last_r is not None:
            c.rr = float(c.r_idx - self._last_r)
        narrow = self._narrow_widths
        if len(narrow) >= 4 and c.width > _WIDE * _median(narrow):
            c.ventricular = True
        else:
            narrow.append(c.width)
        self._last_beat = c.idx
        self._last_r = c.r_idx
        self._last_slope = c.slope
        self._noise_since_beat = []
        mean_rr = sum(self._rr) / len(self._rr) if self._rr else self.fs
        self._deadline = c.idx + int(np.ceil(_SEARCHBACK_RR * min(mean_rr, self._rr_cap)))
        return c

    def _search_back_until(self, upto: int) -> list[_Candidate]:
        """Run every search-back whose deadline falls before sample ``upto``."""
        beats: list[_Candidate] = []
        while self._trained and self._deadline is not None and self._deadline < upto:
            deadline = self._deadline
            oldest = deadline - self._window  # older candidates are final: bounded latency
            pool = [c for c in self._noise_since_beat if oldest <= c.idx <= deadline]
            thr2 = 0.5 * self._thr1
            pool = [c for c in pool if c.peak > thr2]
            if pool:
                best = max(pool, key=lambda c: c.peak)
                self._sig.append(best.peak)
                later = [c for c in self._noise_since_beat if c.idx > best.idx]
                beats.append(self._accept(best))
                self._noise_since_beat = later
            else:
                # Nothing to take back: wait another interval, and let the signal
                # level decay so a drop in amplitude is followed.
                for i in range(len(self._sig)):
                    self._sig[i] *= 0.5
                self._deadline = deadline + self._window
        return beats

    def _finish_segment(self) -> list[_Candidate]:
        if self._start is None or self._e.size == 0:
            return []
        end = self._buf_start + self._e.size
        beats = self._scan(end, final=True)
        if not self._trained and self._learning:
            beats.extend(self._train())
        beats.extend(self._search_back_until(end))
        self._scan_from = end
        return beats

    # --- output ------------------------------------------------------------------
    def _beats(self, cands: list[_Candidate]) -> Beats:
        if not cands:
            return self._no_beats
        seq = np.array([c.r_idx for c in cands], dtype=np.int64)
        amp = np.array([c.amplitude for c in cands])
        rr = np.array([c.rr for c in cands]) / self.fs
        width = np.array([c.width for c in cands]) / self.fs
        wide = np.array([c.ventricular for c in cands], dtype=bool)
        return Beats(seq, self.fs, amp, rr, width, wide)


def _median(values: deque[float]) -> float:
    """Median of a short sequence (0.0 when empty); plain Python is fastest for 8 values."""
    n = len(values)
    if not n:
        return 0.0
    v = sorted(values)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def detect_beats(signal_mv: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of a whole recording, by the streaming detector.

    Parameters
    ----------
    signal_mv
        One lead, mV (1-D), or (n, leads) of which lead 0 is used.
    fs
        Sample rate, Hz.
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, 0]
    det = QrsDetector(fs)
    parts = [det.process_array(x, 0), det.finish()]
    return Beats.concat(parts, fs).seq
