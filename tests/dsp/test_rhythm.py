"""Rhythm episodes from beats: pause, rate limits, AF vs regular and bigeminy; chunking.

Also the AF detector of :mod:`dsp.af`: window statistics, onset and end placement,
ectopy inside AF and in sinus rhythm, and that streaming gives what one block gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.af import AfDetector
from dsp.episodes import EpisodeTracker, RhythmLimits
from dsp.qrs import Beats
from dsp.rhythm import RhythmTracker

FS = 250.0



def _tracker(**limits: float) -> RhythmTracker:
    return RhythmTracker(EpisodeTracker(FS, RhythmLimits(**limits)))

def _beats(rr_s: np.ndarray, start: int = 0, wide: np.ndarray | None = None) -> Beats:
    seq = start + np.concatenate([[0], np.cumsum(np.round(rr_s * FS))]).astype(np.int64)
    rr = np.concatenate([[np.nan], np.diff(seq) / FS])
    v = None if wide is None else np.asarray(wide, dtype=bool)
    return Beats(seq, FS, np.ones(seq.size), rr, None, v)


def _slice(b: Beats, sl: slice) -> Beats:
    v = None if b.ventricular is None else b.ventricular[sl]
    return Beats(b.seq[sl], FS, b.amplitude_mv[sl], b.rr_s[sl], None, v)


def _af_episodes(b: Beats) -> list[tuple[int, int]]:
    """(start, end) AF episodes as beat indices, the tracker fed one whole block."""
    t = _tracker()
    t.process(b)
    t.finish(int(b.seq[-1]))
    at = lambda s: int(np.searchsorted(b.seq, s))  # noqa: E731
    return [(at(e.start_seq), at(e.end_seq)) for e in t.episodes if e.kind == "af"]


def _sinus(rng: np.random.Generator, n: int) -> np.ndarray:
    return 0.8 + 0.02 * rng.standard_normal(n)


def _kinds(rr_s: np.ndarray, **kw) -> dict[str, float]:
    t = _tracker(**kw)
    b = _beats(rr_s)
    t.process(b)
    t.finish(int(b.seq[-1]))
    out: dict[str, float] = {}
    for e in t.episodes:
        end = e.end_seq if e.end_seq is not None else int(b.seq[-1])
        out[e.kind] = out.get(e.kind, 0.0) + (end - e.start_seq) / FS
    return out


RNG = np.random.default_rng(11)


def test_regular_sinus_has_no_episodes() -> None:
    assert _kinds(0.8 + 0.02 * RNG.standard_normal(300)) == {}


def test_af_found_in_random_rr() -> None:
    rr = RNG.uniform(0.4, 1.1, 400)  # irregularly irregular
    assert _kinds(rr).get("af", 0) > 0.8 * rr.sum()


def test_bigeminy_is_not_af() -> None:
    rr = np.tile([0.5, 1.0], 200) + 0.01 * RNG.standard_normal(400)
    assert "af" not in _kinds(rr)


def test_pause_brady_tachy() -> None:
    rr = np.concatenate([np.full(20, 0.8), [3.5], np.full(20, 1.8), np.full(30, 0.3)])
    k = _kinds(rr, brady_bpm=40, tachy_bpm=150, pause_s=3.0)
    assert k["pause"] == 3.5
    assert k["brady"] > 20 and k["tachy"] > 5


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_chunked_equals_whole(sizes: list[int]) -> None:
    rr = np.concatenate([RNG.uniform(0.4, 1.1, 100), np.full(60, 0.75), [4.0], np.full(20, 0.3)])
    b = _beats(rr)
    whole = _tracker()
    whole.process(b)
    parts = _tracker()
    pos, i = 0, 0
    while pos < len(b):
        n = sizes[i % len(sizes)]
        sl = slice(pos, pos + n)
        parts.process(Beats(b.seq[sl], FS, b.amplitude_mv[sl], b.rr_s[sl]))
        pos += n
        i += 1
    key = [(e.kind, e.start_seq, e.end_seq) for e in whole.episodes]
    assert [(e.kind, e.start_seq, e.end_seq) for e in parts.episodes] == key


# --- AF detector --------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_af_boundaries_placed_where_the_rhythm_changed(seed: int) -> None:
    """Sinus, 200 beats of AF, sinus: the episode is where the AF is, not where the
    decisions were made (some 20-40 beats later)."""
    rng = np.random.default_rng(seed)
    rr = np.concatenate([_sinus(rng, 100), rng.uniform(0.4, 1.1, 200), _sinus(rng, 150)])
    (start, end), *more = _af_episodes(_beats(rr))
    assert not more
    assert 95 <= start <= 118  # AF's first interval ends at beat 101
    assert 295 <= end <= 312  # its last at beat 300


def test_af_reported_late_but_never_ahead_of_the_beats() -> None:
    rng = np.random.default_rng(5)
    rr = np.concatenate([_sinus(rng, 100), rng.uniform(0.4, 1.1, 200), _sinus(rng, 150)])
    b = _beats(rr)
    t = _tracker()
    seen: list[tuple[int, int, int | None]] = []
    for i in range(len(b)):
        for e in t.process(_slice(b, slice(i, i + 1))):
            assert e.start_seq <= b.seq[i] and (e.end_seq is None or e.end_seq <= b.seq[i])
            seen.append((i, e.start_seq, e.end_seq))
    (i_open, s0, e0), (i_close, s1, e1) = seen
    assert e0 is None and s1 == s0 and e1 is not None
    assert 101 < i_open <= 150 and 300 < i_close <= 400


def test_af_with_ventricular_ectopy_is_one_episode() -> None:
    """PVCs (wide, premature, with a compensatory pause) every few beats of AF."""
    rng = np.random.default_rng(8)
    af = rng.uniform(0.4, 1.1, 400)
    wide = np.zeros(af.size + 1, bool)
    for k in range(20, af.size - 2, 7):  # beat k + 1 is a PVC
        af[k], af[k + 1] = 0.35, 1.2
        wide[k + 1] = True
    rr = np.concatenate([_sinus(rng, 60), af])
    w = np.concatenate([np.zeros(60, bool), wide])
    episodes = _af_episodes(_beats(rr, wide=w))
    assert len(episodes) == 1
    start, end = episodes[0]
    assert 60 <= start <= 80 and end == len(rr)


def test_sinus_with_isolated_premature_beats_is_not_af() -> None:
    rng = np.random.default_rng(9)
    rr = _sinus(rng, 600)
    wide = np.zeros(rr.size + 1, bool)
    for k in range(10, 590, 9):
        rr[k], rr[k + 1] = 0.5, 1.1  # premature beat, compensatory pause
        wide[k + 1] = k % 2 == 0  # half ventricular (wide), half supraventricular
    assert _af_episodes(_beats(rr, wide=wide)) == []


def test_short_irregular_burst_is_at_most_a_short_episode_where_it_was() -> None:
    """20 irregular beats (15 s) in sinus rhythm: reported, if at all, where they are;
    whether so short an episode counts is the episode layer's minimum duration."""
    rng = np.random.default_rng(10)
    rr = np.concatenate([_sinus(rng, 200), rng.uniform(0.4, 1.1, 20), _sinus(rng, 200)])
    for start, end in _af_episodes(_beats(rr)):
        assert start >= 190 and end <= 235


