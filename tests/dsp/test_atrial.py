"""P-wave score: high for a consistent P wave before the QRS, low for f-wave-like noise."""

from __future__ import annotations

import numpy as np

from dsp.atrial import PWaveScorer


def test_consistent_p_wave_scores_high_noise_low() -> None:
    fs = 360.0
    rng = np.random.default_rng(0)
    p = PWaveScorer(fs)
    t = np.arange(p.length) / fs
    bump = 0.15 * np.exp(-(((t - 0.08) / 0.025) ** 2))  # a P wave, mV
    sinus = [p.score(bump + 0.2 * t + 0.01 * rng.standard_normal(p.length)) for _ in range(40)]
    assert np.isnan(sinus[0]) and np.nanmedian(sinus[8:]) > 0.9  # wander and noise removed
    q = PWaveScorer(fs)
    waves = [  # fibrillatory waves at 6 Hz, unrelated to the QRS
        q.score(0.05 * np.sin(2 * np.pi * 6.0 * t + rng.uniform(0, 2 * np.pi))) for _ in range(40)
    ]
    assert abs(np.nanmedian(waves[8:])) < 0.4
