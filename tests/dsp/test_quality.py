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
