import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from gateway.pipeline.history import SampleHistory

FS = 100.0


def blk(seq: int, n: int, leads=("II",)) -> SampleBlock:
    values = np.arange(seq, seq + n, dtype=np.float32)[:, None].repeat(len(leads), axis=1)
    return SampleBlock(values, FS, 1000.0 + seq / FS, seq, leads, "dev")


def test_window_is_exact_slice_of_what_was_recorded():
    h = SampleHistory(keep_s=60)
    for seq in range(0, 1000, 130):
        h.add(blk(seq, 130))
    w = h.window(250, 790)
    assert w is not None and w.complete
    assert w.block.seq == 250 and w.block.n == 540
    np.testing.assert_array_equal(w.block.samples[:, 0], np.arange(250, 790))
    assert abs(w.block.start - (1000.0 + 2.5)) < 1e-9


def test_holes_come_back_as_nan_and_are_listed():
    h = SampleHistory(keep_s=60)
    h.add(blk(0, 100))
    h.add(blk(150, 100))  # 100..150 never arrived
    w = h.window(50, 200)
    assert w.missing == ((100, 150),)
    assert np.isnan(w.block.samples[50:100]).all()
    assert not np.isnan(w.block.samples[:50]).any()


def test_late_block_fills_the_hole_and_overlaps_are_trimmed():
    h = SampleHistory(keep_s=60)
    h.add(blk(0, 100))
    h.add(blk(150, 100))
    h.add(blk(90, 70))  # backfill 100..150, overlapping both neighbours
    w = h.window(0, 250)
    assert w.complete
    np.testing.assert_array_equal(w.block.samples[:, 0], np.arange(250))
    assert h.late_or_duplicate == 2


def test_history_is_bounded():
    h = SampleHistory(keep_s=2)
    for seq in range(0, 10_000, 100):
        h.add(blk(seq, 100))
    assert h.first_seq >= 10_000 - 2 * FS - 100
    assert h.window(0, 100) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 250), min_size=1, max_size=30))
def test_any_blocking_gives_the_same_window(sizes):
    h = SampleHistory(keep_s=1000)
    seq = 0
    for n in sizes:
        h.add(blk(seq, n))
        seq += n
    w = h.window(0, seq)
    assert w.complete
    np.testing.assert_array_equal(w.block.samples[:, 0], np.arange(seq))


def test_a_jump_keeps_the_samples_before_it_until_as_many_came_after_it():
    """Bounded in samples held, not in sample numbers: a strip still waiting when the
    stream jumps an hour ahead finds its samples (before, the jump pruned them all)."""
    h = SampleHistory(keep_s=2)  # 200 samples
    h.add(blk(0, 300))
    h.add(blk(360_000, 100))
    w = h.window(100, 300)
    assert w is not None and w.complete and h.first_seq == 0
    h.add(blk(360_100, 100))  # 200 after the jump: what is before it goes
    assert h.window(100, 300) is None and h.first_seq == 360_000
