"""Beat classes N / S / V / Q from morphology and timing, streaming and causal.

Each beat the QRS detector reports is compared with the patient's own running
templates and with the rhythm around it, as a Holter scanner does:

- **Morphology.** The beat's waveform, 0.10 s before to 0.16 s after its R peak
  (the lead the detector uses, level taken from its first 20 ms), is matched
  against up to four running templates (correlation over 0.9 joins a template and
  moves it; otherwise it starts a new one, replacing the least used). The template
  that has gathered the most beats is the *dominant* one: the patient's normal
  beat. Compared with it: correlation, peak-to-peak amplitude ratio, and QRS width
  ratio (the detector's width over the median width of the dominant beats).
- **Timing.** Prematurity (the interval before the beat over the median of the
  last 8 intervals) and the pause after it (the next interval over that median),
  and whether the rhythm around is regular (in AF every beat is "premature").

The decision (:func:`decide`) is a short table of rules in plain view:

- ``Q`` when the waveform could not be measured (samples missing, flat or
  implausibly large);
- ``V`` when the shape differs from the dominant beat (correlation under
  ``corr_v``) and the beat is wide (width ratio over ``wide``), of very different
  size, premature with a pause after it, or of a template whose beats come early
  on average (a shape that is not the dominant one but comes on time and is
  narrow is a second normal shape: intermittent bundle branch block,
  pre-excitation);
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

import numpy as np

from dsp.block import SampleBlock
from dsp.qrs import Beats

__all__ = ["BeatClassifier", "BeatFeatures", "ClassifiedBeats", "Rules", "decide"]

PRE_S = 0.09  # waveform before R, s
POST_S = 0.11  # ... and after, s
LEVEL_S = 0.02  # its first 20 ms give the level
SLOPE_S = 0.008  # shapes are compared as slopes over 8 ms (no baseline, QRS weighted)
TEMPLATES = 4
JOIN = 0.90  # correlation that joins a template
RR_BEATS = 8
MAX_MV = 8.0  # a larger peak-to-peak is not a QRS (saturation, artefact)
MIN_MV = 0.02


@dataclass(frozen=True, slots=True)
class Rules:
    """Constants of :func:`decide` (dimensionless ratios)."""

    corr_v: float = 0.70
    wide: float = 1.60
    amp_low: float = 0.5
    amp_high: float = 2.5
    early: float = 0.90  # a template whose beats come this early on average is ectopic
    premature: float = 0.85
    pause: float = 1.10
    regular: float = 0.08  # median |RR - median| / median under this: regular rhythm


@dataclass(frozen=True, slots=True)
class BeatFeatures:
    """What the decision reads for one beat (NaN when not measurable)."""

    correlation: float  # with the dominant template
    amplitude_ratio: float  # peak-to-peak over the dominant template's
    width_ratio: float  # QRS width over the median width of dominant beats
    prematurity: float  # interval before over the median of recent intervals
    pause: float  # interval after over the same median (NaN: unknown)
    irregularity: float  # median |RR - median| / median of recent intervals
    template_prematurity: float  # mean prematurity of the beats of its template
    measurable: bool


def decide(f: BeatFeatures, rules: Rules = Rules()) -> str:  # noqa: B008 - frozen
    """The class of one beat: ``"N"``, ``"S"``, ``"V"`` or ``"Q"`` (see module docstring)."""
    if not f.measurable:
        return "Q"
    if f.correlation < rules.corr_v:  # not the dominant shape: which other kind?
        odd_size = not rules.amp_low <= f.amplitude_ratio <= rules.amp_high
        early = f.template_prematurity < rules.early
        ectopic = f.prematurity < rules.premature and f.pause > rules.pause
        if f.width_ratio > rules.wide or odd_size or early or ectopic:
            return "V"
        return "N"  # a second normal shape (intermittent bundle branch block, ...)
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
    features
        What each label was decided from.
    fs
        Sample rate, Hz.
    """

    seq: np.ndarray
    labels: tuple[str, ...]
    features: tuple[BeatFeatures, ...]
    fs: float

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ventricular(self) -> np.ndarray:
        """True where the label is V."""
        return np.array([x == "V" for x in self.labels], dtype=bool)

    @classmethod
    def concat(cls, parts: list[ClassifiedBeats], fs: float) -> ClassifiedBeats:
        seq = np.concatenate([p.seq for p in parts]) if parts else np.zeros(0, np.int64)
        labels = tuple(x for p in parts for x in p.labels)
        feats = tuple(x for p in parts for x in p.features)
        return cls(seq.astype(np.int64), labels, feats, fs)


