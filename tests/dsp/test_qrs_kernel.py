"""The compiled QRS inner loops give the numpy code's beats, bit for bit.

Skipped where the optional extension was not built (no C compiler at install).
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp.qrs import Beats, QrsDetector
from dsp.qrs_decide import _SEARCHBACK_RR, Candidate, QrsDecider, compiled_decider, learnt_levels
from dsp.qrs_front import _local_peaks
from tests.support import blocks_of, peak_search_cases

kernel = pytest.importorskip("dsp._qrs_kernel", reason="compiled QRS kernel not built")

MITDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "mitdb"
MITDB_RECORDS = sorted(p.stem for p in MITDB.glob("*.dat")) or ["100"]


def _stream(x: np.ndarray, fs: float, sizes: list[int], compiled: bool) -> Beats:
    det = QrsDetector(fs, compiled=compiled)
    parts = [det.process(b) for b in blocks_of(x, fs, sizes)]
    parts.append(det.finish())
    return Beats.concat(parts, fs)


def _assert_same(a: Beats, b: Beats) -> None:
    """Every field the same array, bit for bit (dtype, shape, bytes: NaN and -0.0 too)."""
    for name in ("seq", "amplitude_mv", "rr_s", "width_s", "ventricular"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


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


@pytest.mark.parametrize("dtype", ["float64", "float32", ">f8", "float16", "int16"])
def test_compiled_reads_samples_of_any_type(mitdb119: dict, dtype: str) -> None:
    """Samples as they come (strided columns; types the kernel reads itself or not): the
    compiled detector reports the numpy detector's beats."""
    fs = mitdb119["fs"]
    x = np.repeat(mitdb119["mv"][:8000, None] * 100, 2, axis=1).astype(dtype)[:, 1]

    def run(compiled: bool) -> Beats:
        det = QrsDetector(fs, compiled=compiled)
        parts = [det.process_array(x[i : i + 300], i) for i in range(0, len(x), 300)]
        return Beats.concat([*parts, det.finish()], fs)

    reference = run(False)
    assert len(reference) > 10
    _assert_same(run(True), reference)


def test_compiled_equals_numpy_across_a_gap(mitdb119: dict) -> None:
    fs = mitdb119["fs"]
    x = mitdb119["mv"]
    half = len(x) // 2

    def run(compiled: bool) -> Beats:
        det = QrsDetector(fs, compiled=compiled)
        parts = [det.process_array(x[:half], 0), det.process_array(x[half:], half + 777)]
        return Beats.concat([*parts, det.finish()], fs)

    _assert_same(run(True), run(False))


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 2500), min_size=1, max_size=8),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
)
def test_compiled_front_history_equals_numpy_front(
    mitdb119: dict, sizes: list[int], scale: float
) -> None:
    """After every block, the compiled front's history (filters, slope, running sum,
    feature, amplitude and its slope) is the numpy front's, bit for bit: the filters'
    recurrences in the same order, whatever the block sizes (and at extreme scales)."""
    fs = mitdb119["fs"]
    x = mitdb119["mv"][:6000] * scale
    fronts = [QrsDetector(fs, compiled=c) for c in (True, False)]
    for b in blocks_of(x, fs, sizes):
        for det in fronts:
            det.process(b)
        (c, n) = (det.front for det in fronts)
        assert (c.base, c.pos) == (n.base, n.pos)
        assert c.buf[:, : c.pos].tobytes() == n.buf[:, : n.pos].tobytes()


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
    # samples: 1-D float32 or float64 of this machine's byte order, any stride
    for x in (np.zeros((2, 3)), np.zeros(3, np.int64), np.zeros(3, ">f8"), np.zeros(3, "f2")):
        with pytest.raises(TypeError):
            kernel.all_finite(x)
    assert kernel.all_finite(np.zeros((5, 2), np.float32)[:, 1])
    assert not kernel.all_finite(np.array([0.0, np.inf])[::-1])
    z = np.zeros((2, 2))
    front = (buf, 100, 0, 30, 10, 5, False)
    tail = (sos2 := np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]] * 2), z, sos2, z.copy(), 31, 35, 5, 0)
    kernel.front(*front, np.zeros(10), *tail)  # the arguments below are all that is wrong
    with pytest.raises(ValueError):
        kernel.front(*front, np.zeros(9), *tail)  # x shorter than n
    with pytest.raises(TypeError):
        kernel.front(*front, np.zeros(10, np.int32), *tail)
    with pytest.raises(IndexError):
        kernel.front(buf, 100, 0, 30, 80, 5, False, np.zeros(80), *tail)  # past the end
    with pytest.raises(IndexError):
        kernel.front(*front, np.zeros(10), *tail[:4], 31, 40, 5, 0)  # b >= h + n
    with pytest.raises(TypeError):
        kernel.front(*front, np.zeros(10), *tail, object(), 0, 10, 0.3, 40)  # not a Decider


