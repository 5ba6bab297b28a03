"""The AF detector's Poincaré spread (:mod:`dsp.af`).

Structured atrial ectopy (premature beats without a compensatory pause, bigeminy,
trigeminy, short runs, mixed) is irregular at every fixed lag but revisits a few
points of the Poincaré plot; AF does not. The new state is reset by a gap, and a
detector fed beat by beat equals one that is restarted on the same beats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp import af
from dsp.af import AfChange, AfDetector

FS = 250.0


def _seq(rr_s: np.ndarray, start: int = 0) -> list[int]:
    return (start + np.concatenate([[0], np.cumsum(np.round(rr_s * FS))])).astype(int).tolist()


def _mixed_ectopy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sinus at 0.8 s with atrial bigeminy, trigeminy and short runs, none followed by
    a compensatory pause, in random order (seconds)."""
    out: list[float] = []
    while len(out) < n:
        kind = rng.integers(4)
        if kind == 0:
            out += list(0.8 + 0.01 * rng.standard_normal(rng.integers(2, 6)))
        elif kind == 1:
            out += [0.55, 0.82] * int(rng.integers(2, 5))
        elif kind == 2:
            out += [0.8, 0.55, 0.82] * int(rng.integers(1, 4))
        else:
            out += [0.45] * int(rng.integers(3, 6)) + [0.85]
    rr = np.array(out[:n])
    return rr * (1 + 0.005 * rng.standard_normal(rr.size))


def _changes(d: AfDetector, seq: list[int]) -> list[AfChange]:
    return [c for s in seq if (c := d.push(s)) is not None]


@pytest.mark.parametrize("seed", range(4))
def test_mixed_atrial_ectopy_is_not_af_by_its_spread(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rr = _mixed_ectopy(np.random.default_rng(seed), 600)
    d = AfDetector(FS)
    assert _changes(d, _seq(rr)) == []
    assert d.state.spread < 0.5 * af.SPREAD  # a few tight clusters
    monkeypatch.setattr(af, "SPREAD", 0.0)  # without the spread condition: AF
    assert any(c.began for c in _changes(AfDetector(FS), _seq(rr)))


def test_af_keeps_a_wide_spread() -> None:
    rr = np.random.default_rng(5).uniform(0.4, 1.1, 600)
    d = AfDetector(FS)
    assert [c.began for c in _changes(d, _seq(rr))] == [True]
    assert d.state.spread > 2 * af.SPREAD


def test_af_ends_when_ectopy_follows_it() -> None:
    rng = np.random.default_rng(6)
    rr = np.concatenate([rng.uniform(0.4, 1.1, 300), _mixed_ectopy(rng, 400)])
    seq = _seq(rr)
    began, ended = _changes(AfDetector(FS), seq)
    assert began.began and not ended.began
    assert seq[280] <= ended.seq <= seq[340]


def test_gap_forgets_the_poincare_points() -> None:
    rng = np.random.default_rng(8)
    before = _seq(rng.uniform(0.4, 1.1, 200))
    after = _seq(_mixed_ectopy(rng, 300), start=before[-1] + 50_000)
    d = AfDetector(FS)
    _changes(d, before)
    d.start(after[0])
    fresh = AfDetector(FS)
    fresh.start(after[0])
    assert _changes(d, after[1:]) == _changes(fresh, after[1:])
    assert d.state == fresh.state


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=120))
def test_spread_compiled_equals_numpy(rr: list[int]) -> None:
    """The nearest-point distance through the compiled kernel equals numpy's to the bit."""
    from dsp.af import _PoincareSpread

    fast, slow = _PoincareSpread(), _PoincareSpread()
    slow._kernel = None
    for r in rr:
        fast.push(r)
        slow.push(r)
        a, b = fast.value, slow.value
        assert a == b or (math.isnan(a) and math.isnan(b))


def _sinus_beats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Beat times (s) of sinus rhythm at 0.8 s with a slow sinus arrhythmia."""
    rr = 0.8 + 0.04 * np.sin(np.arange(n) / 4) + 0.01 * rng.standard_normal(n)
    return np.concatenate([[0.0], np.cumsum(rr)])


def _missed(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Intervals (s) when the detector misses 15 % of the beats."""
    keep = rng.random(t.size) > 0.15
    keep[0] = True
    return np.diff(t[keep])


