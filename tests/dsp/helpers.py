"""Helpers for DSP tests: cut a signal into blocks of given sizes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

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
