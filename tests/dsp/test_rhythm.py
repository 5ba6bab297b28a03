"""Rhythm episodes from beats: pause, rate limits, AF vs regular and bigeminy; chunking."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.qrs import Beats
from dsp.rhythm import RhythmTracker

FS = 250.0


def _beats(rr_s: np.ndarray, start: int = 0) -> Beats:
    seq = start + np.concatenate([[0], np.cumsum(np.round(rr_s * FS))]).astype(np.int64)
    rr = np.concatenate([[np.nan], np.diff(seq) / FS])
    return Beats(seq, FS, np.ones(seq.size), rr)


def _kinds(rr_s: np.ndarray, **kw) -> dict[str, float]:
    t = RhythmTracker(FS, **kw)
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
    whole = RhythmTracker(FS)
    whole.process(b)
    parts = RhythmTracker(FS)
    pos, i = 0, 0
    while pos < len(b):
        n = sizes[i % len(sizes)]
        sl = slice(pos, pos + n)
        parts.process(Beats(b.seq[sl], FS, b.amplitude_mv[sl], b.rr_s[sl]))
        pos += n
        i += 1
    key = [(e.kind, e.start_seq, e.end_seq) for e in whole.episodes]
    assert [(e.kind, e.start_seq, e.end_seq) for e in parts.episodes] == key
