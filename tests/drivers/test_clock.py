"""Device sample numbers to UTC with drift tracking (drivers/clock.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.clock import ClockTracker

FS = 250.0
T0 = 1_790_000_000.0


def _run(ppm: float, hours: float, seed: int = 0, device_anchor_error_s: float = 0.0):
    """A patch whose crystal is ``ppm`` fast; frames of 50 samples arrive 5 ms-2 s late."""
    rng = np.random.default_rng(seed)
    true_rate = FS * (1 + ppm * 1e-6)
    clock = ClockTracker(FS)
    clock.anchor(0, T0 + device_anchor_error_s)
    n = int(hours * 3600 * FS)
    for end in range(50, n, 50):
        latency = 0.005 + rng.exponential(0.05) + (rng.random() < 0.02) * rng.uniform(0, 2)
        clock.observe(end - 1, T0 + (end - 1) / true_rate + latency)
    truth = lambda seq: T0 + seq / true_rate  # noqa: E731
    return clock, truth, n


def test_drift_of_a_fast_patch_is_measured_and_corrected() -> None:
    clock, truth, n = _run(ppm=100.0, hours=2.0)
    assert abs(clock.drift_ppm - 100.0) < 5.0
    # without tracking, 2 h at 100 ppm would be 0.72 s off; with it, within the latency floor
    for seq in (n // 2, n - 1000):
        assert abs(clock.utc_of(seq) - truth(seq)) < 0.03


def test_wrong_device_clock_is_slewed_to_utc_without_a_jump() -> None:
    clock, truth, n = _run(ppm=-40.0, hours=1.0, device_anchor_error_s=3.0)
    assert abs(clock.utc_of(n - 100) - truth(n - 100)) < 0.03
    seqs = np.arange(0, n, 97)
    times = np.array([clock.utc_of(int(s)) for s in seqs])
    assert np.all(np.diff(times) > 0)  # monotonic: no block ever goes back in time
    steps = np.diff(times) / np.diff(seqs)
    assert steps.max() <= 1.02 / FS and steps.min() >= 0.98 / FS  # slewed, never jumped


@settings(max_examples=30, deadline=None)
@given(st.floats(-200, 200), st.integers(0, 2**16))
def test_mapping_is_monotonic_whatever_the_drift(ppm: float, seed: int) -> None:
    clock, _, n = _run(ppm=ppm, hours=0.5, seed=seed)
    seqs = np.arange(0, n, 251)
    times = np.array([clock.utc_of(int(s)) for s in seqs])
    assert np.all(np.diff(times) > 0)
