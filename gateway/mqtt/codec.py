"""MQTT v5 packets: bytes ↔ small frozen dataclasses (pure, no I/O).

What the gateway's client sends and receives (OASIS MQTT 5.0): CONNECT with a Will,
CONNACK, PUBLISH at QoS 0 and 1, PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and
DISCONNECT, each with its properties. :class:`PacketReader` takes bytes as they come off
the socket (any split) and returns whole packets; a packet that breaks the
specification raises :class:`~gateway.mqtt.errors.MqttProtocolError`.

Why our own codec and not paho's: the delivery window must decide every (re)send itself
(MQTT v5 allows re-sending only after a reconnect), and the keepalive must be answered
by the event loop that does the work, so that a frozen gateway misses its PINGREQ and
the broker publishes its Last Will. paho's network thread answers for a frozen process.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from gateway.mqtt.errors import MqttProtocolError

__all__ = [
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketReader",
    "PacketType",
    "PingReq",
    "PingResp",
    "Prop",
    "PubAck",
    "Publish",
    "SubAck",
    "Subscribe",
    "decode_varint",
    "encode",
    "encode_varint",
    "reason_name",
    "topic_matches",
]

MAX_VARINT = 268_435_455


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class Prop(IntEnum):
    """Property identifiers used here (MQTT 5.0, 2.2.2.2)."""

    PAYLOAD_FORMAT = 0x01
    MESSAGE_EXPIRY = 0x02
    CONTENT_TYPE = 0x03
    SESSION_EXPIRY = 0x11
    ASSIGNED_CLIENT_ID = 0x12
    SERVER_KEEP_ALIVE = 0x13
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27


# property id -> value kind: b byte, h u16, i u32, v varint, s string, d binary, p string pair
_KINDS = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i", 0x12: "s",
    0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s",
    0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i",
    0x28: "b", 0x29: "b", 0x2A: "b",
}  # fmt: skip

_REASONS = {
    0x00: "Success", 0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password",
    0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned",
    0x8B: "Server shutting down", 0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout", 0x8E: "Session taken over", 0x90: "Topic Name invalid",
    0x93: "Receive Maximum exceeded", 0x95: "Packet too large", 0x97: "Quota exceeded",
    0x99: "Payload format invalid", 0x9C: "Use another server", 0x9D: "Server moved",
    0x9F: "Connection rate exceeded",
}  # fmt: skip


def reason_name(code: int) -> str:
    """A reason code as MQTT names it, e.g. ``Not authorized (0x87)``."""
    return f"{_REASONS.get(code, 'Reason')} ({code:#04x})"


Props = dict[int, object]
"""Properties by identifier; user properties are a list of (name, value) pairs."""


# --- primitives ---------------------------------------------------------------------------
def encode_varint(n: int) -> bytes:
    """MQTT variable byte integer."""
    if not 0 <= n <= MAX_VARINT:
        raise MqttProtocolError(f"variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, next position) of the variable byte integer at ``pos``."""
    value = 0
    for i in range(4):
        if pos + i >= len(buf):
            raise MqttProtocolError("truncated variable byte integer")
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos + i + 1
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def _bin(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise MqttProtocolError("string or binary longer than 65535 bytes")
    return struct.pack(">H", len(data)) + data


def _str(text: str) -> bytes:
    return _bin(text.encode("utf-8"))


class _Cursor:
    """Reads fields from a packet body; every overrun is a protocol error."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise MqttProtocolError("packet shorter than its fields")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def varint(self) -> int:
        value, self.pos = decode_varint(self.buf, self.pos)
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MqttProtocolError("invalid UTF-8 string") from exc

    def rest(self) -> bytes:
        out = self.buf[self.pos :]
        self.pos = len(self.buf)
        return out

    @property
    def more(self) -> bool:
        return self.pos < len(self.buf)

    def props(self) -> Props:
        end = self.varint() + self.pos
        out: Props = {}
        while self.pos < end:
            pid = self.varint()
            kind = _KINDS.get(pid)
            if kind == "p":
                pairs = out.setdefault(pid, [])
                assert isinstance(pairs, list)
                pairs.append((self.text(), self.text()))
                continue
            read = _READ.get(kind or "")
            if read is None:
                raise MqttProtocolError(f"unknown property {pid:#04x}")
            out[pid] = read(self)
        if self.pos != end:
            raise MqttProtocolError("properties overrun their length")
        return out


#: How a property of each kind (:data:`_KINDS`) is read: byte, two- and four-byte integer,
#: variable byte integer, UTF-8 string, binary data.
_READ: dict[str, Callable[[_Cursor], object]] = {
    "b": _Cursor.u8, "h": _Cursor.u16, "i": _Cursor.u32, "v": _Cursor.varint,
    "s": _Cursor.text, "d": _Cursor.binary,
}  # fmt: skip


def _props(props: Props) -> bytes:
    out = bytearray()
    for pid, value in props.items():
        kind = _KINDS[pid]
        if kind == "p":
            for name, val in value:  # type: ignore[attr-defined]
                out += encode_varint(pid) + _str(name) + _str(val)
            continue
        out += encode_varint(pid)
        if kind == "b":
            out.append(int(value))  # type: ignore[call-overload]
        elif kind == "h":
            out += struct.pack(">H", value)
        elif kind == "i":
            out += struct.pack(">I", value)
        elif kind == "v":
            out += encode_varint(int(value))  # type: ignore[call-overload]
        elif kind == "s":
            out += _str(str(value))
        else:
            out += _bin(bytes(value))  # type: ignore[call-overload]
    return encode_varint(len(out)) + bytes(out)


# --- packets ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keepalive_s: int = 60
    clean_start: bool = False
    session_expiry_s: int = 0
    receive_maximum: int | None = None
    will: Publish | None = None  # published by the broker if the connection dies uncleanly
    username: str | None = None
    password: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason: int
    props: Props = field(default_factory=dict)

    @property
    def receive_maximum(self) -> int:
        """How many QoS 1 messages the broker takes unacknowledged (65535 when unsaid)."""
        return int(self.props.get(Prop.RECEIVE_MAXIMUM, 65535))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    props: Props = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason: int = 0
    props: Props = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]  # (filter, maximum QoS)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reasons: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: int = 0
    props: Props = field(default_factory=dict)


Packet = Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | PingReq | PingResp | Disconnect


def _frame(ptype: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([ptype << 4 | flags]) + encode_varint(len(body)) + body


def encode(p: Packet) -> bytes:
    """The bytes of one packet."""
    if isinstance(p, Publish):
        body = _str(p.topic)
        if p.qos:
            body += struct.pack(">H", p.packet_id or 0)
        flags = (p.dup << 3) | (p.qos << 1) | int(p.retain)
        return _frame(PacketType.PUBLISH, flags, body + _props(p.props) + p.payload)
    if isinstance(p, PubAck):
        return _frame(
            PacketType.PUBACK, 0, struct.pack(">HB", p.packet_id, p.reason) + _props(p.props)
        )
    if isinstance(p, Connect):
        return _frame(PacketType.CONNECT, 0, _connect_body(p))
    if isinstance(p, ConnAck):
        return _frame(
            PacketType.CONNACK, 0, bytes([int(p.session_present), p.reason]) + _props(p.props)
        )
    if isinstance(p, Subscribe):
        body = struct.pack(">H", p.packet_id) + _props({})
        body += b"".join(_str(f) + bytes([q]) for f, q in p.topics)
        return _frame(PacketType.SUBSCRIBE, 2, body)
    if isinstance(p, SubAck):
        return _frame(
            PacketType.SUBACK, 0, struct.pack(">H", p.packet_id) + _props({}) + bytes(p.reasons)
        )
    if isinstance(p, PingReq):
        return _frame(PacketType.PINGREQ, 0, b"")
    if isinstance(p, PingResp):
        return _frame(PacketType.PINGRESP, 0, b"")
    return _frame(PacketType.DISCONNECT, 0, bytes([p.reason]) + _props(p.props))


def _connect_body(p: Connect) -> bytes:
    """Variable header (name, level 5, flags, keepalive, properties), then the payload:
    client id, the Will (properties, topic, payload), user name, password."""
    flags = 0x02 if p.clean_start else 0
    props: Props = {}
    if p.session_expiry_s:
        props[Prop.SESSION_EXPIRY] = p.session_expiry_s
    if p.receive_maximum:
        props[Prop.RECEIVE_MAXIMUM] = p.receive_maximum
    payload = _str(p.client_id)
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        payload += _props(p.will.props) + _str(p.will.topic) + _bin(p.will.payload)
    if p.username is not None:
        flags |= 0x80
        payload += _str(p.username)
    if p.password is not None:
        flags |= 0x40
        payload += _bin(p.password)
    head = _str("MQTT") + bytes([5, flags]) + struct.pack(">H", p.keepalive_s) + _props(props)
    return head + payload


def decode(ptype: int, flags: int, body: bytes) -> Packet:
    """One packet from its fixed header's type and flags and its body."""
    c = _Cursor(body)
    if ptype == PacketType.PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MqttProtocolError("PUBLISH with QoS 3")
        topic = c.text()
        pid = c.u16() if qos else None
        props = c.props()
        return Publish(topic, c.rest(), qos, bool(flags & 1), bool(flags & 8), pid, props)
    if ptype == PacketType.PUBACK:
        pid = c.u16()
        reason = c.u8() if c.more else 0
        return PubAck(pid, reason, c.props() if c.more else {})
    if ptype == PacketType.CONNACK:
        session_present, reason = c.u8() & 1, c.u8()
        return ConnAck(bool(session_present), reason, c.props() if c.more else {})
    if ptype == PacketType.SUBACK:
        pid = c.u16()
        c.props()
        return SubAck(pid, tuple(c.rest()))
    if ptype == PacketType.PINGRESP:
        return PingResp()
    if ptype == PacketType.PINGREQ:
        return PingReq()
    if ptype == PacketType.DISCONNECT:
        reason = c.u8() if c.more else 0
        return Disconnect(reason, c.props() if c.more else {})
    raise MqttProtocolError(f"unexpected packet type {ptype}")


class PacketReader:
    """Bytes in, whole packets out (sans-I/O; any split of the stream).

    Parameters
    ----------
    max_packet
        Largest packet accepted, bytes (a larger one is a protocol error).
    """

    def __init__(self, max_packet: int = 16 * 1024 * 1024) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Take bytes; return the packets they complete."""
        self._buf += data
        out: list[Packet] = []
        while len(self._buf) >= 2:
            try:
                length, pos = decode_varint(bytes(self._buf[1:5]), 0)
            except MqttProtocolError:
                if len(self._buf) < 5:
                    return out  # the length is still arriving
                raise
            if length > self.max_packet:
                raise MqttProtocolError(f"packet of {length} bytes")
            end = 1 + pos + length
            if len(self._buf) < end:
                return out
            b0 = self._buf[0]
            body = bytes(self._buf[1 + pos : end])
            del self._buf[:end]
            out.append(decode(b0 >> 4, b0 & 0x0F, body))
        return out


def topic_matches(filt: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter ``filt`` (``+`` one level, ``#`` the
    rest; topics starting with ``$`` are not matched by a leading wildcard)."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    f_parts, t_parts = filt.split("/"), topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts) or (f != "+" and f != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


def user_properties(pairs: Iterable[tuple[str, str]]) -> Props:
    """Properties holding the given user properties."""
    return {Prop.USER_PROPERTY: list(pairs)}
