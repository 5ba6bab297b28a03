"""The MQTT v5 codec: known bytes, round trips at every split point, garbage refused cleanly."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import (
    ConnAck,
    Connect,
    Disconnect,
    PacketReader,
    PingReq,
    PingResp,
    Prop,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    decode_varint,
    encode,
    encode_varint,
)
from gateway.mqtt.errors import MqttProtocolError

PACKETS = [
    ConnAck(True, 0, {Prop.RECEIVE_MAXIMUM: 10, Prop.ASSIGNED_CLIENT_ID: "x"}),
    Publish("ecg/v1/gw/p1/strip", b'{"a": 1}', 1, True, True, 7, {
        Prop.PAYLOAD_FORMAT: 1,
        Prop.USER_PROPERTY: [("msg_id", "m-1"), ("seq", "3")],
    }),
    Publish("ecg/v1/gw/p1/live", b"", 0),
    PubAck(7, 0x87, {Prop.REASON_STRING: "denied"}),
    SubAck(3, (1, 0x80)),
    PingResp(),
    PingReq(),
    Disconnect(0x8E),
]  # fmt: skip


@pytest.mark.parametrize("n", [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455])
def test_varint_boundaries(n: int) -> None:
    data = encode_varint(n)
    assert decode_varint(data) == (n, len(data))


def test_connect_bytes_follow_the_specification() -> None:
    pkt = Connect("gw1", keepalive_s=30, session_expiry_s=3600, will=Publish("s", b"off", 1, True),
                  username="u", password=b"p")  # fmt: skip
    data = encode(pkt)
    assert data[0] == 0x10  # CONNECT
    body = data[2:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain/QoS 1/flag
    assert body[8:10] == b"\x00\x1e"  # keepalive 30 s
    assert body[10:16] == b"\x05\x11\x00\x00\x0e\x10"  # session expiry 3600 s
    assert body[16:21] == b"\x00\x03gw1"
    assert body.endswith(b"\x00\x01u\x00\x01p")


@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: type(p).__name__)
def test_round_trip_at_every_split_point(packet) -> None:
    data = encode(packet)
    for cut in range(len(data) + 1):
        reader = PacketReader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert got == [packet]
    one_by_one = PacketReader()
    assert [p for b in data for p in one_by_one.feed(bytes([b]))] == [packet]


def test_oversized_packet_is_refused() -> None:
    reader = PacketReader(max_packet=100)
    with pytest.raises(MqttProtocolError):
        reader.feed(encode(Publish("t", b"x" * 200)))


def test_subscribe_encodes_filters() -> None:
    data = encode(Subscribe(5, (("ecg/v1/gw/+/ack", 1),)))
    assert data[0] == 0x82 and data.endswith(b"ecg/v1/gw/+/ack\x01")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_protocol_errors(data: bytes) -> None:
    reader = PacketReader(max_packet=4096)
    with contextlib.suppress(MqttProtocolError):
        reader.feed(data)