def test_bad_decider_arguments_raise_instead_of_reading_out_of_bounds() -> None:
    """dsp._qrs_kernel.Decider checks what it is given: constants, history slots, windows,
    output sizes, sample order, index range."""
    dec = compiled_decider(kernel, 250.0)
    buf = np.zeros((6, 100))
    scan = (buf, 100, 0, 0, 20, 0.3)
    dec.scan(*scan, [50, 60], 70, False)
    for slots, error in (
        ([100], IndexError),  # past the history
        ([-1], IndexError),
        ([2**70], OverflowError),
        (["50"], TypeError),
    ):
        with pytest.raises(error):
            dec.scan(*scan, slots, 70, False)
    with pytest.raises(TypeError):
        dec.scan(*scan, (80,), 90, False)  # a list, not any sequence
    with pytest.raises(IndexError):
        dec.scan(buf, 100, 0, -5, 20, 0.3, [10], 90, False)  # window before the buffer
    with pytest.raises(IndexError):
        dec.scan(buf, 100, 0, 95, 20, 0.3, [90], 99, False)  # window ends before it starts
    with pytest.raises(ValueError):
        dec.scan(np.zeros((6, 10)), 100, 0, 0, 20, 0.3, [50], 99, False)  # buffer too small
    with pytest.raises(ValueError):
        dec.candidate(60, 1.0, 1.0, 60, 1.0, 5.0)  # not after the last one given
    with pytest.raises(OverflowError):
        dec.candidate(2**62, 1.0, 1.0, 2**62, 1.0, 5.0)
    with pytest.raises(OverflowError):
        dec.scanned_to(-(2**62), False)
    dec.new_segment(0)
    for peak in (1.0, 1.0, 0.1):
        dec.candidate(dec.pending * 100 + 700 + int(peak * 10), peak, 1.0, 600, 1.0, 5.0)
    n = dec.pending
    assert n > 0
    for sizes in ((n + 1, 3 * n, n), (n, 3 * n + 1, n), (n, 3 * n, n - 1)):
        with pytest.raises(ValueError):
            dec.take(np.empty(sizes[0], np.int64), np.empty(sizes[1]), np.empty(sizes[2], bool))
    assert dec.pending == n
    ok = {"fs": 250.0, "refractory": 50, "t_wave": 90, "learn": 500, "rr_cap": 375,
          "window": 623, "threshold": 0.3125, "searchback_rr": 1.66, "wide": 1.6,
          "rr_history": 8, "level_history": 8, "width_history": 32,
          "learnt_levels": learnt_levels}  # fmt: skip
    kernel.Decider(**ok)
    for bad in ({"width_history": 33}, {"rr_history": 0}, {"window": -1}, {"learn": 2**41},
                {"fs": 0.0}, {"fs": math.nan}, {"searchback_rr": 1e30},
                {"learnt_levels": None}):  # fmt: skip
        with pytest.raises(ValueError):
            kernel.Decider(**{**ok, **bad})
    with pytest.raises(RuntimeError):
        kernel.Decider.__new__(kernel.Decider).scanned_to(0, False)  # never initialised
    odd = kernel.Decider(**{**ok, "learnt_levels": lambda peaks: [1.0, 0.0]})
    odd.candidate(10, 1.0, 1.0, 10, 1.0, 5.0)
    with pytest.raises(TypeError):
        odd.scanned_to(1000, False)  # the levels must come back as a tuple


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


# --- the compiled decider (dsp._qrs_kernel.Decider) against QrsDecider ---------------------
def _bits(value: float) -> bytes:
    """A float's 64 bits: equal bits, not just equal values (NaN, -0.0)."""
    return struct.pack("<d", value)


def _row(seq: int, amplitude: float, rr_s: float, width_s: float, wide: bool) -> tuple:
    return seq, _bits(amplitude), _bits(rr_s), _bits(width_s), bool(wide)


def _reference_rows(cands: list[Candidate], fs: float) -> list[tuple]:
    """QrsDetector's beats from the reference decider's candidates, row by row."""
    return [_row(c.r_idx, c.amplitude, c.rr / fs, c.width / fs, c.ventricular) for c in cands]


