"""What the beat classifier measures of one beat: its shape against the patient's running
templates, on one or two leads (the signal side; no decisions).

For each beat, in order (:class:`BeatMeasure`):

1. **Anchor.** The R peak the detector reports is not on the same wave in every beat (the
   R, or the S of a biphasic QRS); the beat is anchored at the centre of its QRS energy
   instead: the centroid of the squared 8-ms slopes of the first lead within 0.1 s of R.
2. **Match.** The slopes (8 ms apart) from 0.09 s before to 0.11 s after the anchor, at
   each alignment within 30 ms, centred and of unit norm, are correlated with up to six
   running templates (first lead). A correlation of 0.9 joins the best template (which
   then moves towards the beat); otherwise the beat starts a template (replacing the least
   used one).
3. **Reference.** The beat is compared with the *reference* template that matches it best:
   templates holding at least a fifth of the recent beats whose beats come on time on
   average (mean prematurity at least 0.92) — the patient's normal shapes (two are
   common: an intermittent bundle branch block, a respiratory axis shift). A populous
   template of premature beats (ventricular bigeminy) is not a reference; when no
   template qualifies, the one with most beats is.
4. **Features** against the reference, per lead: shape correlation; amplitude (peak to
   peak) and slope spread in time (a wide QRS spreads) as ratios; the waveform from 0.1 s
   before to 0.3 s after the anchor: its correlation, the RMS difference over the QRS
   (-50..+80 ms) and over the ST-T segment (+0.10..+0.30 s) relative to the reference's
   amplitude, the QRS area ratio; and the same differences relative to what the
   reference's own beats show (a noisy patient's normal beats differ more); noise before
   the QRS; the share of recent beats in the beat's template; running means over the
   beat's template of its beats' prematurity, correlation, spread and differences; the
   QRS slopes' high-frequency share (energy of their 8-ms differences over their energy)
   over the reference template's running mean of it.

The state (up to six templates of both leads and their running means) lives in one
float64 array whose layout :class:`Layout` gives; two interchangeable paths compute each
beat: :func:`measure_numpy` (this module) and the optional compiled kernel
(``dsp._qrs_kernel.beat``). Every sum is taken in index order (``np.add.accumulate``),
as the kernel does, so both give bit-identical features (tests/dsp/test_beat_kernel.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FEATURES", "Layout", "features_of", "measure_numpy"]

PRE_S = 0.09  # slope shape: before the anchor ...
POST_S = 0.11  # ... and after it, s
SLOPE_S = 0.008  # slopes over 8 ms
SHIFT_S = 0.03  # alignments searched either way, s
ANCHOR_S = 0.10  # the anchor is searched this far either side of R, s
WAVE_PRE_S = 0.10  # waveform window: before the anchor ...
WAVE_POST_S = 0.30  # ... and after it, s
LEVEL_S = 0.02  # the waveform's level: its first 20 ms
# A beat is measurable when its QRS window's peak to peak (filtered, mV) is within these:
# above the flat line of a lead off, below anything a heart makes on the skin (the tallest
# QRS complexes, precordial leads of a thin patient or a large ventricular beat, stay under
# about 10 mV) and within the range of every front end we read.
PTP_MIN_MV, PTP_MAX_MV = 0.02, 20.0
QRS_S = (-0.05, 0.08)  # the QRS part of the waveform, s from the anchor
ST_S = (0.10, 0.30)  # the ST-T part
NOISE_S = (-0.30, -0.15)  # noise is measured here (slopes), s from the anchor
TEMPLATES = 6
JOIN = 0.90  # correlation that joins a template
REF_SHARE = 0.20  # a reference template holds this share of recent beats ...
REF_PREMATURITY = 0.92  # ... and its beats' mean prematurity is at least this
MAX_COUNT = 512  # counts are halved when their sum exceeds this (recent beats weigh most)
HORIZON = 16  # running means: rate 1 / min(n, HORIZON)

#: Per-beat features, in the order of a features row. ``_B`` ones exist with a second lead.
_ONE = (
    "prematurity", "irregularity", "pause", "corr", "corr_dominant", "references",
    "amplitude", "spread", "wave_corr", "qrs_diff", "st_diff", "area", "share",
    "is_reference", "noise", "qrs_diff_z", "st_diff_z", "corr_z",
    "t_prematurity", "t_corr", "t_spread", "t_qrs_diff_z", "t_corr_z",
)  # fmt: skip
_TWO = (
    "corr_b", "amplitude_b", "spread_b", "wave_corr_b", "qrs_diff_b", "st_diff_b",
    "qrs_diff_z_b", "st_diff_z_b", "corr_z_b", "t_corr_b", "t_corr_z_b",
)  # fmt: skip
FEATURES = {1: (*_ONE, "hfs_z"), 2: (*_ONE, *_TWO, "hfs_z")}  # hfs_z: always last
# template running means (NaN: none yet), in this order
_STATS = ("prematurity", "corr", "spread", "qrs_diff_z", "corr_z", "qrs_diff", "st_diff",
          "corr_b", "corr_z_b", "qrs_diff_b", "st_diff_b", "hfs")  # fmt: skip
N_STATS = len(_STATS)


def features_of(row: np.ndarray, leads: int) -> dict[str, float]:
    """A features row as a name → value mapping (for reading and tests)."""
    return dict(zip(FEATURES[leads], row.tolist(), strict=True))


def _r(x: float) -> int:
    """Round half up (the kernel's ``floor(x + 0.5)``)."""
    return int(math.floor(x + 0.5))


@dataclass(frozen=True, slots=True)
class Layout:
    """Sizes in samples at a sample rate, and where each part of the state lives.

    The state is one float64 array: ``[0]`` the number of templates in use, then one
    block of ``size`` values per template: unit slope shapes (leads x length), mean
    slopes (leads x length), mean waveforms (leads x wave), amplitudes (leads), beat
    count, running means (:data:`N_STATS`).
    """

    fs: float
    leads: int
    pre: int
    post: int
    lag: int
    shift: int
    length: int  # slope shape
    anchor: int
    wave_pre: int
    wave: int  # waveform samples
    level: int
    qrs: tuple[int, int]  # in the waveform
    st: tuple[int, int]
    noise: tuple[int, int]  # from the anchor
    before: int  # samples needed before R ...
    after: int  # ... and after it (R itself included)

    @classmethod
    def at(cls, fs: float, leads: int) -> Layout:
        lag = max(_r(SLOPE_S * fs), 1)
        pre, post, shift = _r(PRE_S * fs), _r(POST_S * fs), max(_r(SHIFT_S * fs), 1)
        anchor = max(_r(ANCHOR_S * fs), lag + 1)
        wave_pre, wave_post = _r(WAVE_PRE_S * fs), _r(WAVE_POST_S * fs)
        noise = (_r(NOISE_S[0] * fs), _r(NOISE_S[1] * fs))
        qrs = (wave_pre + _r(QRS_S[0] * fs), wave_pre + _r(QRS_S[1] * fs))
        st = (wave_pre + _r(ST_S[0] * fs), wave_pre + _r(ST_S[1] * fs))
        before = anchor + max(pre + shift, wave_pre + shift, lag - noise[0])
        after = anchor + max(post + shift, wave_post + shift + 1)
        return cls(
            fs, leads, pre, post, lag, shift, pre + post - lag, anchor, wave_pre,
            wave_pre + wave_post + 1, max(_r(LEVEL_S * fs), 1), qrs, st, noise, before, after,
        )  # fmt: skip

    @property
    def size(self) -> int:
        """Values per template."""
        m = self.leads
        return 2 * m * self.length + m * self.wave + m + 1 + N_STATS

    @property
    def kernel_params(self) -> np.ndarray:
        """The sizes the compiled kernel reads, in its order (int64)."""
        return np.array(
            [self.leads, self.pre, self.post, self.lag, self.shift, self.length, self.anchor,
             self.wave_pre, self.wave, self.level, *self.qrs, *self.st, *self.noise,
             TEMPLATES, self.size, N_STATS],
            dtype=np.int64,
        )  # fmt: skip

    @property
    def scratch_size(self) -> int:
        """float64 values of scratch space the kernel needs."""
        m, n, a, w = self.leads, self.length, 2 * self.shift + 1, self.wave
        return 2 * m * a * n + 2 * m * w + 2 * w + n + 2 * self.anchor

    @property
    def n_features(self) -> int:
        return len(FEATURES[self.leads])

    def new_state(self) -> np.ndarray:
        state = np.zeros(1 + TEMPLATES * self.size)
        self.views(state)[-1][:] = np.nan  # no running means yet
        return state

    def views(self, state: np.ndarray) -> tuple[np.ndarray, ...]:
        """(unit, slopes, waves, ptp, count, stats) views of the template blocks."""
        m, n, w = self.leads, self.length, self.wave
        blocks = state[1:].reshape(TEMPLATES, self.size)
        a = m * n
        unit = blocks[:, :a].reshape(TEMPLATES, m, n)
        slopes = blocks[:, a : 2 * a].reshape(TEMPLATES, m, n)
        b = 2 * a + m * w
        waves = blocks[:, 2 * a : b].reshape(TEMPLATES, m, w)
        ptp = blocks[:, b : b + m]
        count = blocks[:, b + m]
        stats = blocks[:, b + m + 1 :]
        return unit, slopes, waves, ptp, count, stats


def _sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis in index order (what the kernel's loops do)."""
    return np.add.accumulate(x, axis=-1)[..., -1]


def _spread(v: np.ndarray, t: np.ndarray, t2: np.ndarray) -> float:
    """RMS time of ``|v|`` about its centre of mass, samples (NaN for a zero vector)."""
    w = np.abs(v)
    total = float(_sum(w))
    if not total > 0:
        return math.nan
    mean = float(_sum(w * t)) / total
    return math.sqrt(max(float(_sum(w * t2)) / total - mean * mean, 1e-9))


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` centred and of unit norm (rows of a 2-D array each)."""
    n = v.shape[-1]
    c = v - (_sum(v) / n)[..., None]
    norm = np.sqrt(_sum(c * c))
    return c / np.maximum(norm, 1e-12)[..., None]


def _stat(value: float, default: float) -> float:
    return default if value != value else value


@dataclass(frozen=True, slots=True)
class _Beat:
    """One beat's signal as :func:`measure_numpy` reads it."""

    s: int  # the anchor, column of the ring
    ptp: np.ndarray  # peak to peak per lead, mV
    window: np.ndarray  # waveform windows, every alignment (leads x wave + 2 shift)
    nseg: np.ndarray  # first lead's samples of the noise window
    lead_b: bool  # the second lead is measurable
    rows: np.ndarray  # slopes at every alignment (leads, alignments, length)
    units: np.ndarray  # ... centred, of unit norm


def _anchor(lay: Layout, first: np.ndarray, r: int) -> int:
    """The centroid of the squared slopes within ``anchor`` of R (column of the ring)."""
    lag = lay.lag
    a0 = r - lay.anchor
    seg = first[a0 : r + lay.anchor] - first[a0 - lag : r + lay.anchor - lag]
    e = seg * seg
    total = float(_sum(e))
    if not total > 0:
        return r
    centre = float(_sum(e * np.arange(e.shape[0], dtype=np.float64))) / total
    return a0 + _r(centre - 0.5 * lag)


def _read(lay: Layout, ring: np.ndarray, r: int) -> _Beat | None:
    """The beat at column ``r``: its anchor, slopes at every alignment and waveform
    windows; None when it cannot be measured."""
    m, n, sh, lag = lay.leads, lay.length, lay.shift, lay.lag
    first = ring[0]
    s = _anchor(lay, first, r)
    lo = s - lay.pre - sh
    ext = ring[:, lo : s + lay.post + sh]
    core = ext[:, sh : ext.shape[1] - sh]
    ptp = core.max(axis=1) - core.min(axis=1)
    wlo = s - lay.wave_pre - sh
    window = ring[:, wlo : wlo + lay.wave + 2 * sh]
    nseg = first[s + lay.noise[0] - lag : s + lay.noise[1]]
    if not (
        PTP_MIN_MV <= ptp[0] <= PTP_MAX_MV
        and math.isfinite(float(_sum(window[0])))
        and math.isfinite(float(_sum(ext[0])))
        and math.isfinite(float(_sum(nseg)))
    ):
        return None
    lead_b = (
        m > 1
        and PTP_MIN_MV <= ptp[1] <= PTP_MAX_MV
        and math.isfinite(float(_sum(window[1]) + _sum(ext[1])))
    )
    slopes = ext[:, lag:] - ext[:, :-lag]  # (leads, length + 2 shift)
    idx = np.arange(2 * sh + 1)[:, None] + np.arange(n)
    rows = slopes[:, idx]  # (leads, alignments, length)
    return _Beat(s, ptp, window, nseg, lead_b, rows, _unit(rows))


def _lead_features(
    lay: Layout, state: np.ndarray, b: _Beat, ref: int, da: int, lead: int, out: np.ndarray
) -> None:
    """Amplitude, spread, waveform correlation, QRS and ST-T differences and area of one
    lead against the reference template ``ref`` (beat at alignment ``da``)."""
    _, tslopes, waves, tptp, _, _ = lay.views(state)
    t = np.arange(lay.length, dtype=np.float64)
    cols = (6, 7, 8, 9, 10, 11) if lead == 0 else (24, 25, 26, 27, 28, None)
    rp = float(tptp[ref, lead])
    out[cols[0]] = b.ptp[lead] / max(rp, 1e-9)
    ref_spread = _spread(tslopes[ref, lead], t, t * t)
    out[cols[1]] = _spread(b.rows[lead, da], t, t * t) / max(_stat(ref_spread, 1.0), 1e-9)
    dw = waves[ref, lead]
    wv = b.window[lead, da : da + lay.wave]
    wv = wv - float(_sum(wv[: lay.level])) / lay.level
    out[cols[2]] = float(_sum(_unit(wv) * _unit(dw)))
    qa, qb = lay.qrs
    diff = wv[qa:qb] - dw[qa:qb]
    out[cols[3]] = math.sqrt(float(_sum(diff * diff))) / max(rp, 1e-9) / math.sqrt(qb - qa)
    sa, sb = lay.st
    diff = wv[sa:sb] - dw[sa:sb]
    out[cols[4]] = math.sqrt(float(_sum(diff * diff))) / max(rp, 1e-9) / math.sqrt(sb - sa)
    if cols[5] is not None:
        ref_area = float(_sum(np.abs(dw[qa:qb])))
        out[cols[5]] = float(_sum(np.abs(wv[qa:qb]))) / max(ref_area, 1e-9)


def _hfs(lay: Layout, b: _Beat) -> float:
    """The high-frequency share of the first lead's QRS slopes as placed: the energy of
    their differences ``lag`` apart over their energy (NaN for flat slopes)."""
    s = b.rows[0, lay.shift]
    d = s[lay.lag :] - s[: -lay.lag]
    e = float(_sum(s * s))
    return float(_sum(d * d)) / e if e > 0 else math.nan


def _compare(
    lay: Layout, state: np.ndarray, b: _Beat, hfs: float, out: np.ndarray
) -> tuple[int, float, int]:
    """Features against the templates (none yet: left NaN); returns (best template or
    -1, its correlation, the alignment the beat is learnt at)."""
    sh = lay.shift
    unit, _, _, tptp, count, stats = lay.views(state)
    k = int(state[0])
    if not k:
        return -1, -math.inf, sh
    # correlation with every template at every alignment (first lead)
    corrs = _sum(b.units[0][None, :, :] * unit[:k, 0][:, None, :])  # (templates, alignments)
    best_at = corrs.argmax(axis=1).tolist()
    best_c = corrs.max(axis=1).tolist()
    j = max(range(k), key=best_c.__getitem__)
    best = best_c[j]
    at = best_at[j] if best >= JOIN else sh
    counts = count[:k].tolist()
    total_n = sum(counts)
    refs = [
        q for q in range(k)
        if counts[q] >= REF_SHARE * total_n and _stat(stats[q, 0], 1.0) >= REF_PREMATURITY
    ]  # fmt: skip
    dom = max(range(k), key=counts.__getitem__)
    if not refs:
        refs = [dom]
    ref = max(refs, key=best_c.__getitem__)
    da = best_at[ref]
    ref_stats = stats[ref].tolist()
    out[3] = best_c[ref]
    out[4] = best_c[dom]
    out[5] = len(refs)
    out[12] = (counts[j] if best >= JOIN else 0.0) / total_n
    out[13] = 1.0 if best >= JOIN and j in refs else 0.0
    use_b = b.lead_b and tptp[ref, 1] > 0  # the reference has a second lead learnt
    for lead in range(2 if use_b else 1):
        _lead_features(lay, state, b, ref, da, lead, out)
    # the differences over what the reference's own beats show
    out[15] = out[9] / max(_stat(ref_stats[5], 0.05), 0.01)
    out[16] = out[10] / max(_stat(ref_stats[6], 0.05), 0.01)
    out[17] = (1.0 - out[3]) / max(1.0 - _stat(ref_stats[1], 0.95), 0.01)
    if use_b:
        out[23] = float(_sum(b.units[1, da] * unit[ref, 1]))
        out[29] = out[27] / max(_stat(ref_stats[9], 0.05), 0.01)
        out[30] = out[28] / max(_stat(ref_stats[10], 0.05), 0.01)
        out[31] = (1.0 - out[23]) / max(1.0 - _stat(ref_stats[7], 0.95), 0.01)
    out[-1] = hfs / max(_stat(ref_stats[11], hfs), 1e-9)  # hfs_z (1 with no mean yet)
    return j, best, at


def _learn(lay: Layout, state: np.ndarray, b: _Beat, j: int, best: float, at: int) -> int:
    """Join the best template, or start one (replacing the least used); returns its
    index."""
    unit, tslopes, waves, tptp, count, stats = lay.views(state)
    k = int(state[0])
    wave = b.window[:, at : at + lay.wave]
    wave = wave - (_sum(wave[:, : lay.level]) / lay.level)[:, None]
    if j < 0 or best < JOIN:
        if k < TEMPLATES:
            j = k
            state[0] = k + 1
        else:
            j = int(np.argmin(count))
        unit[j], tslopes[j], waves[j], tptp[j] = 0.0, 0.0, 0.0, 0.0
        count[j] = 0.0
        stats[j] = math.nan
    rate = 1.0 / min(count[j] + 1.0, HORIZON)
    for lead in range(2 if b.lead_b else 1):  # the leads the beat teaches
        if tptp[j, lead] > 0:  # move the template towards the beat
            u = unit[j, lead] + (b.units[lead, at] - unit[j, lead]) * rate
            unit[j, lead] = u / math.sqrt(float(_sum(u * u)))
            tslopes[j, lead] += (b.rows[lead, at] - tslopes[j, lead]) * rate
            waves[j, lead] += (wave[lead] - waves[j, lead]) * rate
            tptp[j, lead] += (b.ptp[lead] - tptp[j, lead]) * rate
        else:  # a new template, or its first beat with this lead measurable
            unit[j, lead] = b.units[lead, at]
            tslopes[j, lead] = b.rows[lead, at]
            waves[j, lead] = wave[lead]
            tptp[j, lead] = b.ptp[lead]
    count[j] += 1.0
    if float(_sum(count[: int(state[0])])) > MAX_COUNT:
        count[: int(state[0])] = np.maximum(np.floor(count[: int(state[0])] / 2.0), 1.0)
    return j


def _running_means(lay: Layout, state: np.ndarray, j: int, hfs: float, out: np.ndarray) -> None:
    """Fold the beat's values into template ``j``'s running means (NaN values are not
    folded) and write the template features."""
    m = lay.leads
    count, stats = lay.views(state)[4:]
    rate = 1.0 / min(count[j], HORIZON)
    row = stats[j]
    values = (out[0], out[3], out[7], out[15], out[17], out[9], out[10],
              out[23] if m > 1 else math.nan, out[31] if m > 1 else math.nan,
              out[27] if m > 1 else math.nan, out[28] if m > 1 else math.nan, hfs)  # fmt: skip
    for i, v in enumerate(values):
        if v == v:
            old = row[i]
            row[i] = v if old != old else old + (v - old) * rate
    out[18:23] = row[[0, 1, 2, 3, 4]]
    if m > 1:
        out[32] = row[7]
        out[33] = row[8]


def measure_numpy(
    lay: Layout,
    state: np.ndarray,
    ring: np.ndarray,
    r: int,
    prem: float,
    irr: float,
    out: np.ndarray,
) -> int:
    """Measure the beat whose R peak is at column ``r`` of ``ring`` (leads x samples,
    filtered, mV; columns ``r - before`` to ``r + after`` present) against the templates
    in ``state``, write its features into ``out`` (``prem`` and ``irr``, the timing
    features, are given; ``pause`` is left NaN: it is not known yet), learn it. The second
    lead is used when there is one and it is measurable (finite, 0.02-20 mV peak to peak)
    for the beat and the reference; its features are NaN otherwise, and its template parts
    are learnt only from beats where it is measurable.

    Returns the index of the template the beat joined or started, plus ``TEMPLATES`` when
    it is a reference template; ``-1`` when the beat cannot be measured (a sample missing,
    or the first lead flat or implausibly large), in which case nothing is learnt.
    """
    b = _read(lay, ring, r)
    if b is None:
        return -1
    out[:] = math.nan
    out[0] = prem
    out[1] = irr
    hfs = _hfs(lay, b)
    j, best, at = _compare(lay, state, b, hfs, out)
    # noise before the QRS (slopes), over the QRS's slopes as placed
    lag, n = lay.lag, lay.length
    ns = b.nseg[lag:] - b.nseg[:-lag]
    qs = b.rows[0, lay.shift]
    out[14] = math.sqrt(float(_sum(ns * ns)) / ns.shape[0]) / max(
        math.sqrt(float(_sum(qs * qs)) / n), 1e-9
    )
    j = _learn(lay, state, b, j, best, at)
    _running_means(lay, state, j, hfs, out)
    return j + (TEMPLATES if out[13] == 1.0 else 0)
