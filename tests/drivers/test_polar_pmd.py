"""Polar PMD encoder/decoder and the ECG stream state, fed bytes."""

from __future__ import annotations

import contextlib
import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock, concat_blocks
from core.events import Gap
from core.units import EPOCH_2000 as PMD_EPOCH_POSIX
from drivers.polar_pmd import (
    PmdDecodeError,
    PmdEcgFrame,
    PmdMeasurement,
    PmdOp,
    PmdStatus,
    decode_ecg_frame,
    encode_ecg_frame,
    get_settings_command,
    parse_control_response,
    parse_data_frame,
    parse_features,
    parse_settings,
    start_ecg_command,
    stop_command,
)
from drivers.polar_stream import PmdEcgStream

FS = 130
PERIOD_NS = 1e9 / FS
T0_NS = 817_000_000_000_000_000  # 2025-11-22-ish, ns since 2000


def ecg_bytes(last_ts_ns: int, uv: list[int] | np.ndarray) -> bytes:
    """An ECG frame built by hand (not with the encoder under test)."""
    payload = b"".join(int(v).to_bytes(3, "little", signed=True) for v in uv)
    return bytes([0]) + struct.pack("<Q", last_ts_ns) + bytes([0]) + payload


# --- commands and control point ------------------------------------------------------


def test_commands_match_polar_documentation() -> None:
    assert start_ecg_command() == bytes.fromhex("02 00 00 01 82 00 01 01 0E 00")
    assert stop_command() == bytes.fromhex("03 00")
    assert get_settings_command() == bytes.fromhex("01 00")


def test_control_point_response() -> None:
    r = parse_control_response(bytes.fromhex("F0 02 00 00 00"))
    assert (r.op, r.measurement, r.status, r.ok, r.more) == (
        PmdOp.START,
        PmdMeasurement.ECG,
        PmdStatus.SUCCESS,
        True,
        False,
    )
    r = parse_control_response(bytes.fromhex("F0 02 00 06"))
    assert r.status is PmdStatus.ALREADY_IN_STATE and r.status_name == "ALREADY_IN_STATE"
    assert not r.ok
    assert parse_control_response(bytes.fromhex("F0 02 00 63")).status_name == "UNKNOWN_99"


def test_settings_response() -> None:
    r = parse_control_response(bytes.fromhex("F0 01 00 00 00 00 01 82 00 01 01 0E 00"))
    assert parse_settings(r.params) == {0: (130,), 1: (14,)}
    with pytest.raises(PmdDecodeError):
        parse_settings(bytes.fromhex("00 02 82 00"))


def test_features() -> None:
    assert parse_features(bytes.fromhex("0F 05 00")) == {PmdMeasurement.ECG, PmdMeasurement.ACC}
    with pytest.raises(PmdDecodeError):
        parse_features(b"\xf0\x01")


@pytest.mark.parametrize("data", [b"", b"\xf0\x02\x00", b"\x0f\x02\x00\x00"])
def test_bad_control_responses(data: bytes) -> None:
    with pytest.raises(PmdDecodeError):
        parse_control_response(data)


# --- data frames ----------------------------------------------------------------------


def test_ecg_frame_header_and_sign_extension() -> None:
    uv = [0, 1, -1, 1000, -1000, (1 << 23) - 1, -(1 << 23), 0x7F, -0x80, 0x8000]
    frame = decode_ecg_frame(ecg_bytes(T0_NS, uv))
    assert frame.timestamp_ns == T0_NS
    assert frame.samples_uv.dtype == np.int32
    assert frame.samples_uv.tolist() == uv
    assert not frame.samples_uv.flags.writeable


def test_timestamp_is_ns_since_2000() -> None:
    # 2025-01-01T00:00:00Z = POSIX 1735689600
    ts = (1_735_689_600 - int(PMD_EPOCH_POSIX)) * 1_000_000_000
    head = parse_data_frame(ecg_bytes(ts, [1]))
    assert head.timestamp_ns / 1e9 + PMD_EPOCH_POSIX == 1_735_689_600
    assert (head.measurement, head.frame_type, head.compressed) == (0, 0, False)


