"""The EC57 comparators of ``benchmarks/ec57.py`` (bxb's and epicmp's rules) on cases
worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ec57 import (
    bxb_pairs,
    compare_episodes,
    rhythm_episodes,
    sveb_score,
    veb_score,
)

FS = 100.0
START = 300 * 100  # the learning period ends at sample 30,000


def beats(seconds: list[float]) -> np.ndarray:
    return (np.asarray(seconds) * FS).astype(np.int64)


def test_identical_beats_pair_one_to_one_after_the_learning_period() -> None:
    t = [100.0, 200.0, 301.0, 302.0, 303.0]
    c = ["N", "V", "N", "V", "S"]
    pairs = bxb_pairs(beats(t), c, beats(t), c, FS, end=40_000)
    assert pairs == {("N", "N"): 1, ("V", "V"): 1, ("S", "S"): 1}


def test_match_window_is_150_ms() -> None:
    ref = beats([301.0, 302.0])
    pairs = bxb_pairs(ref, ["N", "N"], beats([301.14, 302.16]), ["N", "N"], FS, end=40_000)
    # 140 ms pairs; 160 ms does not: one missed reference beat and one extra test beat
    assert pairs == {("N", "N"): 1, ("N", "O"): 1, ("O", "N"): 1}


def test_the_nearer_test_beat_pairs_and_the_other_is_extra() -> None:
    ref = beats([301.0, 302.0])
    test = beats([300.92, 301.02, 302.0])
    pairs = bxb_pairs(ref, ["V", "N"], test, ["N", "V", "N"], FS, end=40_000)
    assert pairs == {("O", "N"): 1, ("V", "V"): 1, ("N", "N"): 1}


def test_last_learning_beat_may_pair_with_the_first_reference_beat() -> None:
    ref = beats([300.05, 301.0])
    test = beats([299.98, 301.0])
    pairs = bxb_pairs(ref, ["V", "N"], test, ["V", "N"], FS, end=40_000)
    assert pairs == {("V", "V"): 1, ("N", "N"): 1}


def test_comparison_ends_at_the_record_end() -> None:
    ref = beats([301.0, 350.0])
    pairs = bxb_pairs(ref, ["N", "N"], beats([301.0, 360.0]), ["N", "N"], FS, end=32_000)
    assert pairs == {("N", "N"): 1}


def test_veb_counts_leave_fusion_and_unclassifiable_references_alone() -> None:
    pairs = {
        ("V", "V"): 10, ("V", "N"): 2, ("V", "Q"): 1, ("V", "O"): 1,
        ("N", "V"): 3, ("S", "V"): 1, ("O", "V"): 1, ("F", "V"): 4, ("Q", "V"): 5,
    }  # fmt: skip
    s = veb_score(pairs)
    assert (s.tp, s.fn, s.fp) == (10, 4, 5)


def test_sveb_counts_an_s_label_on_a_veb_as_false() -> None:
    pairs = {("S", "S"): 7, ("S", "N"): 3, ("V", "S"): 2, ("F", "S"): 1, ("Q", "S"): 9}
    s = sveb_score(pairs)
    assert (s.tp, s.fn, s.fp) == (7, 3, 3)


def test_rhythm_episodes_read_as_epicmp_reads_them() -> None:
    samples = [10, 20, 30, 40, 50, 60]
    symbols = ["+", "N", "+", "+", "+", "+"]
    aux = ["(N", "", "(AFIB", "(AFIB", "(AFL", "(AFIB"]
    assert rhythm_episodes(samples, symbols, aux, "(AFIB", 100) == [(30, 50), (60, 100)]
    assert rhythm_episodes(samples, symbols, aux, "(AFL", 100) == [(50, 60)]


def test_af_positive_predictivity_leaves_out_reference_flutter() -> None:
    s = 100  # samples per second
    ref, flutter, test = [(400 * s, 1000 * s)], [(1000 * s, 1300 * s)], [(400 * s, 1300 * s)]
    plain = compare_episodes(ref, test, FS, end=2000 * s)
    assert plain.duration_se == 100.0
    assert plain.duration_ppv == pytest.approx(100 * 600 / 900)
    ec57 = compare_episodes(ref, test, FS, end=2000 * s, exclude=flutter)
    assert ec57.duration_ppv == 100.0
    assert (ec57.test_episodes, ec57.test_true) == (1, 1)


def test_episode_wholly_in_flutter_is_not_counted() -> None:
    s = 100
    e = compare_episodes([], [(1100 * s, 1200 * s)], FS, 2000 * s, exclude=[(1000 * s, 1300 * s)])
    assert (e.test_episodes, e.test_duration) == (0, 0)


def test_learning_period_clips_episodes() -> None:
    s = 100
    e = compare_episodes([(100 * s, 500 * s)], [(200 * s, 400 * s)], FS, 2000 * s)
    assert (e.ref_duration, e.se_overlap) == (200 * s, 100 * s)
    assert (e.test_duration, e.ppv_overlap) == (100 * s, 100 * s)
    both = e + e
    assert both.duration_se == e.duration_se == 50.0
    assert (both.ref_episodes, both.ref_found) == (2, 2)
