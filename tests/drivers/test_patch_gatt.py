"""Patch profile codec, gap ledger and stream: round trips, fuzz, exactly-once delivery."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.patch_gatt import (
    DeviceTime,
    PatchDecodeError,
    PatchStatus,
    RacpOp,
    RacpResponse,
    RacpStatus,
    SymptomPress,
    decode_device_time,
    decode_ecg_frame,
    decode_racp_command,
    decode_racp_response,
    decode_status,
    decode_symptom,
    encode_device_time,
    encode_ecg_frame,
    encode_racp_response,
    encode_report_extent,
    encode_request_range,
    encode_status,
    encode_symptom,
)
from drivers.patch_stream import GapLedger, PatchStream

RNG = np.random.default_rng(3)


def test_round_trips() -> None:
    uv = RNG.integers(-5000, 5000, 50) * 2
    f = decode_ecg_frame(encode_ecg_frame(123456, uv, backfill=True))
    assert f.first_seq == 123456 and f.backfill and not f.lead_off
    np.testing.assert_array_equal(f.samples_uv, uv)
    t = DeviceTime(850_000_000_123_456, 42)
    assert decode_device_time(encode_device_time(t)) == t
    assert abs(t.posix - (946_684_800 + 850_000_000.123456)) < 1e-6
    s = PatchStatus(87, True, 12, 99)
    assert decode_status(encode_status(s)) == s
    p = SymptomPress(3, 777, 5)
    assert decode_symptom(encode_symptom(p)) == p
    assert decode_racp_command(encode_request_range(10, 20)) == (RacpOp.REQUEST_RANGE, 10, 20)
    assert decode_racp_command(encode_report_extent()) == (RacpOp.REPORT_EXTENT, 0, 0)
    for r in (
        RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, 5, 900),
        RacpResponse(RacpOp.RANGE_DONE, RacpStatus.NOT_HELD, 100, 200),
    ):
        assert decode_racp_response(encode_racp_response(r)) == r


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decoders_never_raise_anything_else(data: bytes) -> None:
    for decode in (
        decode_ecg_frame,
        decode_device_time,
        decode_status,
        decode_symptom,
        decode_racp_response,
        decode_racp_command,
    ):
        with contextlib.suppress(PatchDecodeError):
            decode(data)


def test_ledger_gap_fill_and_loss() -> None:
    led = GapLedger()
    assert led.receive(0, 100) == [(0, 100)]
    assert led.receive(150, 200) == [(150, 200)]  # 100..150 missing
    assert led.receive(300, 350) == [(300, 350)]  # 200..300 missing
    assert led.to_request() == [(100, 150), (200, 300)]
    assert led.to_request() == []  # already asked
    assert led.receive(90, 120) == [(100, 120)]  # 90..100 is a duplicate
    assert led.receive(320, 360) == [(350, 360)]
    led.retry()
    assert led.to_request() == [(120, 150), (200, 300)]
    assert led.expire(250) == [(120, 150), (200, 250)]
    assert led.missing == 50


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=5, max_size=60),
    st.lists(st.booleans(), min_size=5, max_size=60),
    st.randoms(use_true_random=False),
)
def test_stream_delivers_every_sample_exactly_once(sizes, dropped, rnd) -> None:
    """Frames lost live, then backfilled in random order and repeated: each sample once."""
    x = RNG.integers(-2000, 2000, sum(sizes)) * 2
    frames, pos = [], 0
    for n in sizes:
        frames.append((pos, x[pos : pos + n]))
        pos += n
    s = PatchStream("p1")
    s.ledger.want_from(0)  # the study starts at sample 0: even the first frames may be missing
    got = np.full(x.size, np.nan)
    count = np.zeros(x.size, int)

    def take(blocks) -> None:
        for b in blocks:
            got[b.seq : b.end_seq] = b.samples[:, 0] * 1000
            count[b.seq : b.end_seq] += 1

    for i, (first, chunk) in enumerate(frames):
        if not dropped[i % len(dropped)]:
            take(s.feed(decode_ecg_frame(encode_ecg_frame(first, chunk)), now=100.0))
    requested = s.ledger.to_request()
    backfill = [(a, b) for a, b in requested] * 2  # the patch answers twice
    rnd.shuffle(backfill)
    for a, b in backfill:
        frame = decode_ecg_frame(encode_ecg_frame(a, x[a:b], backfill=True))
        take(s.feed(frame, now=200.0))
    end = s.ledger.next_seq or 0
    assert s.ledger.missing == 0
    np.testing.assert_array_equal(count[:end], 1)
    np.testing.assert_allclose(got[:end], x[:end], atol=1e-3)


def test_lost_ranges_become_final_gaps_with_times() -> None:
    s = PatchStream("p1")
    s.set_time(DeviceTime(0, 0))
    s.feed(decode_ecg_frame(encode_ecg_frame(0, np.zeros(10, int))), now=0.0)
    s.feed(decode_ecg_frame(encode_ecg_frame(1000, np.zeros(10, int))), now=0.0)
    (gap,) = s.lost(oldest_held=600, now=0.0)
    assert (gap.first_seq, gap.end_seq, gap.final) == (10, 600, True)
    assert gap.start == pytest.approx(946_684_800 + 10 / 250)
    assert s.ledger.to_request() == [(600, 1000)]