def test_encoder_round_trip_and_clip() -> None:
    uv = np.array([5, -5, 9_000_000, -9_000_000])
    out = decode_ecg_frame(encode_ecg_frame(42, uv))
    assert out.samples_uv.tolist() == [5, -5, (1 << 23) - 1, -(1 << 23)]
    assert encode_ecg_frame(42, uv[:2]) == ecg_bytes(42, [5, -5])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 9,  # header short by one
        ecg_bytes(1, [])[:10],  # no samples
        ecg_bytes(1, [1, 2])[:-1],  # payload not n * 3
        b"\x02" + ecg_bytes(1, [1])[1:],  # ACC, not ECG
        ecg_bytes(1, [1])[:9] + b"\x80" + ecg_bytes(1, [1])[10:],  # compressed
        ecg_bytes(1, [1])[:9] + b"\x01" + ecg_bytes(1, [1])[10:],  # unknown frame type
    ],
)
def test_malformed_frames_raise_decode_error(data: bytes) -> None:
    with pytest.raises(PmdDecodeError):
        decode_ecg_frame(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    for fn in (decode_ecg_frame, parse_control_response, parse_features):
        with contextlib.suppress(PmdDecodeError):
            fn(data)
    with contextlib.suppress(PmdDecodeError):
        parse_settings(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=73),
    st.integers(0, 2**64 - 1),
    st.data(),
)
def test_fuzz_mutated_frames(uv: list[int], ts: int, data: st.DataObject) -> None:
    raw = bytearray(ecg_bytes(ts, uv))
    assert decode_ecg_frame(bytes(raw)).samples_uv.tolist() == uv
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[data.draw(st.integers(0, len(raw))) :]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=5))
    stream = PmdEcgStream("p")
    try:
        frame = decode_ecg_frame(bytes(raw))
    except PmdDecodeError:
        return
    assert frame.n == (len(raw) - 10) // 3
    stream.feed(bytes(raw), 0.0)


# --- stream ---------------------------------------------------------------------------


