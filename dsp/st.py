"""ST level per lead, measured on a strip's median beat (a measurement, not a diagnosis).

Staff reading a stress test (CPT 93017, tracing only) look at the ST segment lead by
lead, stage by stage; Holter scanning trends it. The gateway measures it on each strip
and reports it as a fact next to the tracing, the way it reports heart rate:

1. Beats: the R peaks the QRS detector found in the strip. A beat whose window
   (250 ms before R to 450 ms after) misses samples, or lies within 20 ms of a gap,
   is left out.
2. Each lead is low-passed at 40 Hz with zero phase (the strip is measured after it was
   recorded, so no causal delay is needed) and, beat by beat, its mean over 100-60 ms
   before R is subtracted: baseline wander moves beats, not the ST against its own PR.
3. The median beat, sample by sample over the beats: ectopic beats and noise barely move
   it.
4. Isoelectric level: the 20 ms between 120 and 30 ms before R where the spatial
   velocity (the sum over leads of the absolute slope) is lowest, i.e. the flattest
   part of the PR segment; its mean per lead.
5. J point (end of QRS): the first sample, from 20 ms after R on, that starts 10 ms of
   spatial velocity under 10 % of the QRS's peak.
6. ST level at J + 60 ms and J + 80 ms per lead, mV, against the isoelectric level
   (J + 60 ms is the usual point at exercise heart rates, J + 80 ms at rest).

Nothing is reported (None) with fewer than 3 usable beats or when no J point is found
within 140 ms of R. Pure numpy/scipy, deterministic; no state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsp.sos import butter_sos, sosfiltfilt

__all__ = ["StLevels", "st_levels"]

_PRE_S, _POST_S = 0.250, 0.450  # beat window around R
_GAP_MARGIN_S = 0.020
_PR_REF_S = (-0.100, -0.060)  # per-beat baseline reference, relative to R
_ISO_SEARCH_S = (-0.120, -0.030)
_ISO_LEN_S = 0.020
_J_SEARCH_S = (0.020, 0.140)
_J_QUIET_S = 0.010
_J_FRACTION = 0.10
_MIN_BEATS = 3


@dataclass(frozen=True, slots=True)
class StLevels:
    """ST levels of one strip's median beat: per lead, in the order of ``leads``, against
    the isoelectric level, mV (negative: depression)."""

    leads: tuple[str, ...]  # lead names
    st60_mv: np.ndarray  # at J + 60 ms
    st80_mv: np.ndarray  # at J + 80 ms
    j_after_r_s: float  # the J point, seconds after the R peak
    iso_before_r_s: float  # centre of the isoelectric segment, seconds before the R peak
    beats: int  # beats in the median

    def as_facts(self) -> dict[str, object]:
        """JSON-ready facts: levels rounded to 0.01 mV (0.1 mm on ECG paper)."""
        return {
            "st60_mv": _by_lead(self.leads, self.st60_mv),
            "st80_mv": _by_lead(self.leads, self.st80_mv),
            "j_after_r_ms": round(1000 * self.j_after_r_s),
            "isoelectric_before_r_ms": round(1000 * self.iso_before_r_s),
            "beats": self.beats,
            "method": "median beat; isoelectric PR; J from spatial velocity; 40 Hz low-pass",
        }


def _by_lead(leads: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {n: round(float(v), 2) for n, v in zip(leads, values, strict=True)}


def st_levels(
    samples_mv: np.ndarray, fs: float, r_peaks: Sequence[int] | np.ndarray, leads: Sequence[str]
) -> StLevels | None:
    """ST levels of a strip.

    Parameters
    ----------
    samples_mv
        (n, leads) samples, mV, as recorded; NaN where samples are missing.
    fs
        Sample rate, Hz.
    r_peaks
        R-peak sample indices into ``samples_mv`` (from the QRS detector).
    leads
        Lead names, one per column.
    """
    x = np.asarray(samples_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    pre, post = int(round(_PRE_S * fs)), int(round(_POST_S * fs))
    r = np.asarray(r_peaks, dtype=np.int64)
    r = r[(r - pre >= 0) & (r + post <= n)]
    if r.size < _MIN_BEATS or fs < 100.0:
        return None
    missing = ~np.isfinite(x).all(axis=1)
    if missing.any():
        margin = int(round(_GAP_MARGIN_S * fs))
        near_gap = np.convolve(missing, np.ones(2 * margin + 1), mode="same") > 0
        count = np.concatenate([[0], np.cumsum(near_gap)])  # near-gap samples before each
        r = r[count[r + post] == count[r - pre]]
        if r.size < _MIN_BEATS:
            return None
        x = _fill(x, missing)
    sos = butter_sos(2, min(40.0, 0.4 * fs), "lowpass", fs)
    y = sosfiltfilt(sos, x)
    offsets = np.arange(-pre, post)
    beats = y[r[:, None] + offsets[None, :]]  # (beats, window, leads)
    ref = slice(pre + int(round(_PR_REF_S[0] * fs)), pre + int(round(_PR_REF_S[1] * fs)))
    beats -= beats[:, ref].mean(axis=1, keepdims=True)
    median = np.median(beats, axis=0)  # (window, leads)
    speed = np.abs(np.diff(median, axis=0)).sum(axis=1) * fs  # spatial velocity, mV/s
    iso = _flattest(speed, pre, fs)
    j = _j_point(speed, pre, fs)
    if j is None:
        return None
    iso_len = int(round(_ISO_LEN_S * fs))
    level = median[iso : iso + iso_len].mean(axis=0)
    at60, at80 = j + int(round(0.060 * fs)), j + int(round(0.080 * fs))
    return StLevels(
        tuple(leads),
        median[at60] - level,
        median[at80] - level,
        (j - pre) / fs,
        (pre - (iso + iso_len / 2)) / fs,
        int(r.size),
    )


def _fill(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Missing samples linearly interpolated (only so the filter can run; beats near
    them are not used)."""
    have = np.flatnonzero(~missing)
    if have.size == 0:
        return np.zeros_like(x)
    out = x.copy()
    gone = np.flatnonzero(missing)
    for k in range(x.shape[1]):
        out[gone, k] = np.interp(gone, have, x[have, k])
    return out


def _flattest(speed: np.ndarray, pre: int, fs: float) -> int:
    """Start of the flattest ``_ISO_LEN_S`` in the PR search range (window index)."""
    length = int(round(_ISO_LEN_S * fs))
    lo = pre + int(round(_ISO_SEARCH_S[0] * fs))
    hi = pre + int(round(_ISO_SEARCH_S[1] * fs)) - length
    sums = np.convolve(speed[lo : hi + length], np.ones(length), mode="valid")
    return lo + int(np.argmin(sums))


def _j_point(speed: np.ndarray, pre: int, fs: float) -> int | None:
    """First window index after R starting ``_J_QUIET_S`` of spatial velocity under
    ``_J_FRACTION`` of the QRS's peak, or None."""
    qrs = speed[pre - int(round(0.060 * fs)) : pre + int(round(0.080 * fs))]
    quiet = speed < _J_FRACTION * qrs.max()
    run = max(int(round(_J_QUIET_S * fs)), 1)
    lo, hi = pre + int(round(_J_SEARCH_S[0] * fs)), pre + int(round(_J_SEARCH_S[1] * fs))
    all_quiet = np.convolve(quiet.astype(np.int64), np.ones(run, np.int64), mode="valid") == run
    found = np.flatnonzero(all_quiet[lo:hi])
    return None if found.size == 0 else lo + int(found[0])
