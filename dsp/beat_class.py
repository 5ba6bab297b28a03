"""Beat classes N / S / V / Q from morphology and timing, streaming and causal.

Each beat the QRS detector reports is compared with the patient's own running
templates and with the rhythm around it, as a Holter scanner does:

- **Morphology.** The beat's waveform, 0.09 s before to 0.11 s after its R peak
  (the lead the detector uses), as slopes over 8 ms (no baseline, the QRS
  weighted), is matched at the best of the alignments up to 30 ms either way
  (R is not placed on the same wave in every beat) against up to four running
  templates (correlation over 0.9 joins a template and
  moves it; otherwise it starts a new one, replacing the least used). The template
  that has gathered the most beats is the *dominant* one: the patient's normal
  beat. Compared with it: correlation, peak-to-peak amplitude ratio, and the
  spread in time of the slopes (a wide QRS spreads them).
- **Timing.** Prematurity (the interval before the beat over the median of the
  last 8 intervals) and the pause after it (the next interval over that median),
  and whether the rhythm around is regular (in AF every beat is "premature").

The decision (:func:`decide`) is a short table of rules in plain view:

- ``Q`` when the waveform could not be measured (samples missing, flat or
  implausibly large);
- ``V`` when the beat's shape differs from the dominant beat (correlation
  under ``corr_v``, its template's on average under ``template_corr_v``) and
  one sign says ventricular: its template is wide (slope spread in time over
  ``wide`` times the dominant template's), of very different size, or early on
  average, or the beat itself is premature with a pause after it; a shape less
  different (template correlation under ``template_corr_v2``) needs two of
  these signs (a shape that is not the dominant one but
  comes on time and is as narrow is a second normal shape: intermittent bundle
  branch block, pre-excitation). Judging the template's running means rather
  than the single beat is what a scanner's template labelling does: one noisy
  beat does not flip the class;
- ``S`` when the shape is the dominant one, the rhythm around is regular, and the
  beat is premature (interval under ``premature`` of the median);
- ``N`` otherwise.

A beat is labelled when the next beat arrives (its pause is then known), or at
:meth:`BeatClassifier.finish`: the latency is one beat (at most the QRS detector's
latency plus one RR interval, under 5 s). The state (templates, intervals, a
ring buffer of the last ``buffer_s`` seconds of the lead) is bounded, and the
labels do not depend on how the stream was cut into blocks.

This is a measurement for monitoring staff, not a diagnosis. Rules after the
classic template-matching scanners (e.g. Hamilton's open-source ECG analysis,
OSEA, 2002) and de Chazal et al., IEEE Trans Biomed Eng 51:1196-1206 (2004) for
the features; constants chosen by leave-records-out cross-validation
(BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from core.block import SampleBlock
from dsp.atrial import PWaveScorer
from dsp.qrs import Beats

__all__ = [
    "ANNOTATION_CLASS",
    "BeatClassifier",
    "BeatFeatures",
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

PRE_S = 0.09  # waveform before R, s
POST_S = 0.11  # ... and after, s
LEVEL_S = 0.02  # its first 20 ms give the level
SLOPE_S = 0.008  # shapes are compared as slopes over 8 ms (no baseline, QRS weighted)
SHIFT_S = 0.03  # ... at the best of the alignments up to 30 ms either way of R
TEMPLATES = 4
JOIN = 0.90  # correlation that joins a template
RR_BEATS = 8
MAX_MV = 8.0  # a larger peak-to-peak is not a QRS (saturation, artefact)
MIN_MV = 0.02


@dataclass(frozen=True, slots=True)
class Rules:
    """Constants of :func:`decide` (dimensionless ratios)."""

    corr_v: float = 0.90  # the beat's shape: correlation with the dominant template
    template_corr_v: float = 0.70  # ... and its template's, on average: one sign is enough
    template_corr_v2: float = 0.85  # ... a shape less different needs two signs
    wide: float = 1.50  # template spread over the dominant's
    amp: float = 2.5  # template amplitude ratio beyond 1/amp .. amp: odd size
    early: float = 0.90  # a template whose beats come this early on average is ectopic
    premature: float = 0.85
    pause: float = 1.10
    regular: float = 0.08  # median |RR - median| / median under this: regular rhythm


@dataclass(frozen=True, slots=True)
class BeatFeatures:
    """What the decision reads for one beat (ratios to the dominant template and to
    the recent intervals; NaN when not measurable). ``template_*``: running means over
    the beats of the beat's own template (its shape class)."""

    correlation: float  # with the dominant template
    amplitude_ratio: float  # peak-to-peak over the dominant template's
    prematurity: float  # interval before over the median of recent intervals
    pause: float  # interval after over the same median (NaN: unknown)
    irregularity: float  # median |RR - median| / median of recent intervals
    template_prematurity: float
    measurable: bool
    spread_ratio: float = 1.0  # slope dispersion in time over the dominant template's
    template_correlation: float = 1.0
    template_spread: float = 1.0
    template_amplitude: float = 1.0