def make_frames(n_frames: int, per_frame: int = 73, seed: int = 1) -> list[PmdEcgFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        uv = rng.integers(-3000, 3000, per_frame)
        last = T0_NS + round(((i + 1) * per_frame - 1) * PERIOD_NS)
        frames.append(decode_ecg_frame(ecg_bytes(last, uv)))
    return frames


def blocks_and_gaps(items: list[SampleBlock | Gap]) -> tuple[list[SampleBlock], list[Gap]]:
    return (
        [x for x in items if isinstance(x, SampleBlock)],
        [x for x in items if isinstance(x, Gap)],
    )


def test_stream_contiguous_seq_and_mv() -> None:
    frames = make_frames(5)
    stream = PmdEcgStream("dev", fs=FS, lead="ECG")
    out: list[SampleBlock | Gap] = []
    for i, f in enumerate(frames):
        out += stream.feed(ecg_bytes(f.timestamp_ns, f.samples_uv), 1000.0 + i * 73 / FS)
    blocks, gaps = blocks_and_gaps(out)
    assert gaps == []
    whole = concat_blocks(blocks)  # raises unless contiguous
    assert whole.seq == 0 and whole.n == 5 * 73 and whole.leads == ("ECG",)
    expected = np.concatenate([f.samples_uv for f in frames]) / 1000.0
    np.testing.assert_allclose(whole.lead("ECG"), expected, rtol=1e-6)
    # the first frame's last sample is taken to be at the host time of arrival
    assert whole.time_of(72) == pytest.approx(1000.0)
    assert stream.next_seq == 5 * 73


@pytest.mark.parametrize("grouping", [[1] * 12, [12], [3, 4, 5], [5, 1, 6], [2] * 6])
def test_stream_any_grouping_same_blocks_and_gaps(grouping: list[int]) -> None:
    frames = make_frames(14)
    del frames[6:8]  # two frames lost: one gap
    ref = PmdEcgStream("dev")
    ref_items: list[SampleBlock | Gap] = []
    for f in frames:
        ref_items += ref.feed_frames([f], 50.0)
    stream = PmdEcgStream("dev")
    items: list[SampleBlock | Gap] = []
    pos = 0
    for size in grouping:
        items += stream.feed_frames(frames[pos : pos + size], 50.0)
        pos += size
    rb, rg = blocks_and_gaps(ref_items)
    b, g = blocks_and_gaps(items)
    assert g == rg and len(g) == 1
    whole_ref = np.concatenate([x.samples for x in rb])
    whole = np.concatenate([x.samples for x in b])
    np.testing.assert_array_equal(whole, whole_ref)
    assert next(x.seq for x in b if x.seq >= g[0].end_seq) == g[0].end_seq
    # blocks tile [0, end) apart from the gap, in order, with times on one grid
    covered = [*sorted((x.seq, x.end_seq) for x in b), (g[0].first_seq, g[0].end_seq)]
    covered.sort()
    assert covered[0][0] == 0
    assert all(a[1] == c[0] for a, c in itertools.pairwise(covered))
    for x in b:
        assert x.start == pytest.approx(ref.utc_of(x.seq))


def test_skipped_frame_gives_exact_gap() -> None:
    frames = make_frames(4)
    stream = PmdEcgStream("dev")
    stream.feed_frames(frames[:2], 10.0)
    out = stream.feed_frames(frames[3:], 11.0)
    blocks, gaps = blocks_and_gaps(out)
    assert gaps == [
        Gap("dev", 146, 219, stream.utc_of(146), stream.utc_of(219), "pmd timestamp jump", True)
    ]
    assert gaps[0].n_samples == 73
    assert [(b.seq, b.n) for b in blocks] == [(219, 73)]
    assert gaps[0].start == pytest.approx(10.0 - 72 / FS + 146 / FS)


def test_jitter_and_duplicates_are_absorbed() -> None:
    frames = make_frames(3)
    stream = PmdEcgStream("dev")
    jittered = PmdEcgFrame(frames[1].timestamp_ns + round(2 * PERIOD_NS), frames[1].samples_uv)
    out = stream.feed_frames([frames[0], jittered, frames[1], frames[2]], 0.0)
    blocks, gaps = blocks_and_gaps(out)
    assert gaps == [] and stream.duplicates == 1
    assert [(b.seq, b.n) for b in blocks] == [(0, 3 * 73)]


def test_device_clock_reset_uses_host_clock() -> None:
    frames = make_frames(2)
    stream = PmdEcgStream("dev")
    stream.feed_frames([frames[0]], 100.0)
    restarted = PmdEcgFrame(1_000_000, frames[1].samples_uv)  # device clock back near 0
    out = stream.feed_frames([restarted], 110.0)  # 10 s later on the host
    blocks, gaps = blocks_and_gaps(out)
    assert len(gaps) == 1 and gaps[0].n_samples == 10 * FS - 73
    assert blocks[0].seq == gaps[0].end_seq
    # and streaming goes on from the new device clock
    nxt = PmdEcgFrame(1_000_000 + round(73 * PERIOD_NS), frames[0].samples_uv)
    assert blocks_and_gaps(stream.feed_frames([nxt], 110.6))[1] == []


def test_block_starts_are_monotonic_even_if_host_clock_steps_back() -> None:
    frames = make_frames(4)
    stream = PmdEcgStream("dev")
    starts = [b.start for i, f in enumerate(frames) for b in stream.feed_frames([f], 100.0 - i)]
    assert starts == sorted(starts)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3 * 73, 20 * 73), st.integers(1, 80)), min_size=1, max_size=25),
    st.lists(st.integers(1, 5), min_size=1, max_size=25),
)
def test_fuzz_stream_output_always_tiles(steps: list[tuple[int, int]], sizes: list[int]) -> None:
    """Whatever the timestamps do (jumps, repeats, going back), output tiles the seq axis."""
    frames, ts = [], T0_NS
    for advance, n in steps:
        ts += round(advance * PERIOD_NS)
        frames.append(PmdEcgFrame(ts, np.zeros(n, dtype=np.int32)))
    stream = PmdEcgStream("dev")
    items: list[SampleBlock | Gap] = []
    pos, now = 0, 100.0
    for size in sizes * len(frames):
        if pos >= len(frames):
            break
        items += stream.feed_frames(frames[pos : pos + size], now)
        pos, now = pos + size, now + 0.5
    spans = [
        (x.seq, x.end_seq) if isinstance(x, SampleBlock) else (x.first_seq, x.end_seq)
        for x in items
    ]
    assert spans[0][0] == 0 and spans[-1][1] == stream.next_seq
    assert all(a[1] == b[0] and b[1] > b[0] for a, b in itertools.pairwise(spans))
    starts = [x.start for x in items]
    assert starts == sorted(starts)


