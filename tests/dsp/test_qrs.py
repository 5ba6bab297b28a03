"""QRS detector: real ECG, chunked equals whole, bounded latency, gaps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from dsp import detect_beats
from dsp.qrs import Beats, QrsDetector
from dsp.qrs_front import _local_peaks, _local_peaks_fast
from sim.synth import EcgSynth
from tests.support import blocks_of, peak_search_cases


def _match(ref: np.ndarray, det: np.ndarray, tol: int) -> int:
    """Reference beats with a detection within ``tol`` samples (one detection per beat)."""
    used: set[int] = set()
    hits = 0
    for s in ref:
        near = [int(d) for d in det if abs(int(d) - int(s)) <= tol and int(d) not in used]
        if near:
            used.add(min(near, key=lambda d: abs(d - int(s))))
            hits += 1
    return hits


def test_mitdb_excerpt_beats_found(mitdb119: dict) -> None:
    """Record 119 (bigeminy with PVCs): every reference beat after training is found."""
    fs = mitdb119["fs"]
    det = detect_beats(mitdb119["mv"], fs)
    ref = mitdb119["beats"]
    tol = int(0.15 * fs)
    assert _match(ref, det, tol) >= len(ref) - 1
    assert len(det) <= len(ref) + 1


def _stream(x: np.ndarray, fs: float, sizes: list[int]) -> Beats:
    det = QrsDetector(fs)
    parts = [det.process(b) for b in blocks_of(x, fs, sizes)]
    parts.append(det.finish())
    return Beats.concat(parts, fs)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=10))
def test_chunked_equals_whole(mitdb119: dict, sizes: list[int]) -> None:
    fs = mitdb119["fs"]
    x = mitdb119["mv"][:5400]
    whole = _stream(x, fs, [len(x)])
    chunked = _stream(x, fs, sizes)
    np.testing.assert_array_equal(chunked.seq, whole.seq)
    np.testing.assert_array_equal(chunked.amplitude_mv, whole.amplitude_mv)
    np.testing.assert_array_equal(chunked.rr_s, whole.rr_s)


def test_beats_reported_within_latency() -> None:
    fs = 250.0
    x = EcgSynth(fs, ("II",), hr_bpm=45, seed=1).generate(int(fs * 30))
    det = QrsDetector(fs)
    worst = 0.0
    for b in blocks_of(x, fs, [25]):
        beats = det.process(b)
        if len(beats):
            worst = max(worst, (b.end_seq - int(beats.seq.min())) / fs)
    assert 0 < worst <= det.latency_s


def test_synthetic_rate_and_gap() -> None:
    fs = 130.0
    synth = EcgSynth(fs, ("ECG",), hr_bpm=90, seed=2)
    x = synth.generate(int(fs * 40))
    det = QrsDetector(fs)
    blocks = list(blocks_of(x, fs, [73]))
    del blocks[30:40]  # 10 blocks lost on the way
    beats = Beats.concat([det.process(b) for b in blocks] + [det.finish()], fs)
    assert det.gaps == 1
    rr = beats.rr_s[np.isfinite(beats.rr_s)]
    assert np.isnan(beats.rr_s).sum() == 2  # first beat, and first after the gap
    assert abs(60 / np.median(rr) - 90) < 2
    assert rr.max() < 1.0  # no RR interval spans the gap


def test_flat_line_gives_no_beats() -> None:
    x = np.zeros(5000)
    assert detect_beats(x, 250.0).size == 0


def test_wide_beats_labelled_ventricular(mitdb119: dict) -> None:
    """Record 119 excerpt: the PVCs (V) are flagged wide, the normal beats are not."""
    fs = mitdb119["fs"]
    det = QrsDetector(fs)
    beats = Beats.concat([det.process_array(mitdb119["mv"], 0), det.finish()], fs)
    assert beats.ventricular is not None and beats.width_s is not None
    symbols = dict(zip(mitdb119["beats"].tolist(), mitdb119["symbols"].tolist(), strict=True))
    agree = total = 0
    for s, v in zip(beats.seq.tolist(), beats.ventricular.tolist(), strict=True):
        ref = [sym for r, sym in symbols.items() if abs(r - s) <= 0.15 * fs]
        if ref and s > 2 * fs:  # labels start once a few narrow beats were seen
            total += 1
            agree += (ref[0] == "V") == v
    assert agree >= total - 1


@settings(max_examples=200, deadline=None)
@given(case=peak_search_cases())
def test_sliding_max_peaks_equal_plain_rule(case: tuple | None) -> None:
    """The sliding-maximum candidate search gives the sample-by-sample rule, ties included."""
    if case is None:
        return
    e, first, a, b, r = case
    expected = _local_peaks(e, a, b, r, first, len(e))
    assert _local_peaks_fast(e, a, b, r, first, len(e), np.empty_like(e)) == expected


def _all(beats: Beats) -> tuple:
    return tuple(
        getattr(beats, k) for k in ("seq", "amplitude_mv", "rr_s", "width_s", "ventricular")
    )


def _assert_same(a: Beats, b: Beats) -> None:
    for x, y in zip(_all(a), _all(b), strict=True):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 1500), min_size=1, max_size=6))
def test_non_finite_samples_chunked_equals_whole(mitdb119: dict, sizes: list[int]) -> None:
    """NaN or inf in the stream: no crash, beats before it found, chunking does not matter."""
    fs = mitdb119["fs"]
    x = mitdb119["mv"][:5400].copy()
    x[4000] = np.nan
    x[4500] = np.inf
    whole = _stream(x, fs, [len(x)])
    _assert_same(_stream(x, fs, sizes), whole)
    clean = _stream(mitdb119["mv"][:3600], fs, [len(x)])
    assert len(clean) > 5 and np.isin(clean.seq[clean.seq < 3500], whole.seq).all()


def test_detection_goes_on_after_a_non_finite_sample(mitdb119: dict) -> None:
    """One NaN (a missing sample) and later one inf: each is a hole of one sample, not the
    end of detection: after it the beats are those of the clean record, a second or two of
    settling aside (found when a single NaN stopped every later beat)."""
    fs = mitdb119["fs"]
    x = mitdb119["mv"].copy()  # 30 s
    blocks = [int(fs)] * (len(x) // int(fs))
    clean = _stream(x, fs, blocks)
    x[int(5 * fs)] = np.nan
    x[int(17 * fs)] = np.inf
    holed = _stream(x, fs, blocks)
    for a, b in ((8, 15), (20, 27)):
        want = clean.seq[(clean.seq >= a * fs) & (clean.seq < b * fs)]
        got = holed.seq[(holed.seq >= a * fs) & (holed.seq < b * fs)]
        assert len(want) > 5
        np.testing.assert_array_equal(got, want)


def test_block_sizes_and_gaps_do_not_matter(mitdb119: dict) -> None:
    """One huge block, then 1-s blocks, a gap, and the other way round: the same beats."""
    fs = mitdb119["fs"]
    x = mitdb119["mv"]
    half = len(x) // 2
    one_s = int(fs)

    def run(first: list[int], second: list[int]) -> Beats:
        det = QrsDetector(fs)
        parts = [det.process(b) for b in blocks_of(x[:half], fs, first)]
        later = [
            SampleBlock(b.samples, fs, b.start, b.seq + half + 1000, b.leads)  # after a gap
            for b in blocks_of(x[half:], fs, second)
        ]
        parts += [det.process(b) for b in later]
        parts.append(det.finish())
        assert det.gaps == 1
        return Beats.concat(parts, fs)

    a = run([half], [one_s])
    b = run([one_s], [len(x) - half])
    c = run([7, 3000, 1], [one_s, 5, 20000])
    assert len(a) > 10
    _assert_same(a, b)
    _assert_same(a, c)
