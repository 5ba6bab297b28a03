"""Streaming filters: chunked equals whole, the band does what it says."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import concat_blocks
from dsp.filters import EcgFilter, band_edges
from sim.synth import EcgSynth
from tests.support import blocks_of

FS = 500.0
LEADS = ("I", "II", "III")
SIGNAL = EcgSynth(FS, LEADS, hr_bpm=80, seed=3).generate(4000)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 900), min_size=1, max_size=12))
def test_chunked_equals_whole(sizes: list[int]) -> None:
    whole = EcgFilter(FS, 3, "monitoring", 50).process(next(blocks_of(SIGNAL, FS, [len(SIGNAL)])))
    f = EcgFilter(FS, 3, "monitoring", 50)
    chunked = concat_blocks([f.process(b) for b in blocks_of(SIGNAL, FS, sizes)])
    np.testing.assert_array_equal(chunked.samples, whole.samples)
    assert chunked.seq == whole.seq and chunked.leads == whole.leads


def _gain(fs: float, band: str, mains: int, f_hz: float) -> float:
    t = np.arange(int(fs * 20)) / fs
    x = np.sin(2 * np.pi * f_hz * t)[:, None]
    y = EcgFilter(fs, 1, band, mains).process(next(blocks_of(x, fs, [len(x)]))).samples[:, 0]
    tail = slice(len(y) // 2, None)  # steady state
    return float(np.std(y[tail]) / np.std(x[tail]))


def test_monitoring_band_passes_qrs_and_stops_wander_and_mains() -> None:
    assert _gain(FS, "monitoring", 50, 10.0) > 0.95
    assert _gain(FS, "monitoring", 50, 0.1) < 0.1  # baseline wander
    assert _gain(FS, "monitoring", 50, 50.0) < 0.05  # mains
    assert _gain(FS, "monitoring", 60, 60.0) < 0.05


def test_diagnostic_band_keeps_st_frequencies() -> None:
    assert _gain(FS, "diagnostic", 50, 0.5) > 0.95
    assert band_edges("diagnostic", 130.0) == (0.05, 0.45 * 130.0)


def test_gap_restarts_the_filter() -> None:
    f = EcgFilter(FS, 3)
    blocks = list(blocks_of(SIGNAL, FS, [500]))
    f.process(blocks[0])
    f.process(blocks[2])  # blocks[1] never arrived
    assert f.restarts == 1


def test_a_nan_does_not_blank_the_rest_of_the_stream() -> None:
    """A NaN sample makes its block NaN from there on, and the next block is clean again
    (before, the filter's state carried the NaN for ever)."""
    x = SIGNAL.copy()
    x[700, 1] = np.nan
    f = EcgFilter(FS, 3)
    out = [f.process(b).samples for b in blocks_of(x, FS, [500] * 8)]
    assert np.isnan(out[1][200:, 1]).all() and np.isfinite(out[1][:200]).all()
    assert all(np.isfinite(o).all() for o in out[2:])