def test_af_from_the_first_beat_starts_at_the_first_beat() -> None:
    rng = np.random.default_rng(12)
    rr = np.concatenate([rng.uniform(0.4, 1.1, 150), _sinus(rng, 150)])
    [(start, end)] = _af_episodes(_beats(rr))
    assert start == 0 and 145 <= end <= 165


def test_gap_resets_the_af_detector() -> None:
    d = AfDetector(FS)
    rng = np.random.default_rng(13)
    seq = np.cumsum(np.round(rng.uniform(0.4, 1.1, 200) * FS)).astype(int)
    changes = [c for s in seq.tolist() if (c := d.push(s)) is not None]
    assert [c.began for c in changes] == [True] and d.active
    d.start(int(seq[-1]) + 10_000)
    assert not d.active


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_af_chunked_equals_whole(sizes: list[int]) -> None:
    """AF on and off, with wide beats: block boundaries never change an episode."""
    rng = np.random.default_rng(21)
    rr = np.concatenate(
        [_sinus(rng, 80), rng.uniform(0.4, 1.1, 150), _sinus(rng, 120), rng.uniform(0.4, 1.1, 90)]
    )
    wide = rng.random(rr.size + 1) < 0.08
    b = _beats(rr, wide=wide)
    whole = _tracker()
    whole.process(b)
    parts = _tracker()
    pos, i = 0, 0
    while pos < len(b):
        n = sizes[i % len(sizes)]
        parts.process(_slice(b, slice(pos, pos + n)))
        pos += n
        i += 1
    key = [(e.kind, e.start_seq, e.end_seq, e.confidence) for e in whole.episodes]
    assert any(k[0] == "af" for k in key)
    assert [(e.kind, e.start_seq, e.end_seq, e.confidence) for e in parts.episodes] == key


def test_episode_list_is_bounded() -> None:
    """Weeks of pauses: the list keeps the last ``max_episodes``, the tracker no history."""
    rr = np.tile([0.8] * 5 + [3.2], 2000)
    t = RhythmTracker(EpisodeTracker(FS), max_episodes=100)
    b = _beats(rr)
    for i in range(0, len(b), 500):
        t.process(_slice(b, slice(i, i + 500)))
    assert len(t.episodes) == 100 and t.counts.episodes["pause"] == 2000
    assert t.episodes[-1].end_seq == b.seq[-1]  # the last interval is a pause


def test_classified_beats_give_ectopy_kinds_plain_beats_do_not() -> None:
    from dsp.beat_class import ClassifiedBeats

    rr = np.concatenate([np.full(20, 0.8), np.full(6, 0.4), np.full(20, 0.8)])
    b = _beats(rr, wide=np.r_[np.zeros(21, bool), np.ones(6, bool), np.zeros(20, bool)])
    plain = _tracker()
    plain.process(b)
    classed = _tracker()
    classed.process(ClassifiedBeats.from_beats(b))
    assert "vt" not in {e.kind for e in plain.episodes}
    assert [e.kind for e in classed.episodes] == ["vt"]
