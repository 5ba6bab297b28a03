"""The compiled beat measurement, P-wave score and forest give the numpy code's results,
bit for bit (features, scores, labels, P-wave scores), for any block cutting.

Skipped where the optional extension was not built (no C compiler at install).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.atrial import PWaveScorer
from dsp.beat_class import BeatClassifier, ClassifiedBeats
from dsp.beat_measure import Layout, measure_numpy
from dsp.beat_model import forest_for
from dsp.qrs import QrsDetector
from tests.support import blocks_of

kernel = pytest.importorskip("dsp._qrs_kernel", reason="compiled QRS kernel not built")


def _run(x: np.ndarray, fs: float, sizes: list[int], compiled: bool, second: bool):
    det = QrsDetector(fs)
    cls = BeatClassifier(fs, x.shape[1], second_lead=1 if second else None, compiled=compiled)
    parts = [cls.process(b, det.process(b)) for b in blocks_of(x, fs, sizes)]
    empty = next(blocks_of(x[:1], fs, [1])).slice_seq(0, 0)
    parts += [cls.process(empty, det.finish()), cls.finish()]
    return ClassifiedBeats.concat(parts, fs)


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 2500), min_size=1, max_size=6),
    second=st.booleans(),
    bad=st.sampled_from([None, np.nan, np.inf]),
)
def test_compiled_equals_numpy(mitdb119: dict, sizes: list[int], second: bool, bad) -> None:
    fs = mitdb119["fs"]
    mv = mitdb119["mv"][: int(20 * fs)]
    x = np.column_stack([mv, np.concatenate([np.zeros(3), -0.6 * mv[:-3]])])
    if bad is not None:
        x[int(9 * fs), 1 if second else 0] = bad
    a = _run(x, fs, [len(x)], False, second)
    b = _run(x, fs, sizes, True, second)
    assert len(a) > 5 and a.labels == b.labels and a.seq.tolist() == b.seq.tolist()
    for name in ("features", "scores", "p_wave"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("leads", [1, 2])
def test_beat_kernel_state_equals_numpy(leads: int) -> None:
    """Beat by beat, the kernel's features (hfs_z, the last, included) and its whole state
    (every template's running means, hfs the last) are the numpy path's, bit for bit."""
    fs = 250.0
    lay = Layout.at(fs, leads)
    rng = np.random.default_rng(leads)
    period, t = int(0.8 * fs), np.arange(int(0.8 * fs)) / fs
    beats = []
    for i in range(60):  # normal beats, wide ectopic ones, noise, a slowly drifting width
        wide = i % 7 == 3
        w = (0.03 if wide else 0.012) * (1 + 0.1 * math.sin(i / 5))
        x = (
            (1.5 if wide else 1.0) * np.exp(-(((t - 0.4) / w) ** 2))
            - 0.3 * np.exp(-(((t - 0.43) / 0.01) ** 2))
            + 0.2 * np.exp(-(((t - 0.7) / 0.04) ** 2))
        )
        beats.append(x + 0.01 * rng.standard_normal(period))
    one = np.concatenate([np.zeros(period), *beats, np.zeros(period)])
    ring = np.ascontiguousarray(np.vstack([one, -0.6 * np.roll(one, 3)][:leads]))
    if leads > 1:
        ring[1, period * 20 + 5] = np.nan  # one beat's second lead not measurable
    a, b = lay.new_state(), lay.new_state()
    params, scratch = lay.kernel_params, np.zeros(lay.scratch_size)
    hfs_z = []
    for i in range(60):
        r, prem = period * (i + 1) + int(0.4 * fs), 0.7 if i % 7 == 3 else 1.0
        oa, ob = np.zeros(lay.n_features), np.zeros(lay.n_features)
        ga = measure_numpy(lay, a, ring, r, prem, 0.0, oa)
        gb = kernel.beat(params, b, ring, ring.shape[1], r, prem, 0.0, ob, scratch)
        assert ga == gb
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(a, b)
        hfs_z.append(oa[-1])
    assert a[0] >= 2 and np.isfinite(lay.views(a)[-1][: int(a[0]), -1]).all()
    assert np.isfinite(hfs_z[1:]).all() and len(set(hfs_z[1:])) > 10


def test_pwave_kernel_equals_numpy() -> None:
    fs = 360.0
    rng = np.random.default_rng(3)
    p, q = PWaveScorer(fs), PWaveScorer(fs, kernel)
    for i in range(40):
        w = rng.standard_normal(p.length) + 0.1 * i
        a, b = p.score(w, learn=i % 3 != 0), q.score(w, learn=i % 3 != 0)
        assert (math.isnan(a) and math.isnan(b)) or a == b
    np.testing.assert_array_equal(p.state, q.state)
    assert math.isnan(q.score(np.zeros(p.length)))  # a flat window: no score


@pytest.mark.parametrize("leads", [1, 2])
def test_forest_kernel_equals_numpy(leads: int) -> None:
    f = forest_for(leads)
    rng = np.random.default_rng(leads)
    rows = rng.standard_normal((200, len(f.neutral))) + f.neutral
    rows[rng.random(rows.shape) < 0.1] = np.nan
    expected = f.scores(rows)
    args = f.kernel_args()
    got = np.array([kernel.forest(np.ascontiguousarray(r), *args) for r in rows])
    np.testing.assert_array_equal(got, expected)
