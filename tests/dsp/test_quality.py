"""Signal quality windows: clean, flat, clipped, noisy; chunked equals whole."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.quality import QualityTracker
from sim.synth import EcgSynth
from tests.support import blocks_of

FS = 250.0
RNG = np.random.default_rng(5)


def _windows(x: np.ndarray, sizes=(250,)):
    t = QualityTracker(FS, x.shape[1])
    return [w for b in blocks_of(x, FS, list(sizes)) for w in t.process(b)]


def _signal() -> np.ndarray:
    x = EcgSynth(FS, ("I", "II"), seed=3).generate(int(FS * 12)).astype(np.float64)
    x[int(2 * FS) : int(4 * FS), 0] = 0.001  # lead I off: flat
    x[int(5 * FS) : int(7 * FS), 1] = np.clip(x[int(5 * FS) : int(7 * FS), 1] * 8, -1.0, 1.0)
    x[int(8 * FS) : int(10 * FS), 0] += 0.6 * RNG.standard_normal(int(2 * FS))  # muscle noise
    return x


def test_flags() -> None:
    w = _windows(_signal())
    assert len(w) == 12
    assert w[0].index.min() > 0.7
    assert w[2].flat[0] and w[2].index[0] == 0 and w[2].usable  # lead II still fine
    assert w[5].saturated[1] and w[5].index[1] == 0
    assert w[8].index[0] < 0.3 and w[8].index[1] > 0.7


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=10))
def test_chunked_equals_whole(sizes: list[int]) -> None:
    x = _signal()
    whole = _windows(x, [len(x)])
    parts = _windows(x, sizes)
    assert [w.first_seq for w in parts] == [w.first_seq for w in whole]
    for a, b in zip(parts, whole, strict=True):
        np.testing.assert_array_equal(a.index, b.index)


def test_one_lead_compiled_path_equals_the_cascades_one_at_a_time() -> None:
    """A single lead's two filters run in one pass of the compiled kernel; the windows are
    those of the two cascades run one after the other, to the last bit."""
    x = _signal()[:, 1:]
    fast = QualityTracker(FS, 1)
    slow = QualityTracker(FS, 1)
    slow._kernel = None  # the path every multi-lead tracker takes
    for b in blocks_of(x, FS, [97, 250, 400]):
        for a, c in zip(fast.process(b), slow.process(b), strict=True):
            for field in ("index", "flat", "saturated", "hf_ratio"):
                np.testing.assert_array_equal(getattr(a, field), getattr(c, field))


def test_one_lead_compiled_equals_numpy_bit_for_bit() -> None:
    """One lead goes through the kernel's window_stats (filters, extremes, energies in one
    pass); its windows equal the numpy path's exactly: clean, flat, clipped, noisy, NaN."""
    x = _signal()[:, :1].copy()
    x[int(11 * FS) + 7, 0] = np.nan
    clipped = np.clip(8 * x[: int(2 * FS)], -0.2, 0.2)
    noisy = 0.3 * RNG.standard_normal((int(3 * FS), 1))
    x = np.concatenate([x, clipped, noisy, np.full((300, 1), 2.0)])
    fast = QualityTracker(FS, 1)
    if fast._kernel is None:
        import pytest

        pytest.skip("compiled kernel not built")
    slow = QualityTracker(FS, 1)
    slow._kernel = None
    for sizes in ([250], [37, 400, 1]):
        a = [w for b in blocks_of(x, FS, sizes) for w in fast.process(b)]
        b = [w for b in blocks_of(x, FS, sizes) for w in slow.process(b)]
        assert len(a) == len(b) == int(x.shape[0] // FS)
        for wa, wb in zip(a, b, strict=True):
            assert (wa.first_seq, wa.end_seq) == (wb.first_seq, wb.end_seq)
            for f in ("index", "flat", "saturated", "hf_ratio"):
                assert np.array_equal(getattr(wa, f), getattr(wb, f), equal_nan=True), f
        assert any(w.flat[0] for w in a) and any(w.saturated[0] for w in a)
