"""Periodic strips over a hole analysis gave up waiting for: made only where late samples
arrive, so the step that ends the wait costs the same whatever the hole's length (issue #10).

Work is counted in windows made, never timed.
"""

from __future__ import annotations

import random

import numpy as np

from core.block import SampleBlock
from core.events import Gap
from gateway.pipeline import DevicePipeline, PipelineSettings, StripReady
from gateway.pipeline.windows import WindowScheduler
from sim.synth import EcgSynth
from tests.gateway.test_fuzz_devices import PATCH_SETTINGS

T0 = 1_790_000_000.0
FS = 250.0
HOUR = int(3600 * FS)
# as the fuzz corpus: a 1 s strip every 2 s (500 samples), 3 s of stream held for a hole
SETTINGS = PATCH_SETTINGS


def _blocks(first: int, end: int, size: int = 250) -> list[SampleBlock]:
    """Synthetic ECG for samples ``[first, end)`` in blocks of ``size``."""
    synth = EcgSynth(FS, ("ECG",), hr_bpm=70, seed=first % 1000)
    return [
        SampleBlock(synth.generate(min(size, end - a)), FS, T0 + a / FS, a, ("ECG",), "p")
        for a in range(first, end, size)
    ]


def _made(p: DevicePipeline) -> int:
    """Windows the pipeline's scheduler ever made (queued, or for late samples)."""
    assert p._s is not None
    w = p._s.windows
    return w.created + getattr(w, "created_late", 0)


def _strips(out: list) -> list[StripReady]:
    return [o for o in out if isinstance(o, StripReady) and o.kind == "strip"]


def _until_given_up(p: DevicePipeline, blocks: list[SampleBlock]) -> tuple[list, int, int]:
    """Feed ``blocks`` until analysis gives up waiting for a hole: (outputs, windows made
    and windows held for late samples in the step that gave up)."""
    out: list = []
    for i, b in enumerate(blocks):
        before = _made(p)
        out += p.on_block(b)
        if p.reorder.stats.gave_up:
            assert p._s is not None
            made, held = _made(p) - before, len(p._s.late._held)
            for rest in blocks[i + 1 :]:
                out += p.on_block(rest)
            return out, made, held
    raise AssertionError("analysis never gave up waiting")


def test_the_step_that_gives_up_on_hours_makes_as_many_windows_for_one_hour_as_for_five() -> None:
    """A hole of 1 h or 5 h that the patch never backfills: the block that ends the wait
    makes the strips of the stream it releases (3 s) and the two partly inside the hole,
    none wholly inside it (before: the last 256 of it, each set aside, then sent empty); no
    strip goes out empty, those partly inside the hole go out with what they have and the
    gap."""
    first_hole = 2625  # 10.5 s: the strip at 10 s is partly inside the hole
    for hours in (1, 5):
        end_hole = first_hole + hours * HOUR
        p = DevicePipeline("p", SETTINGS)
        out = []
        for b in _blocks(0, first_hole, 125):
            out += p.on_block(b)
        got, made, held = _until_given_up(p, _blocks(end_hole, end_hole + int(10 * FS)))
        out += got
        assert made <= 3 and held <= 1, (hours, made, held)
        gap = Gap("p", first_hole, end_hole, T0 + first_hole / FS, T0 + end_hole / FS, "gone", True)
        out += p.on_gap(gap) + p.flush()
        strips = _strips(out)
        assert [s for s in strips if first_hole <= s.block.seq < s.block.end_seq <= end_hole] == []
        assert min(s.facts.recorded_samples for s in strips) > 0
        partly = [s for s in strips if s.block.seq in (2500, end_hole - 125)]
        assert [s.facts.recorded_samples for s in partly] == [125, 125]
        assert [g.reason for s in partly for g in s.gaps] == ["gone", "gone"]
        assert partly[0].trigger.analysed_late


