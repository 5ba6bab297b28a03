"""Filter design without SciPy at run time: the same filters as scipy.signal designs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from dsp.sos import butter_sos, notch_sos, sosfiltfilt, steady_state

CASES = [
    (2, 0.5, "highpass"),
    (2, 0.05, "highpass"),
    (4, 40.0, "lowpass"),
    (2, 40.0, "lowpass"),
    (2, (5.0, 18.0), "bandpass"),
    (2, (5.0, 25.0), "bandpass"),
]


@pytest.mark.parametrize("fs", [130.0, 250.0, 360.0, 500.0, 1000.0])
@pytest.mark.parametrize(("order", "cutoff", "btype"), CASES)
def test_butterworth_responses_equal_scipys(fs, order, cutoff, btype) -> None:
    ours = butter_sos(order, cutoff, btype, fs)
    ref = signal.butter(order, cutoff, btype, fs=fs, output="sos")
    _, h_ours = signal.sosfreqz(ours, worN=4096, fs=fs)
    _, h_ref = signal.sosfreqz(ref, worN=4096, fs=fs)
    np.testing.assert_allclose(h_ours, h_ref, atol=1e-9)


@pytest.mark.parametrize("fs", [130.0, 250.0, 500.0])
@pytest.mark.parametrize("f0", [50.0, 60.0])
def test_notch_equals_iirnotch(fs, f0) -> None:
    b, a = signal.iirnotch(f0, 30.0, fs=fs)
    np.testing.assert_allclose(notch_sos(f0, 30.0, fs), signal.tf2sos(b, a), atol=1e-14)


def test_steady_state_and_zero_phase_filtering_equal_scipys() -> None:
    sos = signal.butter(4, [0.5, 40.0], "bandpass", fs=500.0, output="sos")
    np.testing.assert_allclose(steady_state(sos), signal.sosfilt_zi(sos), atol=1e-12)
    x = np.random.default_rng(0).standard_normal((2000, 3)).cumsum(axis=0)
    np.testing.assert_allclose(sosfiltfilt(sos, x), signal.sosfiltfilt(sos, x, axis=0), atol=1e-9)
