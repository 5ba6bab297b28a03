"""benchmarks.resample: a record read as a device at another rate would give it."""

import numpy as np

from benchmarks.resample import resampled, samples_at


def test_a_beat_stays_where_it_was_in_time() -> None:
    fs, fs_new = 360.0, 250.0
    t = np.arange(int(10 * fs)) / fs
    x = np.zeros((t.size, 2))
    peaks = np.array([720, 1500, 2222, 3000])
    x[peaks, 0] = 1.0  # unit spikes, smoothed so that the low-pass keeps them
    x[:, 0] = np.convolve(x[:, 0], np.hanning(25), mode="same")
    y = resampled(x, fs, fs_new)
    assert y.shape == (round(t.size * fs_new / fs), 2)
    moved = samples_at(peaks, fs, fs_new)
    for p in moved:
        lo, hi = p - 5, p + 6
        assert abs(int(np.argmax(y[lo:hi, 0])) + lo - p) <= 1


def test_the_same_rate_is_the_record_itself() -> None:
    x = np.arange(12.0).reshape(6, 2)
    assert resampled(x, 128.0, 128.0) is x
    assert samples_at(np.array([0, 5, 7]), 128.0, 128.0).tolist() == [0, 5, 7]
