"""Heart rate from beats."""

from __future__ import annotations

import math

import numpy as np

from dsp.heart_rate import HeartRateTracker
from dsp.qrs import Beats


def _beats(seq: list[int], fs: float, first_rr: float = float("nan")) -> Beats:
    s = np.array(seq, dtype=np.int64)
    rr = np.concatenate([[first_rr], np.diff(s) / fs])
    return Beats(s, fs, np.ones(len(s)), rr)


def test_median_rate_ignores_one_extra_beat() -> None:
    fs = 100.0
    seq = [0, 100, 200, 300, 350, 400, 500, 600, 700]  # 60 bpm with one extra beat
    hr = HeartRateTracker().process(_beats(seq, fs), now_seq=700)
    assert abs(hr.average_bpm - 60.0) < 1e-9
    assert hr.instant_bpm == 60.0


def test_rate_goes_stale_without_beats() -> None:
    fs = 100.0
    t = HeartRateTracker(stale_s=5.0)
    t.process(_beats([0, 100, 200], fs), now_seq=200)
    assert math.isnan(t.current(200 + 501).average_bpm)
    assert not math.isnan(t.current(200 + 499).average_bpm)