def decide(f: BeatFeatures, rules: Rules = Rules()) -> str:
    """The class of one beat: ``"N"``, ``"S"``, ``"V"`` or ``"Q"`` (see module docstring)."""
    if not f.measurable:
        return "Q"
    if f.correlation < rules.corr_v and f.template_correlation < rules.template_corr_v2:
        # not the dominant shape: a ventricular one, or a second normal shape?
        signs = (
            f.template_spread > rules.wide,  # wide
            not 1.0 / rules.amp <= f.template_amplitude <= rules.amp,  # odd size
            f.template_prematurity < rules.early,  # a shape that comes early
            f.prematurity < rules.premature and f.pause > rules.pause,  # PVC timing
        )
        if sum(signs) >= (1 if f.template_correlation < rules.template_corr_v else 2):
            return "V"
        return "N"  # on time and as narrow: intermittent bundle branch block, pre-excitation
    if f.irregularity < rules.regular and f.prematurity < rules.premature:
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
        What each label was decided from (empty when the labels came from elsewhere,
        e.g. an annotation file).
    p_wave
        P-wave score of each beat (:mod:`dsp.atrial`; NaN where not measured), or None
        when there is no signal.
    """

    seq: np.ndarray
    labels: tuple[str, ...]
    fs: float
    rr_s: np.ndarray
    features: tuple[BeatFeatures, ...] = ()
    p_wave: np.ndarray | None = None

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
        if not parts:
            return cls(np.zeros(0, np.int64), (), fs, np.zeros(0))
        p_wave = None
        if all(p.p_wave is not None for p in parts):
            p_wave = np.concatenate([p.p_wave for p in parts])  # type: ignore[misc]
        return cls(
            np.concatenate([p.seq for p in parts]).astype(np.int64),
            tuple(x for p in parts for x in p.labels),
            fs,
            np.concatenate([p.rr_s for p in parts]),
            tuple(x for p in parts for x in p.features),
            p_wave,
        )


@dataclass(slots=True)
class _Pending:
    seq: int
    rr: float  # samples since the previous beat (NaN: first of a stream)
    corr: float
    amp: float
    template: int  # -1: not measurable
    prematurity: float
    irregularity: float
    spread: float = math.nan
    p_wave: float = math.nan


@dataclass(slots=True)
class _Templates:
    """Up to ``TEMPLATES`` running average waveforms (unit-norm slope shapes), their
    beat counts, and running means of what their beats measured."""

    length: int
    times: np.ndarray = field(init=False)  # sample index of each point
    times2: np.ndarray = field(init=False)  # ... squared
    shapes: np.ndarray = field(init=False)  # (k, length): running mean of unit shapes
    unit: np.ndarray = field(init=False)  # the same, centred and of unit norm
    counts: list[int] = field(default_factory=list)
    ptp: list[float] = field(default_factory=lambda: [0.0] * TEMPLATES)  # running, mV
    _spread: list[float | None] = field(default_factory=lambda: [None] * TEMPLATES)
    # per template, running means over its beats: prematurity, correlation with the
    # dominant template, spread ratio, amplitude ratio
    stats: list[list[float]] = field(default_factory=lambda: [[1.0] * 4 for _ in range(TEMPLATES)])

    def __post_init__(self) -> None:
        self.times = np.arange(self.length, dtype=float)
        self.times2 = self.times * self.times
        self.shapes = np.zeros((TEMPLATES, self.length))
        self.unit = np.zeros((TEMPLATES, self.length))

    @property
    def dominant(self) -> int:
        return max(range(len(self.counts)), key=self.counts.__getitem__)

    def spread_of(self, shape: np.ndarray) -> float:
        """RMS time of the slope magnitude about its centre of mass, samples."""
        w = np.abs(shape)
        total = float(w.sum())
        if total <= 0:
            return math.nan
        mean = float(w @ self.times) / total
        return math.sqrt(max(float(w @ self.times2) / total - mean * mean, 1e-9))

    def spread(self, j: int) -> float:
        """Template ``j``'s spread (computed when first asked after it moved)."""
        value = self._spread[j]
        if value is None:
            value = self._spread[j] = self.spread_of(self.shapes[j])
        return value

    def fold(self, j: int, values: tuple[float, float, float, float]) -> None:
        """Fold a beat's (prematurity, correlation, spread, amplitude) into template
        ``j``'s running means (a new template takes the beat's values)."""
        n = max(self.counts[j], 1)
        rate = 1.0 / min(n, 16)
        row = self.stats[j]
        for i, v in enumerate(values):
            if v == v:
                row[i] = v if n == 1 else row[i] + (v - row[i]) * rate

    def count(self, j: int) -> None:
        """One more beat of template ``j`` (recent beats weigh most; bounded counts)."""
        self.counts[j] += 1
        if sum(self.counts) > 512:
            self.counts = [max(c // 2, 1) for c in self.counts]

    def learn(self, unit: np.ndarray, j: int, corr: float, ptp: float) -> int:
        """Move template ``j`` towards ``unit`` (or start a new template); its index."""
        if j < 0 or corr < JOIN:
            if len(self.counts) < TEMPLATES:
                j = len(self.counts)
                self.counts.append(0)
            else:
                j = min(range(TEMPLATES), key=self.counts.__getitem__)
                self.counts[j] = 0
            self.shapes[j] = unit
            self.ptp[j] = ptp
            self.stats[j] = [1.0] * 4
        else:
            rate = 1.0 / min(self.counts[j] + 1, 16)
            self.shapes[j] += (unit - self.shapes[j]) * rate
            self.ptp[j] += (ptp - self.ptp[j]) * rate
        self.count(j)
        # a mean of centred shapes is centred: only the norm to restore
        shape = self.shapes[j]
        self.unit[j] = shape / max(math.sqrt(float(shape @ shape)), 1e-12)
        self._spread[j] = None
        return j


class BeatClassifier:
    """Streaming beat classes for one lead (see the module docstring).

    Parameters
    ----------
    fs
        Sample rate, Hz.
    n_leads
        Leads per block.
    lead
        Index of the lead to read (the one the QRS detector uses).
    buffer_s
        Seconds of signal kept before each new block, to measure beats reported
        late (the detector's latency is under 3 s); a longer block is kept whole.
    rules
        Decision constants.
    p_wave
        Also score each beat's P wave (:mod:`dsp.atrial`, for the AF detector; about
        a fifth of the classifier's time).

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
        buffer_s: float = 6.0,
        rules: Rules | None = None,
        p_wave: bool = True,
    ) -> None:
        self.fs = float(fs)
        self.n_leads = n_leads
        self.lead = lead
        self.rules = rules or Rules()
        self._pre = int(round(PRE_S * fs))
        self._post = int(round(POST_S * fs))
        self._level = max(int(round(LEVEL_S * fs)), 1)
        self._lag = max(int(round(SLOPE_S * fs)), 1)
        self._shift = max(int(round(SHIFT_S * fs)), 1)
        length = self._pre + self._post - self._lag
        # rows: the slope waveform at each alignment (indices into the extended slopes)
        self._align = np.arange(2 * self._shift + 1)[:, None] + np.arange(length)
        self._tpl = _Templates(length)
        self._keep = int(round(buffer_s * fs))  # samples kept before each new block
        self._buf = np.full(self._keep, np.nan)
        self._end: int | None = None  # sequence number one past the buffer's last sample
        self._rr: deque[float] = deque(maxlen=RR_BEATS)
        self._pending: _Pending | None = None
        self._last_seq: int | None = None
        self._p = PWaveScorer(fs) if p_wave else None
        self._empty = ClassifiedBeats(
            np.zeros(0, np.int64), (), self.fs, np.zeros(0), (), np.zeros(0)
        )

    #: Longest time from a beat's arrival to its label: the next beat.
    latency_beats = 1

    def process(self, block: SampleBlock, beats: Beats) -> ClassifiedBeats:
        """Take a block and the beats detected with it; return the beats now labelled."""
        self._store(block.samples[:, self.lead], block.seq)
        if not len(beats):
            return self._empty
        out: list[tuple[int, str, BeatFeatures, float, float]] = []
        rr_s = beats.rr_s.tolist()
        for s, rr in zip(beats.seq.tolist(), rr_s, strict=True):
            self._beat(int(s), rr * self.fs, out)
        return self._result(out)

    def finish(self) -> ClassifiedBeats:
        """End of the stream: label the beat still waiting for its successor."""
        out: list[tuple[int, str, BeatFeatures, float, float]] = []
        if self._pending is not None:
            self._label(self._pending, math.nan, out)
            self._pending = None
        return self._result(out)

    # --- signal -------------------------------------------------------------------
    def _store(self, x: np.ndarray, seq: int) -> None:
        """Write samples at their sequence numbers into the ring (NaN where missing)."""
        n = x.shape[0]
        if not n:
            return
        if self._buf.shape[0] < n + self._keep:  # a long block: room for it and the look-back
            grown = np.full(n + self._keep, np.nan)
            grown[-self._buf.shape[0] :] = self._buf
            self._buf = grown
        buf = self._buf
        size = buf.shape[0]
        if self._end is None or seq < self._end or seq - self._end >= size:
            buf[:] = np.nan
        else:
            gap = seq - self._end
            if gap:  # missing samples read as NaN
                buf[:-gap] = buf[gap:]
                buf[-gap:] = np.nan
        if n >= size:
            buf[:] = x[-size:]
        else:
            buf[:-n] = buf[n:]
            buf[-n:] = x
        self._end = seq + n

    def _segment(self, r: int) -> tuple[np.ndarray, float] | None:
        """(waveform around R, extended by the alignment shift either way; its
        peak-to-peak amplitude in mV), or None when not all there or implausible."""
        assert self._end is not None
        k = self._shift
        lo = r - self._pre - k - (self._end - self._buf.shape[0])
        hi = lo + self._pre + self._post + 2 * k
        if lo < 0 or hi > self._buf.shape[0]:
            return None
        ext = self._buf[lo:hi]
        core = ext[k:-k]
        ptp = core.max() - core.min()  # NaN when a sample is missing
        if not MIN_MV <= ptp <= MAX_MV or ext[0] != ext[0] or ext[-1] != ext[-1]:
            return None
        return ext, float(ptp)

    # --- per beat ------------------------------------------------------------------
    def _beat(self, s: int, rr: float, out: list) -> None:
        if self._pending is not None:
            next_rr = rr if rr == rr else math.nan
            self._label(self._pending, next_rr, out)
        if rr != rr:  # first beat of a stream, or after a gap
            self._rr.clear()
        prem, irr = self._timing(rr)
        found = self._segment(s)
        pending = _Pending(s, rr, math.nan, math.nan, -1, prem, irr)
        if found is not None:
            self._morphology(*found, pending)
            pending.p_wave = self._p_wave(s, pending)
        self._pending = pending
        if rr == rr:
            self._rr.append(rr)

    def _p_wave(self, r: int, p: _Pending) -> float:
        """The beat's P-wave score; beats of the dominant shape teach the template."""
        assert self._end is not None
        if self._p is None:
            return math.nan
        lo = r - self._p.before - (self._end - self._buf.shape[0])
        if lo < 0:
            return math.nan
        window = self._buf[lo : lo + self._p.length]
        if window[0] != window[0] or window[-1] != window[-1]:
            return math.nan
        return self._p.score(window, learn=p.template == self._tpl.dominant)

    def _timing(self, rr: float) -> tuple[float, float]:
        """(prematurity, irregularity) of an interval against the recent ones."""
        if len(self._rr) < 4 or rr != rr:
            return math.nan, math.nan
        ordered = sorted(self._rr)
        k = len(ordered)
        med = ordered[k // 2] if k % 2 else 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])
        dev = sorted(abs(v - med) for v in ordered)
        mad = dev[k // 2] if k % 2 else 0.5 * (dev[k // 2 - 1] + dev[k // 2])
        return rr / med, mad / med

    def _morphology(self, ext: np.ndarray, ptp: float, p: _Pending) -> None:
        """Correlate the beat's slopes with the templates; learn. A beat that matches the
        dominant template as placed (most beats) is not searched further."""
        slopes = ext[self._lag :] - ext[: -self._lag]
        tpl, k = self._tpl, len(self._tpl.counts)
        if k:
            dom = tpl.dominant
            p.amp = ptp / tpl.ptp[dom] if tpl.ptp[dom] > 0 else math.nan
            row = slopes[self._shift : self._shift + tpl.length]
            total = row.sum()
            # the template is centred: its dot product with the row is the covariance
            norm = math.sqrt(max(float(row @ row) - total * total / tpl.length, 1e-18))
            corr = float(tpl.unit[dom] @ row) / norm
            if corr >= JOIN:
                p.corr, p.spread = corr, 1.0
                p.template = tpl.learn((row - total / tpl.length) / norm, dom, corr, ptp)
                tpl.fold(dom, (p.prematurity, p.corr, p.spread, p.amp))
                return
        self._search(slopes, ptp, p)

    def _search(self, slopes: np.ndarray, ptp: float, p: _Pending) -> None:
        """Correlate with every template at every alignment; learn."""
        rows = slopes[self._align]  # (alignments, length)
        n = rows.shape[1]
        sums = rows.sum(axis=1)
        norms = np.sqrt(np.maximum(np.einsum("ij,ij->i", rows, rows) - sums * sums / n, 1e-18))
        tpl, k = self._tpl, len(self._tpl.counts)
        j, corr, at = -1, math.nan, self._shift
        if k:
            # templates are centred: their dot product with a row is its covariance
            corrs = (rows @ tpl.unit[:k].T) / norms[:, None]  # (alignments, templates)
            best_at = corrs.argmax(axis=0)
            best = corrs[best_at, range(k)].tolist()
            dom = tpl.dominant
            p.corr = best[dom]
            p.spread = tpl.spread_of(rows[int(best_at[dom])]) / tpl.spread(dom)
            j = max(range(k), key=best.__getitem__)
            corr = best[j]
            if corr >= JOIN:
                at = int(best_at[j])
        unit = (rows[at] - sums[at] / n) / norms[at]
        p.template = tpl.learn(unit, j, corr, ptp)
        tpl.fold(p.template, (p.prematurity, p.corr, p.spread, p.amp))

    def _label(self, p: _Pending, next_rr: float, out: list) -> None:
        stats = self._tpl.stats[p.template] if p.template >= 0 else [math.nan] * 4
        feats = BeatFeatures(
            correlation=p.corr if p.corr == p.corr else 1.0,  # the first beat is the template
            amplitude_ratio=p.amp if p.amp == p.amp else 1.0,
            prematurity=p.prematurity,
            pause=next_rr * p.prematurity / p.rr if p.rr > 0 else math.nan,
            irregularity=p.irregularity,
            template_prematurity=stats[0],
            template_correlation=stats[1],
            template_spread=stats[2],
            template_amplitude=stats[3],
            measurable=p.template >= 0,
            spread_ratio=p.spread if p.spread == p.spread else 1.0,
        )
        out.append((p.seq, decide(feats, self.rules), feats, p.rr, p.p_wave))

    def _result(self, out: list[tuple[int, str, BeatFeatures, float, float]]) -> ClassifiedBeats:
        if not out:
            return self._empty
        seq, labels, feats, rr, p_wave = zip(*out, strict=True)
        rr_s = np.array(rr, dtype=float) / self.fs
        seqs = np.array(seq, dtype=np.int64)
        return ClassifiedBeats(seqs, labels, self.fs, rr_s, feats, np.array(p_wave, dtype=float))