def _taken_rows(dec: object) -> list[tuple]:
    """The compiled decider's pending beats, taken, row by row."""
    n = dec.pending
    seq, floats, wide = np.empty(n, np.int64), np.empty((3, n)), np.empty(n, bool)
    assert dec.take(seq, floats, wide) == n and dec.pending == 0
    return [_row(*row) for row in zip(seq.tolist(), *floats.tolist(), wide.tolist(), strict=True)]


def _events(rng: np.random.Generator, fs: float, n: int, p: dict[str, float]) -> list[tuple]:
    """``n`` calls for both deciders, drawn by ``rng``: candidates in sample order, shaped
    like an ECG's (beats at a varying rate, T waves, noise peaks, amplitude steps, pauses)
    or at and around the rules' limits (refractory, T wave, learning, RR cap, search-back
    window: ``p["near"]``), with non-finite values now and then (``p["odd"]``); scans
    (``final`` or not: ``p["scan"]``); gaps (the segment ends and a new one starts, possibly
    earlier: ``p["gap"]``). Events: ("candidate", step, peak, slope, r back, amplitude,
    width), ("scan", ahead, final), ("gap", jump, end first)."""
    r = QrsDecider(fs)
    waits = [math.ceil(_SEARCHBACK_RR * rr) for rr in (0.8 * fs, fs, r.rr_cap)]  # deadlines
    limits = [r.refractory, r.t_wave, int(0.8 * fs), int(fs), r.rr_cap, r.window, r.learn, *waits]
    near = sorted({max(v + d, 1) for v in limits for d in (-1, 0, 1)})
    odd = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, 1.5e308]

    def value(x: float) -> float:
        return float(rng.choice(odd)) if rng.random() < p["odd"] else x

    level, events = 1.0, []
    while len(events) < n:
        u = rng.random()
        if u < p["gap"]:
            events.append(("gap", int(rng.integers(-20 * fs, 20 * fs)), rng.random() < 0.9))
            continue
        if u < p["gap"] + p["scan"]:
            ahead = int(rng.choice(near)) if rng.random() < p["near"] else int(rng.integers(fs))
            events.append(("scan", ahead, rng.random() < 0.2))
            continue
        if rng.random() < 0.03:  # the amplitude steps: search-backs must follow
            level = min(max(level * float(rng.choice([0.2, 0.4, 2.5, 5.0])), 0.01), 100.0)
        kind = rng.random()  # a QRS, a T wave or a noise peak
        share, scale = (1.4, 1.0) if kind < 0.5 else (1.2, 0.6) if kind < 0.8 else (0.5, 0.3)
        if rng.random() < p["near"]:
            step = int(rng.choice(near))
        elif kind < 0.5:
            step = max(int(rng.normal(0.8, 0.3) * fs), 1) if rng.random() > 0.05 else 3 * r.window
        else:
            step = int(rng.integers(1, fs // 2))
        ties = [0.5, 1.0, 0.3125, 0.15625]  # a level, THR1 and THR1 / 2 of levels 1 and 0
        peak = float(rng.choice(ties)) if rng.random() < 0.1 else rng.uniform(0.05, share)
        slope = float(rng.choice([0.5, 1.0])) if rng.random() < 0.3 else rng.uniform(0, 2)
        events.append(("candidate", step, value(level * peak), value(slope * scale),
                       int(rng.integers(0, fs // 4)), value(rng.normal()),
                       int(rng.integers(0, fs // 5))))  # fmt: skip
    return events


@st.composite
def decider_streams(draw: st.DrawFn) -> tuple[float, list[tuple]]:
    """(fs, events) of :func:`_events`, with hypothesis choosing the mixture."""
    fs = draw(st.sampled_from([100.0, 128.0, 250.0, 360.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = {
        "near": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        "odd": draw(st.sampled_from([0.0, 0.0, 0.01, 0.1])),
        "scan": draw(st.sampled_from([0.0, 0.2, 0.5])),
        "gap": draw(st.sampled_from([0.0, 0.005, 0.05])),
    }
    return fs, _events(rng, fs, draw(st.integers(1, 800)), p)


def _run_both(fs: float, events: list[tuple]) -> int:
    """Feed both deciders the same calls; after each, the same beats (bit for bit), the same
    exception if any, the same levels; the compiled one holds at most window + 1 noise
    candidates. Returns the number of beats."""
    return _run_both_held(fs, events)[0]


def _run_both_held(fs: float, events: list[tuple]) -> tuple[int, int, int]:
    """:func:`_run_both`, and the most noise candidates each decider held at once
    (reference, compiled)."""
    ref = QrsDecider(fs)
    dec = compiled_decider(kernel, fs)
    pos, beats, ref_held, held = 0, 0, 0, 0  # pos: the last sample index given

    def both(reference: Callable[[list[Candidate]], None], compiled: Callable[[], object]) -> bool:
        """One call to each; False when the reference raised (and the compiled one did too)."""
        nonlocal beats, ref_held, held
        out: list[Candidate] = []
        try:
            reference(out)
        except Exception as e:  # the reference's own failure (a NaN level): the same there
            with pytest.raises(type(e)):
                compiled()
            return False
        compiled()
        rows = _taken_rows(dec)
        assert rows == _reference_rows(out, fs)
        beats += len(rows)
        assert dec.trained == ref.trained
        assert _bits(dec.thr1) == _bits(ref.thr1)
        assert dec.held <= ref.window + 1
        ref_held = max(ref_held, len(ref._noise_since_beat))
        held = max(held, dec.held)
        return True

    for ev in events:
        if ev[0] == "candidate":
            _, step, peak, slope, back, amplitude, width = ev
            pos += step
            c = Candidate(pos, peak, slope, pos - back, amplitude, width=float(width))
            args = (pos, peak, slope, pos - back, amplitude, float(width))
            ok = both(lambda out, c=c: ref.candidate(c, out), lambda a=args: dec.candidate(*a))
        elif ev[0] == "scan":
            _, ahead, final = ev
            horizon = pos + 1 + ahead
            ok = both(lambda out, h=horizon, f=final: ref.scanned_to(h, f, out),
                      lambda h=horizon, f=final: dec.scanned_to(h, f))  # fmt: skip
            pos = horizon - 1
        else:
            _, jump, end_first = ev
            end = pos + 1
            if end_first and not both(  # as QrsDetector does at a gap
                lambda out, e=end: ref.end_segment(e, out), lambda e=end: dec.end_segment(e)
            ):
                break
            pos = end + jump
            ref.new_segment(pos)
            dec.new_segment(pos)
            ok = True
        if not ok:
            break
    return beats, ref_held, held


@settings(max_examples=200, deadline=None)
@given(stream=decider_streams())
def test_compiled_decider_equals_qrs_decider(stream: tuple[float, list[tuple]]) -> None:
    """Any candidate stream: learning, thresholds, refractory, T waves, search-backs that
    find a beat or halve the level, gaps and new segments, width labels: the same beats."""
    _run_both(*stream)


def test_compiled_decider_equals_qrs_decider_on_ecg_like_streams() -> None:
    """Seeded ECG-like streams (beats, T waves, noise, pauses, amplitude steps, gaps): many
    beats, every rule used many times, the same beats."""
    p = {"near": 0.05, "odd": 0.0, "scan": 0.3, "gap": 0.003}
    beats = 0
    for seed in range(30):
        fs = [128.0, 250.0, 360.0][seed % 3]
        beats += _run_both(fs, _events(np.random.default_rng(seed), fs, 2000, p))
    assert beats > 15_000


def test_compiled_decider_at_the_rules_edges() -> None:
    """Exact ties the random streams seldom reach (fs 250: learning 500 samples)."""
    beat, silent = ("candidate", 100, 1.0, 1.0, 0, 1.0, 10), ("candidate", 2, 0.0, 1.0, 0, 0.0, 4)
    # levels 1 and 0, so THR1 = 0.3125: a noise peak of exactly THR1 / 2 is not taken
    edge = ("candidate", 2, 0.15625, 1.0, 0, 0.0, 4)
    late = ("candidate", 195, 0.0, 1.0, 0, 0.0, 4)
    _run_both(250.0, [beat, ("scan", 399, False), silent, silent, edge, late, ("gap", 10, True)])
    # ... and a peak of exactly THR1 is noise
    _run_both(250.0, [beat, ("scan", 399, False), ("candidate", 2, 0.3125, 1.0, 0, 0.0, 4)])
    # a noise peak exactly at the first deadline: too small for that search-back, taken by
    # the next one (whose window starts there) once the signal level was halved
    rules = QrsDecider(250.0)
    deadline = 100 + math.ceil(_SEARCHBACK_RR * 250.0)  # no RR yet: the wait is 1.66 fs
    at_deadline = ("candidate", deadline - 499, 0.125, 1.0, 0, 0.0, 4)
    after = ("candidate", rules.window + 1, 0.0, 1.0, 0, 0.0, 4)
    assert _run_both(250.0, [beat, ("scan", 399, False), at_deadline, after]) == 2
    # 240 ms after a beat, a slope of exactly half that beat's is not a T wave's
    _run_both(250.0, [beat, ("candidate", 60, 1.0, 0.5, 0, 1.0, 10), ("scan", 339, False)])
    # two huge levels: their median is 0.5 * (a + b), which overflows to inf
    _run_both(250.0, [("candidate", 100, 1.5e308, 1.0, 0, 1.0, 10), ("scan", 399, False)])
    # a scan reaching exactly the end of the learning period, nothing learnt: trained anyway
    _run_both(250.0, [("scan", 499, False), ("gap", 400, True), beat, *[beat, beat] * 3])


def test_noise_kept_for_search_back_stays_bounded() -> None:
    """Levels learnt on large beats, a gap, then an hour of small noise peaks and no beat:
    QrsDecider's noise list grows by every one, the compiled decider keeps none (no beat, no
    deadline: no search-back can take them); then beats again, and after each a search-back
    window's worth at most. Both decide the same beats."""
    fs = 250.0
    beat = ("candidate", 60, 1.0, 1.0, 3, 1.0, 10)
    events: list[tuple] = [beat] * 12 + [("gap", 100, True)]
    events += [("candidate", 20, 0.001, 0.1, 3, 0.0, 4)] * 45_000
    events += [beat, *[("candidate", 20, 0.001, 0.1, 3, 0.0, 4)] * 30] * 20
    beats, ref_held, held = _run_both_held(fs, events)
    assert beats >= 25
    assert ref_held >= 45_000
    assert 0 < held <= QrsDecider(fs).window + 1


def _record(name: str) -> tuple[np.ndarray, float]:
    wfdb = pytest.importorskip("wfdb")
    path = MITDB / name
    if not path.with_suffix(".dat").exists():
        pytest.skip("shared MIT-BIH data not here")
    rec = wfdb.rdrecord(str(path))
    return rec.p_signal, float(rec.fs)


def _whole_record_identical(name: str) -> None:
    """Both channels at 1 s blocks (float32 2-lead blocks, as the gateway gives them) and at
    random block sizes (float64 arrays): compiled == numpy + QrsDecider, field by field,
    each beat reported by the same call."""
    signal, fs = _record(name)
    rng = np.random.default_rng(int(name))
    sizes = [*rng.integers(1, 1500, 400).tolist(), 1, 2, 3]
    for lead in (0, 1):

        def seconds(compiled: bool, lead: int = lead) -> list[Beats]:
            det = QrsDetector(fs, lead, compiled=compiled)
            parts = [det.process(b) for b in blocks_of(signal, fs, [int(fs)])]
            return [*parts, det.finish()]

        def random_cuts(compiled: bool, lead: int = lead) -> list[Beats]:
            det = QrsDetector(fs, compiled=compiled)
            parts, pos, i = [], 0, 0
            while pos < len(signal):
                n = sizes[i % len(sizes)]
                parts.append(det.process_array(signal[pos : pos + n, lead], pos))
                pos, i = pos + n, i + 1
            return [*parts, det.finish()]

        for run in (seconds, random_cuts):
            reference, compiled = run(False), run(True)
            # each beat reported by the same call (the same latency), and the same beats
            assert [len(p) for p in compiled] == [len(p) for p in reference]
            reference_beats = Beats.concat(reference, fs)
            assert len(reference_beats) > 1000
            _assert_same(Beats.concat(compiled, fs), reference_beats)


#: Whole records compared in the default suite (the hardest for detectors); the rest are
#: soak runs (``-m soak``: about 15 s for the 24).
_EVERY_RUN = ("108", "207")


@pytest.mark.parametrize(
    "name",
    [n if n in _EVERY_RUN else pytest.param(n, marks=pytest.mark.soak) for n in MITDB_RECORDS],
)
def test_every_mitdb_record_compiled_equals_reference(name: str) -> None:
    """Every record of the shared MIT-BIH set, whole."""
    _whole_record_identical(name)


def test_a_kernel_older_than_the_code_counts_as_not_built(monkeypatch) -> None:
    """A module left from a previous build, without a function this code calls or whose
    beat() measures other features, is not used: the numpy path runs (and gives the same
    beats)."""
    import types

    import dsp
    from dsp.qrs_front import compiled_kernel

    old = types.ModuleType("dsp._qrs_kernel")
    old.front = lambda *a: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dsp._qrs_kernel", old)
    monkeypatch.setattr(dsp, "_qrs_kernel", old, raising=False)
    assert compiled_kernel() is None
    # every function there, but a beat() that measures fewer features (before hfs_z)
    for name in dir(kernel):
        if not name.startswith("_"):
            setattr(old, name, getattr(kernel, name))
    assert compiled_kernel() is old
    old.beat_layout = (23, 34, 11)  # type: ignore[attr-defined]
    assert compiled_kernel() is None
    del old.beat_layout
    assert compiled_kernel() is None