def test_one_out_of_line_timestamp_shifts_nothing() -> None:
    """A single absurd timestamp (an hour, ten days, nineteen years ahead) is not believed:
    no fake gap, and every later sample keeps its number and time."""
    for ahead_s in (3600, 10 * 86400, 19 * 365 * 86400):
        frames = make_frames(4)
        stream = PmdEcgStream("dev")
        bad = PmdEcgFrame(frames[1].timestamp_ns + ahead_s * 10**9, frames[1].samples_uv)
        out = stream.feed_frames([frames[0]], 100.0)
        for i, f in enumerate([bad, frames[2], frames[3]]):
            out += stream.feed_frames([f], 100.6 + 0.6 * i)
        blocks, gaps = blocks_and_gaps(out)
        assert gaps == [] and stream.timestamps_rejected == 1
        # every sample at its own number (the bad frame is placed once the next one came)
        assert [(b.seq, b.end_seq) for b in blocks] == [(0, 73), (73, 219), (219, 292)]
        got = np.concatenate([b.samples[:, 0] for b in blocks])
        sent = np.concatenate([f.samples_uv for f in frames]) / 1000.0
        np.testing.assert_allclose(got, sent, atol=1e-6)


def test_a_loss_next_to_an_untrusted_timestamp_numbers_nothing_wrong() -> None:
    """A frame lost just before a frame whose timestamp is absurd: nobody can tell on
    which side of that frame the loss was, so its samples go into the gap with the lost
    ones; every sample delivered keeps its true number."""
    frames = make_frames(5)
    stream = PmdEcgStream("dev")
    bad = PmdEcgFrame(frames[2].timestamp_ns + 3600 * 10**9, frames[2].samples_uv)
    out = stream.feed_frames([frames[0]], 100.0)
    for i, f in enumerate([bad, frames[3], frames[4]]):  # frames[1] lost in the air
        out += stream.feed_frames([f], 100.6 + 0.6 * i)
    blocks, gaps = blocks_and_gaps(out)
    assert [(g.first_seq, g.end_seq) for g in gaps] == [(73, 219)]  # lost + the unplaceable
    assert [(b.seq, b.end_seq) for b in blocks] == [(0, 73), (219, 292), (292, 365)]
    np.testing.assert_allclose(blocks[1].samples[:, 0], frames[3].samples_uv / 1000.0)


