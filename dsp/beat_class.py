"""Beat classes N / S / V / Q from morphology and timing, streaming and causal.

Each beat the QRS detector reports is measured against the patient's own running
templates, as a Holter scanner does (:mod:`dsp.beat_measure`, the signal side): its
shape on the detector's lead and, when there is one, a second lead, compared with the
patient's normal shapes (correlation, amplitude, width, the QRS and ST-T waveform and
their differences relative to what the patient's own normal beats show, noise), the
share and running means of its template; and its timing (prematurity and the pause
after it over the median of the last 8 intervals, the regularity of the rhythm).

The decision (:func:`decide`) is a short table in plain view:

- ``Q`` when the waveform could not be measured (samples missing, flat or implausibly
  large);
- ``V`` when the ventricular score is above ``rules.ventricular`` (0: probability one
  half). The score is a small forest of decision trees over the features
  (:mod:`dsp.beat_model`), trained on the MIT-BIH development records and
  cross-validated by record (BENCHMARKS.md);
- ``S`` when the beat is not ventricular, the rhythm around is regular, and the beat is
  premature (interval under ``premature`` of the median; in AF every beat is
  "premature", so none is S);
- ``N`` otherwise.

A beat is measured once the signal to 0.43 s after its R peak has arrived, and labelled
when the next beat has arrived (its pause is then known), or at
:meth:`BeatClassifier.finish`: the latency is one beat (at most the QRS detector's
latency plus one RR interval). The state (templates, intervals, a ring buffer of the
last ``buffer_s`` seconds of the leads read, 0.5-40 Hz) is bounded, and the labels do
not depend on how the stream was cut into blocks.

This is a measurement for monitoring staff, not a diagnosis. Features after the
classic template-matching scanners (e.g. Hamilton's open-source ECG analysis, OSEA,
2002) and de Chazal et al., IEEE Trans Biomed Eng 51:1196-1206 (2004).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from core.block import SampleBlock
from dsp.atrial import PWaveScorer
from dsp.beat_measure import FEATURES, TEMPLATES, Layout, measure_numpy
from dsp.beat_model import Forest, forest_for
from dsp.filters import SosFilter, band_edges
from dsp.qrs import Beats
from dsp.qrs_front import compiled_kernel
from dsp.sos import butter_sos

__all__ = [
    "ANNOTATION_CLASS",
    "BeatClassifier",
    "ClassifiedBeats",
    "Rules",
    "decide",
]

#: Our class of each beat label of MIT-BIH / PhysioNet annotations, by the AAMI EC57
#: grouping (N: normal, bundle branch block, escape; S: supraventricular premature; V:
#: ventricular premature and escape; fusion counted with V; paced and unknown: Q).
ANNOTATION_CLASS = MappingProxyType(
    {**dict.fromkeys("NLRBejn", "N"), **dict.fromkeys("AaJS", "S"),
     **dict.fromkeys("VEF", "V"), **dict.fromkeys("/fQ?", "Q")}
)  # fmt: skip

RR_BEATS = 8  # intervals in the timing median
PREMATURITY, IRREGULARITY, PAUSE = 0, 1, 2  # columns of a features row


@dataclass(frozen=True, slots=True)
class Rules:
    """Constants of :func:`decide`."""

    ventricular: float = 0.0  # score above which a beat is V (0: probability one half)
    premature: float = 0.85  # interval over the median of recent ones, under: premature
    regular: float = 0.08  # median |RR - median| / median under this: regular rhythm


def decide(
    score: float, prematurity: float, irregularity: float, measurable: bool, rules: Rules = Rules()
) -> str:
    """The class of one beat: ``"N"``, ``"S"``, ``"V"`` or ``"Q"`` (see module docstring)."""
    if not measurable:
        return "Q"
    if score > rules.ventricular:
        return "V"
    if irregularity < rules.regular and prematurity < rules.premature:
        return "S"
    return "N"


@dataclass(frozen=True, slots=True)
class ClassifiedBeats:
    """Beats with their class, in time order (possibly beats of earlier blocks).

    Attributes
    ----------
    seq
        Sample number of each beat's R peak (int64).
    labels
        One of ``"N"``, ``"S"``, ``"V"``, ``"Q"`` per beat.
    fs
        Sample rate, Hz.
    rr_s
        Interval from the previous beat, s (NaN for the first beat of a stream or
        after a gap, as in :class:`~dsp.qrs.Beats`).
    features
        What each label was decided from: one row per beat (the columns are
        :data:`dsp.beat_measure.FEATURES` for the classifier's number of leads; NaN where
        not measured), or None when the labels came from elsewhere (an annotation file).
    scores
        The ventricular score of each beat (:mod:`dsp.beat_model`), or None.
    p_wave
        P-wave score of each beat (:mod:`dsp.atrial`; NaN where not measured), or None
        when there is no signal.
    """

    seq: np.ndarray
    labels: tuple[str, ...]
    fs: float
    rr_s: np.ndarray
    features: np.ndarray | None = None
    p_wave: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ventricular(self) -> np.ndarray:
        """True where the label is V."""
        return np.array([x == "V" for x in self.labels], dtype=bool)

    @classmethod
    def from_beats(cls, beats: Beats) -> ClassifiedBeats:
        """Beats without a classifier: V where the detector flagged a wide QRS, else N."""
        wide = beats.ventricular if beats.ventricular is not None else np.zeros(len(beats), bool)
        labels = tuple("V" if w else "N" for w in wide.tolist())
        return cls(beats.seq.astype(np.int64), labels, beats.fs, np.asarray(beats.rr_s, float))

    @classmethod
    def from_annotations(
        cls, samples: np.ndarray, symbols: list[str], fs: float
    ) -> ClassifiedBeats:
        """Beats of an annotation file (one stream), classed by :data:`ANNOTATION_CLASS`;
        annotations that are not beats are left out."""
        keep = [i for i, y in enumerate(symbols) if y in ANNOTATION_CLASS]
        seq = np.asarray(samples, dtype=np.int64)[keep]
        labels = tuple(ANNOTATION_CLASS[symbols[i]] for i in keep)
        rr = np.concatenate([[np.nan], np.diff(seq) / fs]) if seq.size else np.zeros(0)
        return cls(seq, labels, fs, rr)

    @classmethod
    def concat(cls, parts: list[ClassifiedBeats], fs: float) -> ClassifiedBeats:
        """The parts one after the other (features, P-wave scores and scores kept only when
        every part has them)."""
        if not parts:
            return cls(np.zeros(0, np.int64), (), fs, np.zeros(0))

        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            if any(a is None for a in arrays):
                return None
            return np.concatenate(arrays)  # type: ignore[arg-type]

        return cls(
            np.concatenate([p.seq for p in parts]).astype(np.int64),
            tuple(x for p in parts for x in p.labels),
            fs,
            np.concatenate([p.rr_s for p in parts]),
            joined("features"),
            joined("p_wave"),
            joined("scores"),
        )


@dataclass(slots=True)
class _Pending:
    seq: int
    rr: float  # samples since the previous beat (NaN: first of a stream)
    row: np.ndarray  # its features row
    prem: float  # its prematurity and irregularity (also in the row)
    irr: float
    measured: bool = False
    measurable: bool = False
    p_wave: float = math.nan


class BeatClassifier:
    """Streaming beat classes for one lead, or two (see the module docstring).

    Parameters
    ----------
    fs
        Sample rate, Hz.
    n_leads
        Leads per block.
    lead
        Index of the lead to read (the one the QRS detector uses).
    second_lead
        Index of a second lead to compare shapes on too (V1 is the best for telling
        ventricular beats), or None for one lead.
    buffer_s
        Seconds of signal kept before each new block, to measure beats reported
        late (the detector's latency is under 3 s); a longer block is kept whole.
    rules
        Decision constants.
    p_wave
        Also score each beat's P wave (:mod:`dsp.atrial`, for the AF detector).
    forest
        The ventricular score's forest (default: the committed one for the number of
        leads read).
    compiled
        Use the compiled per-beat arithmetic (``dsp._qrs_kernel``): None (default) when
        it was built, True to require it, False for the numpy code. Both give
        bit-identical features, scores and labels.

    Notes
    -----
    Call :meth:`process` with every block and the beats the detector returned for
    it (beats may lie in earlier blocks); it returns the beats now labelled.
    """

    def __init__(
        self,
        fs: float,
        n_leads: int = 1,
        lead: int = 0,
        *,
        second_lead: int | None = None,
        buffer_s: float = 6.0,
        rules: Rules | None = None,
        p_wave: bool = True,
        forest: Forest | None = None,
        compiled: bool | None = None,
    ) -> None:
        kernel = compiled_kernel() if compiled is not False else None
        if compiled and kernel is None:
            raise RuntimeError("dsp._qrs_kernel was not built (needs gcc and python3-dev)")
        self._kernel = kernel
        self.fs = float(fs)
        self.n_leads = n_leads
        self.leads = (lead,) if second_lead is None else (lead, second_lead)
        self.rules = rules or Rules()
        m = len(self.leads)
        self.forest = forest or forest_for(m)
        if self.forest.leads != m:
            raise ValueError(f"a forest for {self.forest.leads} leads cannot read {m}")
        self.layout = Layout.at(self.fs, m)
        self._state = self.layout.new_state()
        self._params = self.layout.kernel_params
        self._scratch = np.zeros(self.layout.scratch_size)
        self._forest_args = self.forest.kernel_args()
        lo, hi = band_edges("monitoring", self.fs)
        sos = np.vstack(
            [butter_sos(2, lo, "highpass", self.fs), butter_sos(2, hi, "lowpass", self.fs)]
        )
        self._filter = SosFilter(sos, m)
        self._keep = max(int(round(buffer_s * fs)), self.layout.before + self.layout.after)
        self._buf = np.full((m, self._keep), np.nan)
        self._end: int | None = None  # sequence number one past the buffer's last sample
        self._rr: deque[float] = deque(maxlen=RR_BEATS)
        self._pending: deque[_Pending] = deque()  # arrived, not yet labelled, in order
        self._p = PWaveScorer(fs, kernel) if p_wave else None
        n_features = len(FEATURES[m])
        self._nan_row = np.full(n_features, math.nan)
        self._empty = ClassifiedBeats(
            np.zeros(0, np.int64), (), self.fs, np.zeros(0), np.zeros((0, n_features)),
            np.zeros(0), np.zeros(0),
        )  # fmt: skip

    #: Longest time from a beat's arrival to its label: the next beat.
    latency_beats = 1

    @property
    def templates_used(self) -> int:
        """Running templates in use (at most :data:`dsp.beat_measure.TEMPLATES`)."""
        return int(self._state[0])

    def process(self, block: SampleBlock, beats: Beats) -> ClassifiedBeats:
        """Take a block and the beats detected with it; return the beats now labelled."""
        self._store(block.samples, block.seq)
        out: list[_Pending] = []
        if len(beats):
            for s, rr in zip(beats.seq.tolist(), beats.rr_s.tolist(), strict=True):
                self._arrive(int(s), rr * self.fs)
        elif not self._pending:
            return self._empty
        self._advance(False, out)
        return self._result(out)

    def finish(self) -> ClassifiedBeats:
        """End of the stream: measure and label the beats still waiting."""
        out: list[_Pending] = []
        self._advance(True, out)
        return self._result(out)

    # --- signal -------------------------------------------------------------------
    def _store(self, samples: np.ndarray, seq: int) -> None:
        """Filter the leads read and write them at their sequence numbers into the ring
        (NaN where missing). A gap or a non-finite sample restarts the filter, so the
        samples either side never mix and any cutting of the stream gives the same ring."""
        n = samples.shape[0]
        if not n:
            return
        if len(self.leads) == 1:
            x = samples[:, self.leads[0]].astype(np.float64)[None, :]
        else:
            x = np.array(samples[:, list(self.leads)].T, dtype=np.float64, order="C")
        if self._end is not None and seq != self._end:
            self._filter.reset()
        if math.isfinite(float(np.add.reduce(x, axis=None))):  # every sample finite
            self._filter.filter_inplace(x)
        else:
            self._filter_runs(x, np.isfinite(x).all(axis=0))
        m = x.shape[0]
        if self._buf.shape[1] < n + self._keep:  # a long block: room for it and the look-back
            grown = np.full((m, n + self._keep), np.nan)
            grown[:, -self._buf.shape[1] :] = self._buf
            self._buf = grown
        buf = self._buf
        size = buf.shape[1]
        if self._end is None or seq < self._end or seq - self._end >= size:
            buf[:] = np.nan
        else:
            gap = seq - self._end
            if gap:  # missing samples read as NaN
                buf[:, :-gap] = buf[:, gap:]
                buf[:, -gap:] = np.nan
        if n >= size:
            buf[:] = x[:, -size:]
        else:
            buf[:, :-n] = buf[:, n:]
            buf[:, -n:] = x
        self._end = seq + n

    def _filter_runs(self, x: np.ndarray, finite: np.ndarray) -> None:
        """Filter each run of finite samples on its own (NaN elsewhere)."""
        edges = np.flatnonzero(np.diff(np.concatenate([[False], finite, [False]]).astype(np.int8)))
        x[:, ~finite] = np.nan
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            if a > 0:
                self._filter.reset()
            run = np.ascontiguousarray(x[:, a:b])
            self._filter.filter_inplace(run)
            x[:, a:b] = run
        if not finite[-1]:
            self._filter.reset()

    # --- per beat ------------------------------------------------------------------
    def _arrive(self, s: int, rr: float) -> None:
        """A beat from the detector: its timing now (intervals arrive in order)."""
        if rr != rr:  # first beat of a stream, or after a gap
            self._rr.clear()
        prem, irr = self._timing(rr)
        row = self._nan_row.copy()
        row[PREMATURITY], row[IRREGULARITY] = prem, irr
        self._pending.append(_Pending(s, rr, row, prem, irr))
        if rr == rr:
            self._rr.append(rr)

    def _timing(self, rr: float) -> tuple[float, float]:
        """(prematurity, irregularity) of an interval against the recent ones."""
        if len(self._rr) < 4 or rr != rr:
            return math.nan, math.nan
        ordered = sorted(self._rr)
        k = len(ordered)
        med = ordered[k // 2] if k % 2 else 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])
        dev = sorted([abs(v - med) for v in ordered])
        mad = dev[k // 2] if k % 2 else 0.5 * (dev[k // 2 - 1] + dev[k // 2])
        return rr / med, mad / med

    def _advance(self, final: bool, out: list[_Pending]) -> None:
        """Measure the beats whose signal is all there (in order), then label those whose
        successor has arrived (all of them at the end of the stream)."""
        lay = self.layout
        end = self._end if self._end is not None else 0
        for p in self._pending:
            if p.measured:
                continue
            if not final and p.seq + lay.after > end:
                break
            self._measure(p)
        while self._pending and self._pending[0].measured:
            if len(self._pending) > 1:
                nxt = self._pending[1].rr
                p = self._pending.popleft()
                p.row[PAUSE] = nxt / p.rr * p.prem if p.rr > 0 else math.nan
            elif final:
                p = self._pending.popleft()
            else:
                break
            out.append(p)

    def _measure(self, p: _Pending) -> None:
        p.measured = True
        assert self._end is not None
        lay = self.layout
        r = p.seq - (self._end - self._buf.shape[1])  # column of R in the ring
        if r - lay.before < 0 or r + lay.after > self._buf.shape[1]:
            return  # not all there (the stream ended or moved on): Q
        prem, irr = p.prem, p.irr
        if self._kernel is not None:
            got = self._kernel.beat(  # type: ignore[attr-defined]
                self._params, self._state, self._buf, self._buf.shape[1], r, prem, irr, p.row,
                self._scratch,
            )  # fmt: skip
        else:
            got = measure_numpy(lay, self._state, self._buf, r, prem, irr, p.row)
        if got < 0:
            p.row[:] = math.nan
            p.row[PREMATURITY], p.row[IRREGULARITY] = prem, irr
            return
        p.measurable = True
        if self._p is not None:
            lo = r - self._p.before
            window = self._buf[0, lo : lo + self._p.length]
            p.p_wave = self._p.score(window, learn=got >= TEMPLATES)

    def _result(self, out: list[_Pending]) -> ClassifiedBeats:
        if not out:
            return self._empty
        if len(out) == 1 and self._kernel is not None:  # the usual block: fewer numpy calls
            return self._one(out[0])
        rows = np.array([p.row for p in out])
        if self._kernel is not None:
            forest, args = self._kernel.forest, self._forest_args  # type: ignore[attr-defined]
            score_list = [forest(p.row, *args) for p in out]
            scores = np.array(score_list)
        else:
            scores = self.forest.scores(rows)
            score_list = scores.tolist()
        rules = self.rules
        labels = tuple(
            decide(sc, p.prem, p.irr, p.measurable, rules)
            for sc, p in zip(score_list, out, strict=True)
        )
        # sequence numbers are exact in float64 (below 2**53)
        meta = np.array([(p.seq, p.rr, p.p_wave) for p in out], dtype=np.float64)
        seqs = meta[:, 0].astype(np.int64)
        return ClassifiedBeats(
            seqs, labels, self.fs, meta[:, 1] / self.fs, rows, meta[:, 2], scores
        )

    def _one(self, p: _Pending) -> ClassifiedBeats:
        """:meth:`_result` of one beat (the same values, bit for bit)."""
        score = self._kernel.forest(p.row, *self._forest_args)  # type: ignore[attr-defined]
        label = decide(score, p.prem, p.irr, p.measurable, self.rules)
        return ClassifiedBeats(
            np.array((p.seq,), np.int64), (label,), self.fs, np.array((p.rr / self.fs,)),
            p.row[None, :], np.array((p.p_wave,)), np.array((score,)),
        )  # fmt: skip