def _split(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Intervals (s) when a false detection falls inside 12 % of the intervals."""
    inside = rng.random(t.size - 1) < 0.12
    at = t[:-1][inside] + rng.uniform(0.15, 0.85, inside.sum()) * np.diff(t)[inside]
    return np.diff(np.sort(np.concatenate([t, at])))


@pytest.mark.parametrize("errors", [_missed, _split])
def test_detection_errors_in_sinus_rhythm_are_not_af(
    errors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missed beats (an interval twice the rhythm's) and false detections (one interval
    split in two) are left out like ectopic beats: a sinus rhythm seen through a
    detector that errs is not AF, where the detector without these rules called it AF."""
    streams = [
        _seq(errors(rng, _sinus_beats(rng, 800)))
        for rng in map(np.random.default_rng, range(4))
    ]
    assert all(_changes(AfDetector(FS), seq) == [] for seq in streams)
    monkeypatch.setattr(af, "MISSED", 0.0)
    monkeypatch.setattr(af, "SPLIT", 0.0)
    assert any(_changes(AfDetector(FS), seq) for seq in streams)


def test_beats_in_noise_are_no_evidence() -> None:
    """Irregular intervals between beats found in unusable signal never start AF; AF
    under way holds through them (the last verdict stands) and ends after them."""
    rng = np.random.default_rng(11)
    irregular = rng.uniform(0.4, 1.1, 400)
    d = AfDetector(FS)
    assert [c for s in _seq(irregular) if (c := d.push(s, noisy=True))] == []
    assert not d.active and d.state.spread != d.state.spread  # nothing judged

    rr = np.concatenate([np.full(60, 0.8), irregular, np.full(100, 0.8)])
    seq = _seq(rr)
    noisy = np.zeros(len(seq), bool)
    noisy[200:300] = True  # 100 beats of noise inside the AF
    d = AfDetector(FS)
    pairs = zip(seq, noisy.tolist(), strict=True)
    changes = [c for s, n in pairs if (c := d.push(s, noisy=n))]
    assert [c.began for c in changes] == [True, False]
    assert changes[1].seq > seq[300]  # ended after the noise, by the sinus beats


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 600),  # RR, samples (0.004-2.4 s)
            st.booleans(),  # ventricular
            st.one_of(st.none(), st.floats(-0.5, 1.5)),  # P-wave score
            st.integers(0, 19),  # 0: noisy; 1: a gap (start); else an ordinary beat
        ),
        min_size=1,
        max_size=400,
    ),
    st.integers(0, 3),
)
def test_compiled_detector_equals_python(beats: list, rhythm: int) -> None:
    """The compiled AfCore and the Python steps give the same changes and states, bit for
    bit, over any beats: ventricular, noisy, P-wave scores, gaps; regular, irregular or
    ectopic RR (``rhythm`` scales a random walk)."""
    fast, slow = AfDetector(FS), AfDetector(FS, compiled=False)
    if fast._core is None:
        pytest.skip("compiled kernel not built")
    rng = np.random.default_rng(len(beats) + rhythm)
    seq = 1000
    for rr, ventricular, p_wave, what in beats:
        seq += 150 + rr if rhythm == 0 else max(1, int(200 + rr * rhythm * rng.random()))
        got = []
        for d in (fast, slow):
            if what == 1:
                d.start(seq, ventricular, False)
                got.append(None)
            else:
                got.append(d.push(seq, ventricular, p_wave, noisy=what == 0))
        assert got[0] == got[1]
        assert fast.active == slow.active
        a, b = fast.state, slow.state
        for x, y in ((a.irregularity, b.irregularity), (a.rate_bpm, b.rate_bpm),
                     (a.spread, b.spread)):  # fmt: skip
            assert x == y or (math.isnan(x) and math.isnan(y))


def test_compiled_detector_equals_python_on_af_and_ectopy() -> None:
    """Long streams that do change state: AF entering and leaving, ectopy, noise."""
    rng = np.random.default_rng(11)
    rr = np.concatenate([
        0.8 + 0.01 * rng.standard_normal(200), rng.uniform(0.4, 1.1, 600),
        _mixed_ectopy(rng, 300), rng.uniform(0.35, 0.9, 400), np.full(100, 0.7),
    ])  # fmt: skip
    seq = _seq(rr)
    v = rng.random(len(seq)) < 0.05
    noisy = rng.random(len(seq)) < 0.03
    fast, slow = AfDetector(FS), AfDetector(FS, compiled=False)
    if fast._core is None:
        pytest.skip("compiled kernel not built")
    a = [fast.push(s, bool(x), 0.4, bool(n)) for s, x, n in zip(seq, v, noisy, strict=True)]
    b = [slow.push(s, bool(x), 0.4, bool(n)) for s, x, n in zip(seq, v, noisy, strict=True)]
    assert a == b and sum(c is not None for c in a) >= 2
