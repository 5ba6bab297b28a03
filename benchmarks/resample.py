"""Records read at another sampling rate than they were recorded at (benchmarks only).

The devices the gateway reads sample at 130 Hz (Polar H10), 250 Hz (our patch) or 500 Hz
(a cart); the annotated databases at 360 Hz (MIT-BIH) or 128 Hz (LTAFDB). ``--fs`` in the
benchmarks reads a record as such a device would have: the signal resampled by a polyphase
filter (:func:`scipy.signal.resample_poly`, its anti-aliasing low-pass included) and the
reference annotations' sample numbers scaled to the new rate.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def resampled(x: np.ndarray, fs: float, fs_new: float) -> np.ndarray:
    """``x`` (samples first, any leads) at ``fs`` Hz, resampled to ``fs_new`` Hz."""
    from scipy.signal import resample_poly

    if fs_new == fs:
        return x
    ratio = Fraction(fs_new / fs).limit_denominator(1000)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=0)


def samples_at(samples: np.ndarray, fs: float, fs_new: float) -> np.ndarray:
    """Sample numbers at ``fs`` Hz as the nearest sample numbers at ``fs_new`` Hz."""
    return np.round(np.asarray(samples, dtype=np.float64) * (fs_new / fs)).astype(np.int64)