@dataclass(slots=True)
class _Pending:
    seq: int
    rr: float  # samples since the previous beat (NaN: first of a stream)
    width: float  # samples
    corr: float
    amp: float
    template: int  # -1: not measurable
    prematurity: float
    irregularity: float


@dataclass(slots=True)
class _Templates:
    """Up to ``TEMPLATES`` running average waveforms with their beat counts."""

    length: int
    shapes: np.ndarray = field(init=False)  # (k, length), mV
    unit: np.ndarray = field(init=False)  # centred, unit-norm shapes
    counts: list[int] = field(default_factory=list)
    ptp: list[float] = field(default_factory=lambda: [0.0] * TEMPLATES)  # running, mV
    prem: list[float] = field(default_factory=lambda: [1.0] * TEMPLATES)  # running prematurity
    widths: deque[float] = field(default_factory=lambda: deque(maxlen=16))  # dominant's

    def __post_init__(self) -> None:
        self.shapes = np.zeros((TEMPLATES, self.length))
        self.unit = np.zeros((TEMPLATES, self.length))

    @property
    def dominant(self) -> int:
        return max(range(len(self.counts)), key=self.counts.__getitem__)

    def match(self, unit: np.ndarray) -> tuple[int, float]:
        """(best template, its correlation); (-1, nan) when there is none."""
        k = len(self.counts)
        if not k:
            return -1, math.nan
        corr = self.unit[:k] @ unit
        j = int(corr.argmax())
        return j, float(corr[j])

    def timing(self, j: int, prematurity: float) -> None:
        """Fold a beat's prematurity into template ``j``'s running mean."""
        if prematurity == prematurity:
            self.prem[j] += (prematurity - self.prem[j]) / min(self.counts[j] + 1, 16)

    def learn(self, seg: np.ndarray, unit: np.ndarray, j: int, corr: float, ptp: float) -> int:
        """Move template ``j`` towards ``seg`` (or start a new template); its index."""
        if j < 0 or corr < JOIN:
            if len(self.counts) < TEMPLATES:
                j = len(self.counts)
                self.counts.append(0)
            else:
                j = min(range(TEMPLATES), key=self.counts.__getitem__)
                self.counts[j] = 0
            self.shapes[j] = seg
            self.ptp[j] = ptp
            self.prem[j] = 1.0
        else:
            rate = 1.0 / min(self.counts[j] + 1, 16)
            self.shapes[j] += (seg - self.shapes[j]) * rate
            self.ptp[j] += (ptp - self.ptp[j]) * rate
        self.counts[j] += 1
        if sum(self.counts) > 512:  # recent beats weigh most; bounded counts
            self.counts = [c // 2 for c in self.counts]
        self.unit[j] = _unit(self.shapes[j])
        return j


def _unit(x: np.ndarray) -> np.ndarray:
    c = x - x.mean()
    n = math.sqrt(float(c @ c))
    return c / n if n > 0 else c


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
    ) -> None:
        self.fs = float(fs)
        self.n_leads = n_leads
        self.lead = lead
        self.rules = rules or Rules()
        self._pre = int(round(PRE_S * fs))
        self._post = int(round(POST_S * fs))
        self._level = max(int(round(LEVEL_S * fs)), 1)
        self._lag = max(int(round(SLOPE_S * fs)), 1)
        self._keep = int(round(buffer_s * fs))  # samples kept before each new block
        self._buf = np.full(self._keep, np.nan)
        self._end: int | None = None  # sequence number one past the buffer's last sample
        self._tpl = _Templates(self._pre + self._post - self._lag)
        self._rr: deque[float] = deque(maxlen=RR_BEATS)
        self._pending: _Pending | None = None
        self._last_seq: int | None = None
        self._empty = ClassifiedBeats(np.zeros(0, np.int64), (), (), self.fs)

    #: Longest time from a beat's arrival to its label: the next beat.
    latency_beats = 1

    def process(self, block: SampleBlock, beats: Beats) -> ClassifiedBeats:
        """Take a block and the beats detected with it; return the beats now labelled."""
        self._store(block.samples[:, self.lead], block.seq)
        if not len(beats):
            return self._empty
        out: list[tuple[int, str, BeatFeatures]] = []
        rr_s = beats.rr_s.tolist()
        widths = beats.width_s.tolist() if beats.width_s is not None else [math.nan] * len(beats)
        for s, rr, w in zip(beats.seq.tolist(), rr_s, widths, strict=True):
            self._beat(int(s), rr * self.fs, w * self.fs, out)
        return self._result(out)

    def finish(self) -> ClassifiedBeats:
        """End of the stream: label the beat still waiting for its successor."""
        out: list[tuple[int, str, BeatFeatures]] = []
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

    def _segment(self, r: int) -> np.ndarray | None:
        """The waveform around R (level removed), or None when not all there."""
        assert self._end is not None
        lo = r - self._pre - (self._end - self._buf.shape[0])
        hi = lo + self._pre + self._post
        if lo < 0 or hi > self._buf.shape[0]:
            return None
        seg = self._buf[lo:hi]
        level = seg[: self._level].mean()
        if level != level:  # NaN: a sample is missing
            return None
        seg = seg - level
        ptp = float(seg.max() - seg.min())
        if not MIN_MV <= ptp <= MAX_MV or ptp != ptp:
            return None
        return seg

    # --- per beat ------------------------------------------------------------------
    def _beat(self, s: int, rr: float, width: float, out: list) -> None:
        if self._pending is not None:
            next_rr = rr if rr == rr else math.nan
            self._label(self._pending, next_rr, out)
        if rr != rr:  # first beat of a stream, or after a gap
            self._rr.clear()
        prem, irr = self._timing(rr)
        seg = self._segment(s)
        pending = _Pending(s, rr, width, math.nan, math.nan, -1, prem, irr)
        if seg is not None:
            self._morphology(seg, pending)
        self._pending = pending
        if rr == rr:
            self._rr.append(rr)

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

    def _morphology(self, seg: np.ndarray, p: _Pending) -> None:
        ptp = float(seg.max() - seg.min())
        seg = seg[self._lag :] - seg[: -self._lag]
        unit = _unit(seg)
        tpl = self._tpl
        if tpl.counts:
            dom = tpl.dominant
            p.corr = float(tpl.unit[dom] @ unit)
            dom_ptp = tpl.ptp[dom]
            p.amp = ptp / dom_ptp if dom_ptp > 0 else math.nan
        j, corr = tpl.match(unit)
        p.template = tpl.learn(seg, unit, j, corr, ptp)
        tpl.timing(p.template, p.prematurity)
        if p.template == tpl.dominant and p.width == p.width:
            tpl.widths.append(p.width)

    def _label(self, p: _Pending, next_rr: float, out: list) -> None:
        widths = sorted(self._tpl.widths)
        k = len(widths)
        med_w = widths[k // 2] if k else math.nan
        feats = BeatFeatures(
            correlation=p.corr if p.corr == p.corr else 1.0,  # the first beat is the template
            amplitude_ratio=p.amp if p.amp == p.amp else 1.0,
            width_ratio=p.width / med_w if med_w and med_w == med_w else 1.0,
            prematurity=p.prematurity,
            pause=next_rr * p.prematurity / p.rr if p.rr > 0 else math.nan,
            irregularity=p.irregularity,
            template_prematurity=self._tpl.prem[p.template] if p.template >= 0 else math.nan,
            measurable=p.template >= 0,
        )
        out.append((p.seq, decide(feats, self.rules), feats))

    def _result(self, out: list[tuple[int, str, BeatFeatures]]) -> ClassifiedBeats:
        if not out:
            return self._empty
        seq, labels, feats = zip(*out, strict=True)
        return ClassifiedBeats(np.array(seq, dtype=np.int64), labels, feats, self.fs)
