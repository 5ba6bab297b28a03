"""Blocks back in sample order: holes filled by backfill, declared lost, or waited out."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from gateway.pipeline.reorder import BlockReorderer

FS = 250.0


def block(first: int, end: int) -> SampleBlock:
    x = np.arange(first, end, dtype=np.float32)[:, None]
    return SampleBlock(x, FS, first / FS, first, ("ECG",))


def seqs(blocks: list[SampleBlock]) -> list[int]:
    return [int(v) for b in blocks for v in b.samples[:, 0]]


def test_backfill_is_analysed_in_order() -> None:
    r = BlockReorderer(max_hold_s=60)
    assert seqs(r.push(block(0, 100))) == list(range(100))
    assert r.push(block(300, 400)) == []  # after a hole: held
    assert r.push(block(400, 500)) == []
    assert r.held_samples == 200
    out = r.push(block(100, 300))  # the backfill
    assert seqs(out) == list(range(100, 500))
    assert r.stats.filled == 200 and r.stats.reordered_blocks == 1 and r.stats.late == 0


def test_lost_range_releases_what_follows() -> None:
    r = BlockReorderer(max_hold_s=60)
    r.push(block(0, 100))
    assert r.push(block(150, 200)) == []
    assert seqs(r.lost(100, 150)) == list(range(150, 200))
    assert r.stats.skipped == 50
    r.lost(250, 260)  # declared before analysis reaches it
    assert seqs(r.push(block(200, 250))) == list(range(200, 250))
    assert seqs(r.push(block(260, 270))) == list(range(260, 270))


def test_hold_is_bounded_then_late_backfill_is_counted() -> None:
    r = BlockReorderer(max_hold_s=1.0)  # 250 samples
    r.push(block(0, 100))
    assert r.push(block(200, 300)) == []
    assert r.push(block(300, 400)) == []  # 200 samples held: still waiting
    out = r.push(block(400, 500))  # 300 samples held past the hole: give up waiting
    assert seqs(out) == list(range(200, 500))
    assert r.stats.gave_up == 1 and r.stats.skipped == 100
    assert r.push(block(100, 200)) == []  # too late for analysis
    assert r.stats.late == 100


def test_a_long_hole_gets_the_whole_hold_to_be_backfilled() -> None:
    """Back after an hour away: the hour's length does not count against the hold."""
    r = BlockReorderer(max_hold_s=300.0)
    hour = int(3600 * FS)
    r.push(block(0, 250))
    live = [block(hour + k * 250, hour + (k + 1) * 250) for k in range(240)]  # 4 min back
    assert all(r.push(b) == [] for b in live)
    out = []
    for k in range(250, hour, 25_000):  # the backfill, in big pieces
        out += r.push(block(k, min(k + 25_000, hour)))
    assert seqs(out) == list(range(250, hour + 240 * 250))
    assert r.stats.skipped == 0 and r.stats.gave_up == 0


def test_no_hold_passes_through_and_drops_duplicates() -> None:
    r = BlockReorderer(max_hold_s=0)
    assert seqs(r.push(block(0, 10))) == list(range(10))
    assert seqs(r.push(block(20, 30))) == list(range(20, 30))
    assert seqs(r.push(block(5, 40))) == list(range(30, 40))
    assert r.stats.late == 25


def test_flush_releases_everything_held() -> None:
    r = BlockReorderer(max_hold_s=60)
    r.push(block(0, 10))
    r.push(block(50, 60))
    r.push(block(20, 30))
    assert seqs(r.flush()) == list(range(20, 30)) + list(range(50, 60))
    assert r.held_samples == 0


@st.composite
def scrambled_stream(draw):
    cuts = sorted(set(draw(st.lists(st.integers(1, 1999), min_size=1, max_size=40))))
    edges = [0, *cuts, 2000]
    blocks = list(itertools.pairwise(edges))
    lost = draw(st.sets(st.integers(1, len(blocks) - 1), max_size=len(blocks) // 3))
    delivered = [blk for i, blk in enumerate(blocks) if i not in lost]
    first, rest = delivered[0], delivered[1:]
    order = draw(st.permutations(rest))
    dup = draw(st.lists(st.sampled_from(delivered), max_size=5))
    lost_at = {i: draw(st.integers(0, len(order))) for i in lost}
    return first, list(order) + dup, [blocks[i] for i in sorted(lost)], lost_at, sorted(lost)


@settings(max_examples=200, deadline=None)
@given(scrambled_stream())
def test_any_arrival_order_gives_each_sample_once_in_order(case) -> None:
    first, arrivals, lost_ranges, lost_at, lost_idx = case
    r = BlockReorderer(max_hold_s=1e9)
    out = r.push(block(*first))
    for k, (a, b) in enumerate(arrivals):
        for i, rng in zip(lost_idx, lost_ranges, strict=True):
            if lost_at[i] == k:
                out += r.lost(*rng)
        out += r.push(block(a, b))
    for rng in lost_ranges:
        out += r.lost(*rng)
    got = seqs(out)
    missing = {v for a, b in lost_ranges for v in range(a, b)}
    assert got == [v for v in range(2000) if v not in missing]
    assert r.held_samples == 0


@settings(max_examples=100, deadline=None)
@given(scrambled_stream(), st.floats(0.0, 4.0))
def test_bounded_hold_never_repeats_or_reorders(case, hold_s) -> None:
    first, arrivals, _, _, _ = case
    r = BlockReorderer(max_hold_s=hold_s)
    out = r.push(block(*first))
    for a, b in arrivals:
        out += r.push(block(a, b))
        assert r.held_samples <= hold_s * FS + 2000  # bounded by the hold (+ one block)
    out += r.flush()
    got = seqs(out)
    assert got == sorted(set(got))