def test_a_hole_backfilled_after_the_wait_gives_every_strip_inside_it_once_in_order() -> None:
    """Ten minutes backfilled in order after analysis gave up waiting for them (300 strips
    inside, more than can wait at once): each strip is made when its samples come, sent
    complete and analysed late, once, in order; a late block makes at most one window."""
    first_hole, end_hole = int(20 * FS), int(620 * FS)
    p = DevicePipeline("p", SETTINGS)
    out = []
    for b in _blocks(0, first_hole):
        out += p.on_block(b)
    out += _until_given_up(p, _blocks(end_hole, end_hole + int(10 * FS)))[0]
    made = []
    for b in _blocks(first_hole, end_hole):  # the backfill, late
        before = _made(p)
        out += p.on_block(b)
        made.append(_made(p) - before)
    out += p.flush()
    assert max(made) <= 1 and sum(made) == (end_hole - first_hole) // 500
    inside = [s for s in _strips(out) if first_hole <= s.block.seq < end_hole]
    assert [s.block.seq for s in inside] == list(range(first_hole, end_hole, 500))
    assert all(s.trigger.analysed_late and s.facts.recorded_samples == 250 for s in inside)
    assert all(s.gaps == () for s in inside)
    seqs = [s.block.seq for s in _strips(out)]
    assert len(seqs) == len(set(seqs))
    stats = p.stats()  # what the status shows
    assert stats["owed_strips_made"] == len(inside) and stats["owed_strips_never_made"] == 0


# --- the scheduler alone ------------------------------------------------------------------
def _scheduler(**over: float) -> WindowScheduler:
    settings = PipelineSettings(strip_period_s=2.0, strip_duration_s=1.0)
    return WindowScheduler(settings, FS, 0, **over)


def test_strips_wholly_inside_a_range_given_up_are_owed_not_queued() -> None:
    """An hour given up waiting for: one advance queues the strips around it, none inside
    (one owed run notes them); late samples make the strips they fall in, each once."""
    w = _scheduler()
    w.advance(1000 + HOUR + 1000, [(1000, 1000 + HOUR)])
    strips = [p.first_seq for p in w.ready(1000 + HOUR + 1000, 0)]
    assert strips[:2] == [0, 500] and w.created == len(strips) <= 6
    assert not [f for f in strips if f >= 1000 and f + 250 <= 1000 + HOUR]
    assert w.owes and len(w._owed) == 1
    assert [(p.first_seq, p.end_seq) for p in w.owed(5300, 5600)] == [(5500, 5750)]
    assert [(p.first_seq, p.end_seq) for p in w.owed(5000, 5600)] == [(5000, 5250)]
    assert w.owed(5000, 5750) == [] and w.owed(999, 1000) == []  # made once; before: none
    assert [p.first_seq for p in w.owed(HOUR - 300, HOUR + 5000)] == [HOUR - 500, HOUR, HOUR + 500]
    assert w.created_late == 5 and w.created == len(strips)


def test_ranges_given_up_in_one_advance_are_each_owed() -> None:
    w = _scheduler()
    ranges = [(1000, 1000 + HOUR), (1500 + HOUR, 1500 + 2 * HOUR)]
    w.advance(2 * HOUR + 2000, ranges)
    assert w.created <= 8 and len(w._owed) == 2
    assert [p.first_seq for p in w.owed(1000, 1001)] == [1000]
    assert [p.first_seq for p in w.owed(2 * HOUR, 2 * HOUR + 1)] == [2 * HOUR]


def test_late_samples_in_any_order_make_each_strip_they_touch_once() -> None:
    """Late blocks in random order, duplicates among them, over a range given up: the
    strips made are exactly those some sample falls in, each once; the stretch no sample
    came for makes none."""
    rng = random.Random(4)
    w = _scheduler()
    hole = (1000, 1000 + 60_000)
    w.advance(hole[1] + 1000, [hole])
    w.ready(hole[1] + 1000, 0)
    spans = [(a, a + rng.randint(1, 700)) for a in range(hole[0], 40_000, 900)]
    spans = [(a, min(b, hole[1])) for a, b in spans + rng.sample(spans, 10)]  # duplicates
    rng.shuffle(spans)
    made = []
    for a, b in spans:
        got = w.owed(a, b)
        assert len(got) <= (b - a + 250) // 500 + 1
        made += [p.first_seq for p in got]
    have = np.zeros(hole[1] + 1000, dtype=bool)
    for a, b in spans:
        have[a:b] = True
    touched = [g for g in range(hole[0], hole[1] - 249, 500) if have[g : g + 250].any()]
    assert sorted(made) == touched and len(made) == len(set(made))


def test_owed_strips_wait_as_long_as_late_windows_then_are_dropped() -> None:
    w = _scheduler(owed_s=60.0)
    w.advance(20_000, [(1000, 19_000)])
    w.advance(20_000 + int(60 * FS))  # the wait is not over
    assert [p.first_seq for p in w.owed(1000, 1001)] == [1000]
    w.advance(20_000 + int(60 * FS) + 1)
    assert not w.owes and w.owed(2000, 2001) == []
    assert w.owed_dropped == (19_000 - 250 - 1500) // 500 + 1  # all but the one made
