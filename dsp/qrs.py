"""Causal streaming QRS (R-peak) detector with a bounded decision latency.

The energy-envelope design of Pan & Tompkins (1985) and Hamilton & Tompkins (1986),
block by block with explicit state, in two readable parts:

- :mod:`dsp.qrs_front`, the signal side: 5-18 Hz band-pass, 150 ms moving average of
  the absolute slope (the feature), candidate peaks (local maxima over ± 200 ms), each
  measured (R peak on the 0.5-40 Hz signal, amplitude, steepest slope, QRS width);
- :mod:`dsp.qrs_decide`, the decisions: learning, adaptive thresholds from the median
  signal and noise levels, refractory period, T-wave rejection, search-back, and the
  width label.

:class:`QrsDetector` joins them: it feeds each block to the front, hands the candidates
to the decider in sample order, and restarts both after a gap in the sequence numbers.
With the optional C kernel (``dsp._qrs_kernel``) both run compiled, the decisions by a C
copy of :class:`~dsp.qrs_decide.QrsDecider` (the readable rules, and the fallback) that
takes a block's candidates in the same call that filters it: bit-identical beats.
Every decision depends only on sample indices, never on how the stream was cut into
blocks: a record processed in chunks of any size gives exactly the beats one pass gives
(the tests check this). A beat is reported at most :attr:`QrsDetector.latency_s`
seconds after its R peak was received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.block import SampleBlock
from core.ranges import runs_of
from dsp.qrs_decide import Candidate, QrsDecider, compiled_decider
from dsp.qrs_front import WIDTH_SLOPE, QrsFront, compiled_kernel

__all__ = ["Beats", "QrsDetector", "detect_beats"]


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
        True where the QRS is much wider than the dominant beats (over 1.6 x the
        median width of the last 32): a likely ventricular beat. A width
        measurement, not a diagnosis, and a weak one (VEB Se 56 % / +P 65 % on
        MIT-BIH, see BENCHMARKS.md): used to leave intervals out of the AF
        statistics, not shown to anyone.
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


class QrsDetector:
    """Streaming R-peak detector for one lead of a stream of blocks.

    Parameters
    ----------
    fs
        Sample rate, Hz (at least 100).
    lead
        Index of the lead to analyse in each block.
    compiled
        Use the compiled inner loops and decisions (``dsp._qrs_kernel``): None (default)
        when they were built, True to require them, False for the numpy code and
        :class:`~dsp.qrs_decide.QrsDecider`. Both give bit-identical beats; the compiled
        code saves numpy's and Python's per-call cost.
    """

    def __init__(self, fs: float, lead: int = 0, *, compiled: bool | None = None) -> None:
        if fs < 100:
            raise ValueError(f"QRS detection needs fs >= 100 Hz, got {fs}")
        kernel = compiled_kernel() if compiled is not False else None
        if compiled and kernel is None:
            raise RuntimeError("dsp._qrs_kernel was not built (needs gcc and python3-dev)")
        self.fs = float(fs)
        self.lead = lead
        self.front = QrsFront(self.fs, kernel)
        self.decisions: _Reference | _Compiled = (
            _Reference(self.front) if kernel is None else _Compiled(self.front, kernel)
        )
        f = self.front
        #: Longest time from receiving an R peak to reporting it, s.
        self.latency_s = (f.r + f.locate + QrsDecider(self.fs).window + 1) / fs
        self.gaps = 0
        self._next_seq: int | None = None

    def process(self, block: SampleBlock) -> Beats:
        """Take one block; return the beats now final (possibly from earlier blocks)."""
        if block.fs != self.fs:
            raise ValueError(f"detector set up for {self.fs} Hz, block is {block.fs} Hz")
        return self.process_array(block.samples[:, self.lead], block.seq)

    def process_array(self, x_mv: np.ndarray, seq: int) -> Beats:
        """Take samples (mV) whose first has sequence number ``seq``. Samples that are not
        finite (NaN: missing, inf: garbage) are a hole, as a jump in ``seq`` is: the
        segment before ends and detection starts afresh after it."""
        x = np.asarray(x_mv)
        if x.shape[0] == 0:
            return self.decisions.no_beats
        if self.front.all_finite(x):  # the usual block: no hole inside
            self._take(x, seq)
        else:
            for a, b in runs_of(np.isfinite(x), 0):
                self._take(x[a:b], seq + a)
        return self.decisions.beats()

    def _take(self, x: np.ndarray, seq: int) -> None:
        """Finite samples ``x`` from ``seq`` on."""
        n = x.shape[0]
        if self._next_seq is None or seq != self._next_seq:
            if self._next_seq is not None:
                self._end_segment()
                self.gaps += 1
            self.front.reset(seq)
            self.decisions.new_segment(seq)
        self._next_seq = seq + n
        self.front.append(x)
        self.decisions.scan(self.front.end - self.front.r, False)

    def finish(self) -> Beats:
        """End of the stream: decide the remaining candidates (no more look-ahead)."""
        self._end_segment()
        return self.decisions.beats()

    def _end_segment(self) -> None:
        if self.front.start is None:
            return
        end = self.front.end
        self.decisions.scan(end, True)
        self.decisions.end_segment(end)
        self.front.scan_from = end


class _Reference:
    """The decisions by :class:`QrsDecider` (the readable rules), on the front's measured
    candidates; the beats found wait in :attr:`out` until :meth:`beats`."""

    def __init__(self, front: QrsFront) -> None:
        self.front = front
        self.rules = QrsDecider(front.fs)
        self.out: list[Candidate] = []
        self.no_beats = Beats.empty(front.fs)

    def new_segment(self, start: int) -> None:
        self.rules.new_segment(start)

    def scan(self, horizon: int, final: bool) -> None:
        """Decide the candidates before ``horizon`` (``final``: the segment ends there)."""
        found = self.front.candidates(horizon)
        if found is None:
            return
        for c in found:
            self.rules.candidate(c, self.out)
        self.rules.scanned_to(horizon, final, self.out)

    def end_segment(self, end: int) -> None:
        self.rules.end_segment(end, self.out)

    def beats(self) -> Beats:
        """The beats found since the last call."""
        cands, self.out = self.out, []
        if not cands:
            return self.no_beats
        fs = self.front.fs  # x / fs in Python is the same IEEE division numpy does
        rows = [(c.r_idx, c.amplitude, c.rr / fs, c.width / fs, c.ventricular) for c in cands]
        seq, amp, rr, width, wide = zip(*rows, strict=True)
        floats = np.array((amp, rr, width))  # one array, three rows: fewer numpy calls
        return Beats(
            np.array(seq, dtype=np.int64),
            fs,
            floats[0],
            floats[1],
            floats[2],
            np.array(wide, dtype=bool),
        )


class _Compiled:
    """The same decisions compiled (``dsp._qrs_kernel.Decider``, see
    :func:`~dsp.qrs_decide.compiled_decider`): the kernel's front hands it each block's
    candidates in the same C call, other scans give it their peaks, and the beats found wait
    there until :meth:`beats` takes them as arrays."""

    def __init__(self, front: QrsFront, kernel: Any) -> None:
        self.front = front
        self.rules = compiled_decider(kernel, front.fs)
        front.decider = self.rules
        self.no_beats = Beats.empty(front.fs)

    def new_segment(self, start: int) -> None:
        self.rules.new_segment(start)

    def scan(self, horizon: int, final: bool) -> None:
        """Decide the candidates before ``horizon`` (``final``: the segment ends there);
        nothing to do when the block's own scan was decided as it came."""
        fr = self.front
        slots = fr.peaks(horizon)
        if slots is not None:
            fr_args = (fr.buf, fr.cap, fr.base, fr.start, fr.locate, WIDTH_SLOPE)
            self.rules.scan(*fr_args, slots, horizon, final)

    def end_segment(self, end: int) -> None:
        self.rules.end_segment(end)

    def beats(self) -> Beats:
        """The beats found since the last call."""
        n = self.rules.pending
        if not n:
            return self.no_beats
        seq, floats, wide = np.empty(n, np.int64), np.empty((3, n)), np.empty(n, bool)
        self.rules.take(seq, floats, wide)
        return Beats(seq, self.front.fs, floats[0], floats[1], floats[2], wide)


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