def test_lost_notifications_of_variable_sizes_are_found() -> None:
    """Frames of 5 to 73 samples (the H10 when the link is busy); every lost one is a gap of
    exactly its samples, and later samples keep their true numbers."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(5, 74, 43)
    lost = set(rng.choice(43, 6, replace=False).tolist())
    ts, frames = T0_NS, []
    for n in sizes:
        ts += round(int(n) * PERIOD_NS)
        frames.append(PmdEcgFrame(ts, np.zeros(int(n), dtype=np.int32)))
    stream = PmdEcgStream("dev")
    out = []
    for i, f in enumerate(frames):
        if i not in lost:
            out += stream.feed_frames([f], 100.0 + 0.1 * i)
    _, gaps = blocks_and_gaps(out)
    expected = sum(int(sizes[i]) for i in lost if i != 0)
    assert sum(g.n_samples for g in gaps) == expected
    assert stream.next_seq == int(sizes.sum()) - (int(sizes[0]) if 0 in lost else 0)


def test_resume_numbers_on_after_a_gateway_restart() -> None:
    from core.events import StreamPosition

    frames = make_frames(1)
    stream = PmdEcgStream("dev")
    stream.resume(StreamPosition(5000, 1000.0, 0, FS))
    out = stream.feed_frames(frames, 1060.0)
    blocks, gaps = blocks_and_gaps(out)
    (gap,) = gaps
    assert gap.first_seq == 5000 and gap.reason == "gateway not running"
    assert blocks[0].seq == gap.end_seq and blocks[0].start == pytest.approx(1060.0 - 72 / FS)


def test_a_clock_set_back_loses_nothing_and_a_restart_reason_does_not_stick() -> None:
    """The device clock set back 1 s mid-stream: the frame is a clock step, not a repeat
    (its samples are new), numbering goes on from the new clock; a restart the host clock
    says cost nothing leaves no reason behind for the next ordinary gap."""
    frames = make_frames(6)
    stream = PmdEcgStream("dev")
    back = [PmdEcgFrame(f.timestamp_ns - 10**9, f.samples_uv) for f in frames[1:3]]
    out = stream.feed_frames([frames[0]], 100.0)
    out += stream.feed_frames([back[0]], 100.56) + stream.feed_frames([back[1]], 101.12)
    blocks, gaps = blocks_and_gaps(out)
    assert gaps == [] and stream.clock_steps == 1 and stream.duplicates == 0
    assert [(b.seq, b.n) for b in blocks] == [(0, 73), (73, 73), (146, 73)]
    # a restart (clock back 60 s) that arrives on time, then a frame lost in the air
    later = [PmdEcgFrame(f.timestamp_ns - 60 * 10**9, f.samples_uv) for f in frames[3:6]]
    out = stream.feed_frames([later[0]], 101.68) + stream.feed_frames([later[2]], 102.8)
    _, gaps = blocks_and_gaps(out)
    assert [(g.first_seq, g.n_samples, g.reason) for g in gaps] == [
        (292, 73, "pmd timestamp jump")
    ]


def test_a_clock_set_forward_is_followed_and_later_losses_are_still_found() -> None:
    """The device clock set forward 60 s: the first frame after the step is held, the
    next agrees with it, so the clock is followed from there; a 30 s disconnection
    afterwards is measured exactly (before, every later timestamp was rejected and no
    loss was seen any more)."""
    frames = make_frames(4)
    stream = PmdEcgStream("dev")
    step = 60 * 10**9
    moved = [PmdEcgFrame(f.timestamp_ns + step, f.samples_uv) for f in frames[1:]]
    out = stream.feed_frames([frames[0]], 100.0)
    out += stream.feed_frames([moved[0]], 100.56) + stream.feed_frames([moved[1]], 101.12)
    away = PmdEcgFrame(moved[2].timestamp_ns + 30 * 10**9, moved[2].samples_uv)
    out += stream.feed_frames([away], 131.68)
    blocks, gaps = blocks_and_gaps(out)
    assert stream.clock_steps == 1 and stream.timestamps_rejected == 1
    assert [(b.seq, b.n) for b in blocks] == [(0, 73), (73, 146), (219 + 30 * FS, 73)]
    assert [(g.first_seq, g.n_samples) for g in gaps] == [(219, 30 * FS)]
