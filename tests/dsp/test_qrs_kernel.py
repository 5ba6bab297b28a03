"""The compiled QRS inner loops give the numpy code's beats, bit for bit.

Skipped where the optional extension was not built (no C compiler at install).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp.qrs import Beats, QrsDetector
from dsp.qrs_front import _local_peaks
from tests.support import blocks_of, peak_search_cases

kernel = pytest.importorskip("dsp._qrs_kernel", reason="compiled QRS kernel not built")


def _stream(x: np.ndarray, fs: float, sizes: list[int], compiled: bool) -> Beats:
    det = QrsDetector(fs, compiled=compiled)
    parts = [det.process(b) for b in blocks_of(x, fs, sizes)]
    parts.append(det.finish())
    return Beats.concat(parts, fs)


def _assert_same(a: Beats, b: Beats) -> None:
    for name in ("seq", "amplitude_mv", "rr_s", "width_s", "ventricular"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_the_kernels_one_cascade_filters_like_scipy() -> None:
    """dsp.sos filters with the kernel's loop: scipy's recurrence, to rounding."""
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal((2, 1500)), axis=1)
    sos = signal.butter(4, [3.0, 30.0], "bandpass", fs=250.0, output="sos")
    zi = rng.standard_normal((2, sos.shape[0], 2))
    y, z = x.copy(), zi.copy()
    kernel.sosfilt(sos, z, y)
    expected, expected_z = signal.sosfilt(sos, x, axis=1, zi=zi.transpose(1, 0, 2))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(z, expected_z.transpose(1, 0, 2), rtol=1e-12, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 2500), min_size=1, max_size=8),
    bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
)
def test_compiled_equals_numpy(mitdb119: dict, sizes: list[int], bad: float | None) -> None:
    """Record 119 excerpt (PVCs, bigeminy), any block sizes, with or without a non-finite
    sample: the compiled path and the numpy path report the same beats, field by field."""
    fs = mitdb119["fs"]
    x = mitdb119["mv"][:9000].copy()
    if bad is not None:
        x[6000] = bad
    numpy_beats = _stream(x, fs, [len(x)], compiled=False)
    assert len(numpy_beats) > 10
    _assert_same(_stream(x, fs, sizes, compiled=True), numpy_beats)


def test_compiled_equals_numpy_across_a_gap(mitdb119: dict) -> None:
    fs = mitdb119["fs"]
    x = mitdb119["mv"]
    half = len(x) // 2

    def run(compiled: bool) -> Beats:
        det = QrsDetector(fs, compiled=compiled)
        parts = [det.process_array(x[:half], 0), det.process_array(x[half:], half + 777)]
        return Beats.concat([*parts, det.finish()], fs)

    _assert_same(run(True), run(False))


@settings(max_examples=200, deadline=None)
@given(case=peak_search_cases())
def test_peaks_equal_plain_rule(case: tuple | None) -> None:
    """The kernel's candidate search is the sample-by-sample rule, plateaus and ties included."""
    if case is None:
        return
    e, first, a, b, r = case
    buf = np.zeros((6, len(e)))
    buf[3] = e  # the feature row
    expected = _local_peaks(e, a, b, r, first, len(e))
    assert kernel.peaks(buf, len(e), a, b, r, first, len(e)) == expected


def test_bad_arguments_raise_instead_of_reading_out_of_bounds() -> None:
    buf = np.zeros((6, 100))
    with pytest.raises(ValueError):
        kernel.feature(np.zeros(10), 100, 10, 10, 5, False)  # buffer smaller than 6 x cap
    with pytest.raises(IndexError):
        kernel.feature(buf, 100, 3, 200, 5, False)  # past the end
    with pytest.raises(IndexError):
        kernel.peaks(buf, 100, 5, 99, 10, 0, 100)  # a < r: windows before the buffer
    with pytest.raises(IndexError):
        kernel.candidate(buf, 100, 50, 50, 0.3)  # empty window
    sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    with pytest.raises(ValueError):
        kernel.sosfilt2(sos, np.zeros(3), sos, np.zeros(2), *np.zeros((3, 4)))  # state size
    with pytest.raises(ValueError):
        kernel.sosfilt2(sos, np.zeros(2), sos, np.zeros(2), *np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(TypeError):
        kernel.feature(np.zeros((6, 100)).T.copy().T, 100, 10, 10, 5, False)  # not contiguous


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-6, 1.0, 50.0, 1e30]),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=6),
)
def test_compiled_equals_numpy_on_garbage(seed: int, scale: float, sizes: list[int]) -> None:
    """Noise, spikes, steps and huge values (a corrupt stream): no crash, same beats."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(3000) * scale
    x[rng.integers(0, 3000, 20)] *= 1000.0
    x[1500:] += scale * 10
    fs = 250.0
    _assert_same(_stream(x, fs, sizes, compiled=True), _stream(x, fs, [len(x)], compiled=False))


@pytest.mark.parametrize("sections", [(3, 1), (1, 3), (2, 2)])
def test_two_cascades_of_any_lengths_filter_like_scipy(sections: tuple[int, int]) -> None:
    """The interleaved pair runs each cascade as scipy does, whatever their lengths."""
    rng = np.random.default_rng(sum(sections))
    x = np.cumsum(rng.standard_normal(1500))
    cascades = [
        signal.butter(2 * k, [3.0, 30.0], "bandpass", fs=250.0, output="sos") for k in sections
    ]
    cascades = [sos[: sections[i]] for i, sos in enumerate(cascades)]
    states = [rng.standard_normal((sos.shape[0], 2)) for sos in cascades]
    ya, yb = np.empty_like(x), np.empty_like(x)
    za, zb = (z.copy() for z in states)
    kernel.sosfilt2(cascades[0], za, cascades[1], zb, x, ya, yb)
    for sos, zi, y, z_end in zip(cascades, states, (ya, yb), (za, zb), strict=True):
        expected, expected_z = signal.sosfilt(sos, x, zi=zi)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(z_end, expected_z, rtol=1e-12, atol=1e-9)
