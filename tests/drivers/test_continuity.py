"""Device sample numbers judged against the wall clock: any counter, never an overwrite."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from core.events import DeviceRestarted, Gap, StreamPosition
from drivers.cart_protocol import EcgMsg, HelloMsg
from drivers.cart_stream import CartStream
from drivers.continuity import SequenceGuard, Verdict

FS = 500.0


def test_contiguous_lost_repeated_and_restarted() -> None:
    g = SequenceGuard(FS)
    assert g.judge(1000, 50, 0.0).verdict is Verdict.NEXT
    assert g.judge(1050, 50, 0.1).seq == 1050
    lost = g.judge(1200, 50, 0.4)
    assert lost.verdict is Verdict.GAP and lost.gap == (1100, 1200)
    again = g.judge(1230, 50, 0.5)  # 1230..1250 came already
    assert again.verdict is Verdict.REPEAT and again.skip == 20 and again.seq == 1250
    assert g.judge(1280, 5000, 10.0).verdict is Verdict.NEXT
    back = g.judge(0, 50, 11.0)  # the counter went back to 0: a new stream
    assert back.verdict is Verdict.RESTART
    assert back.gap == (6280, back.seq) and back.seq - 6280 == round(1.0 * FS)
    jump = g.judge(2**31, 50, 11.1)  # a jump no clock allows
    assert jump.verdict is Verdict.RESTART and jump.seq == back.seq + 50 + round(0.1 * FS)


def test_a_long_absence_is_a_gap_not_a_restart() -> None:
    g = SequenceGuard(FS)
    g.judge(0, 50, 0.0)
    later = g.judge(50 + int(3600 * FS), 50, 3600.0)  # an hour later, an hour further
    assert later.verdict is Verdict.GAP and later.gap == (50, 50 + int(3600 * FS))


def test_resume_after_the_gateway_was_not_running() -> None:
    s = CartStream("c")
    s.resume(StreamPosition(10_000, 1000.0, 0, FS), now=1060.0, mono=500.0)
    frame = np.zeros((50, 12), dtype=np.int32)
    out = s.handle(EcgMsg(0, 10_000 + int(60 * FS), frame), now=1060.1, mono=500.1)
    (gap,) = [o for o in out if isinstance(o, Gap)]
    assert (gap.first_seq, gap.end_seq) == (10_000, 10_000 + int(60 * FS))
    assert gap.reason.startswith("gateway not running")


def test_a_new_sample_rate_is_a_new_stream_numbered_on() -> None:
    s = CartStream("c")
    s.handle(EcgMsg(0, 0, np.zeros((500, 12), dtype=np.int32)), now=0.0)
    s.handle(HelloMsg(0, 1000, 12, "x", "y"), now=1.0)
    out = s.handle(EcgMsg(0, 0, np.zeros((100, 12), dtype=np.int32)), now=1.1)
    assert any(isinstance(o, DeviceRestarted) and "rate" in o.reason for o in out)
    (block,) = [o for o in out if isinstance(o, SampleBlock)]
    assert block.fs == 1000.0 and block.seq >= 1000  # numbers go on with the clock


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 2**32 - 1), st.integers(-400, 400)),  # absolute or step
            st.integers(1, 60),  # samples in the frame
            st.floats(0.0, 100.0),  # seconds since the previous frame
            st.booleans(),  # relative step (True) or an absolute counter value
        ),
        max_size=40,
    )
)
def test_any_counter_never_overwrites_and_everything_is_accounted_for(frames) -> None:
    """Whatever numbers a cart sends, stream numbers only go forward, blocks never overlap,
    and blocks plus gaps tile the stream from its first sample without a hole."""
    s = CartStream("c")
    t, dev = 0.0, 0
    covered: list[tuple[int, int]] = []
    for value, n, dt, relative in frames:
        t += dt
        dev = max(0, dev + value) if relative else max(0, value)
        x = np.zeros((n, 12), dtype=np.int32)
        for out in s.handle(EcgMsg(0, dev, x), now=1e9 + t, mono=t):
            if isinstance(out, SampleBlock):
                covered.append((out.seq, out.end_seq))
            elif isinstance(out, Gap):
                covered.append((out.first_seq, out.end_seq))
        dev += n
    covered.sort()
    for (_, b0), (a1, _) in itertools.pairwise(covered):
        assert b0 == a1, covered  # no overlap, no unaccounted hole


def test_rate_changes_in_a_row_go_on_from_the_last_sample_and_its_time() -> None:
    """Two HELLOs with new rates before any sample of the first: the numbers go on from
    the 500 Hz stream's end (not from 0, which would number over it), and the seconds
    since its last sample (mono 0 to 10.6) are a gap, not forgotten."""
    s = CartStream("c")
    s.handle(EcgMsg(0, 0, np.zeros((500, 12), dtype=np.int32)), now=0.0, mono=0.0)
    s.handle(HelloMsg(0, 1000, 12, "x", "y"), now=10.0, mono=10.0)
    s.handle(HelloMsg(0, 250, 12, "x", "y"), now=10.5, mono=10.5)
    out = s.handle(EcgMsg(0, 0, np.zeros((100, 12), dtype=np.int32)), now=10.6, mono=10.6)
    (block,) = [o for o in out if isinstance(o, SampleBlock)]
    (gap,) = [o for o in out if isinstance(o, Gap)]
    # 500 samples at 500 Hz = 1 s = 250 samples at 250 Hz; then 10.6 s at 250 Hz
    assert block.fs == 250.0 and gap.first_seq == 250
    assert gap.end_seq == block.seq == 250 + round(10.6 * 250)
    assert gap.reason == "sample rate changed from 1000 to 250 Hz"


def test_continuation_is_where_numbering_goes_on() -> None:
    g = SequenceGuard(FS)
    assert g.continuation() is None
    g.judge(100, 50, 2.0)
    assert g.continuation() == (150, 2.0)
    g.new_stream(900, 3.0, "announced")
    assert g.continuation() == (900, 3.0)  # a new stream announced counts first
