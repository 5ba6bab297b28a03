"""Helpers for DSP tests: cut a signal into blocks of given sizes; feature arrays for the
candidate-peak search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from hypothesis import strategies as st

from dsp.block import SampleBlock


def blocks_of(x: np.ndarray, fs: float, sizes: Sequence[int], leads=None) -> Iterator[SampleBlock]:
    """Cut ``x`` (n, leads) into consecutive blocks of the given sizes (cycled)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    leads = tuple(leads or [f"L{i}" for i in range(x.shape[1])])
    pos, i = 0, 0
    while pos < len(x):
        n = max(int(sizes[i % len(sizes)]), 1)
        yield SampleBlock(x[pos : pos + n], fs, 1_700_000_000.0 + pos / fs, pos, leads, "test")
        pos += n
        i += 1


@st.composite
def peak_search_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, int] | None:
    """(e, first, a, b, r) for a candidate-peak search over a feature ``e`` of few levels
    (plateaus and ties everywhere), with ``first < a <= b < len(e)`` and ``a >= r``; None
    when the drawn cut leaves nothing to search."""
    values = draw(st.lists(st.integers(0, 4), min_size=8, max_size=300))
    r = draw(st.integers(1, 40))
    cut = draw(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)))
    e = np.asarray(values, dtype=np.float64)
    first, a, b = sorted(c % (len(e) - 1) for c in cut)
    a, b = max(a, first + 1, r), min(b, len(e) - 1)
    return (e, first, a, b, r) if b > a else None
