"""Cart serial protocol: framing, every split, garbage, corruption, stream gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from core.events import DeviceEvent, Gap, StageChanged
from drivers.cart_protocol import (
    BloodPressureMsg,
    CartDecoder,
    EcgMsg,
    FrameType,
    HelloMsg,
    LeadOffMsg,
    Phase,
    StageMsg,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_blood_pressure,
    encode_command,
    encode_ecg,
    encode_hello,
    encode_lead_off,
    encode_stage,
)
from drivers.cart_stream import CartStream

RNG = np.random.default_rng(7)


def _ecg(seq: int, first: int, n: int = 20) -> tuple[bytes, np.ndarray]:
    x = RNG.integers(-(1 << 23), 1 << 23, size=(n, 12))
    return encode_ecg(seq, first, x), x


def _session() -> tuple[bytes, list[np.ndarray]]:
    parts = [b"\x00", encode_hello(0, 500, "SN-1", "2.1")]
    xs = []
    for i in range(5):
        f, x = _ecg(i + 1, i * 20)
        parts.append(f)
        xs.append(x)
    parts.append(encode_stage(6, 100, 2, Phase.EXERCISE, 4.0, 12.0, "Bruce 2"))
    parts.append(encode_blood_pressure(7, 100, 150, 82))
    parts.append(encode_lead_off(8, 100, 0b1000000))
    return b"".join(parts), xs


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=700))
def test_cobs_round_trip(data: bytes) -> None:
    enc = cobs_encode(data)
    assert b"\x00" not in enc
    assert cobs_decode(enc) == data


def _types(msgs) -> list[type]:
    return [type(m) for m in msgs]


def test_whole_session_decodes() -> None:
    wire, xs = _session()
    dec = CartDecoder()
    msgs = dec.feed(wire)
    assert _types(msgs) == [HelloMsg] + [EcgMsg] * 5 + [StageMsg, BloodPressureMsg, LeadOffMsg]
    for m, x in zip(msgs[1:6], xs, strict=True):
        np.testing.assert_array_equal(m.samples_uv, x)
    assert msgs[6].speed_kmh == 4.0 and msgs[6].name == "Bruce 2"
    assert dec.errors == 0 and dec.stats["frames_ok"] == 9


def test_byte_by_byte_and_every_split_point() -> None:
    wire, _ = _session()
    want = CartDecoder().feed(wire)
    dec = CartDecoder()
    got = [m for b in wire for m in dec.feed(bytes([b]))]
    assert _types(got) == _types(want)
    for cut in range(1, len(wire)):
        dec = CartDecoder()
        got = dec.feed(wire[:cut]) + dec.feed(wire[cut:])
        assert [m.frame_seq for m in got] == [m.frame_seq for m in want], cut


@settings(max_examples=50)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_random_splits(sizes: list[int]) -> None:
    wire, _ = _session()
    dec = CartDecoder()
    got, pos, i = [], 0, 0
    while pos < len(wire):
        n = sizes[i % len(sizes)]
        got += dec.feed(wire[pos : pos + n])
        pos += n
        i += 1
    assert len(got) == 9 and dec.errors == 0


def test_corrupted_frame_counted_and_stream_goes_on() -> None:
    wire, _ = _session()
    f2, _ = _ecg(9, 100)
    bad = bytearray(f2)
    bad[30] ^= 0x5A
    if bad[30] == 0:
        bad[30] = 1
    f3, x3 = _ecg(10, 120)
    dec = CartDecoder()
    msgs = dec.feed(wire + bytes(bad) + b"\x13\x37garbage\x00" + f3)
    assert dec.stats["crc_errors"] + dec.stats["cobs_errors"] >= 1
    assert dec.errors == 2  # the corrupted frame and the garbage
    np.testing.assert_array_equal(msgs[-1].samples_uv, x3)


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_garbage_never_raises(junk: bytes) -> None:
    dec = CartDecoder()
    dec.feed(junk)
    f, _ = _ecg(1, 0)
    msgs = dec.feed(b"\x00" + f)
    assert isinstance(msgs[-1], EcgMsg)


def test_unknown_type_and_wrong_length_counted() -> None:
    from drivers.cart_protocol import encode_frame

    dec = CartDecoder()
    dec.feed(b"\x00" + encode_frame(0x42, 1, b"xx") + encode_frame(FrameType.ECG, 2, b"\x00" * 9))
    assert dec.stats["unknown_type"] == 1 and dec.stats["bad_length"] == 1
    assert dec.feed(encode_command(FrameType.START))[0].command == FrameType.START


def test_stream_blocks_gaps_and_events() -> None:
    s = CartStream("cart-1")
    out = []
    for first in (0, 20, 60):  # frame 40..60 lost
        out += s.handle(EcgMsg(0, first, np.full((20, 12), 1500)), now=1000.0 + first / 500)
    out += s.handle(StageMsg(0, 70, 2, Phase.EXERCISE, 4.0, 12.0, "Bruce 2"), now=1000.2)
    blocks = [o for o in out if isinstance(o, SampleBlock)]
    gaps = [o for o in out if isinstance(o, Gap)]
    (event,) = [o for o in out if isinstance(o, DeviceEvent)]
    assert [b.seq for b in blocks] == [0, 20, 60]
    assert blocks[0].samples[0, 0] == pytest.approx(1.5)
    assert blocks[2].start == pytest.approx(blocks[0].start + 60 / 500)
    assert (gaps[0].first_seq, gaps[0].end_seq, gaps[0].final) == (40, 60, True)
    assert isinstance(event, StageChanged) and event.seq == 70 and event.stage == 2
    again = s.handle(EcgMsg(0, 70, np.zeros((20, 12))), now=1000.3)  # 70..80 sent twice
    assert (again[0].seq, again[0].n) == (80, 10) and s.counters["duplicate_samples"] == 10


def _body_without_zeros(size: int, ftype: int = 0x42) -> bytes:
    """A whole body of ``size`` bytes (CRC included) with no zero byte in it."""
    import struct

    for fill in range(1, 256):
        head = bytes([1, ftype, 0x01, 0x01]) + bytes([fill]) * (size - 6)
        crc = struct.pack("<H", crc16(head))
        if 0 not in crc:
            return head + crc
    raise AssertionError("no fill byte avoids a zero CRC byte")


def test_the_largest_body_is_decoded_whatever_its_cobs_length() -> None:
    """A 4,096-byte body with no zero byte encodes to 4,113 bytes (one code byte per 254,
    plus one): the decoder takes it (here: an unknown type), and refuses one byte more."""
    from drivers.cart_protocol import MAX_BODY, cobs_max_len

    largest = cobs_encode(_body_without_zeros(MAX_BODY))
    assert len(largest) == cobs_max_len(MAX_BODY) == 4113
    dec = CartDecoder()
    assert dec.feed(b"\x00" + largest + b"\x00") == []
    assert dec.stats["unknown_type"] == 1 and dec.stats["too_long"] == 0
    dec.feed(cobs_encode(_body_without_zeros(MAX_BODY + 1)) + b"\x00")
    assert dec.stats["too_long"] == 1
    # a body that decodes longer than 4,096 bytes from a short enough encoding: refused too
    zeros = cobs_encode(b"\x00" * (MAX_BODY + 1))
    assert len(zeros) <= cobs_max_len(MAX_BODY)
    dec.feed(zeros + b"\x00")
    assert dec.stats["too_long"] == 2
