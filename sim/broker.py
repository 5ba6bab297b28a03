"""A small MQTT broker (v5 and v3.1.1) in pure Python, for the demo on machines without mosquitto.

Enough of MQTT for the gateway, the monitor and paho clients on one machine:
CONNECT/CONNACK, PUBLISH at QoS 0, 1 and 2, retained messages, SUBSCRIBE with
``+`` and ``#`` wildcards, UNSUBSCRIBE, PINGREQ, DISCONNECT, the Last Will, and
MQTT v5 properties passed from v5 publishers to v5 subscribers unchanged (user
properties ``msg_id`` and ``seq`` arrive as sent). Not for production: no
authentication, no TLS, no persistent sessions (every CONNACK says "no session
present"), loopback only by default. A client sending malformed packets is
disconnected and counted; the broker goes on.

Packet encoding and decoding are pure functions; :class:`MiniBroker` is the
asyncio shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from dataclasses import dataclass, field

__all__ = [
    "MiniBroker",
    "MqttProtocolError",
    "decode_varint",
    "encode_varint",
    "topic_matches",
]

log = logging.getLogger(__name__)

MAX_PACKET = 16 * 1024 * 1024

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)


class MqttProtocolError(ValueError):
    """A packet that breaks the MQTT specification."""


# --- codec (pure) --------------------------------------------------------------------------
def encode_varint(n: int) -> bytes:
    """MQTT variable byte integer."""
    if not 0 <= n <= 268_435_455:
        raise MqttProtocolError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, next position) of the variable byte integer at ``pos``."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            raise MqttProtocolError("truncated variable byte integer")
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _bin(buf, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise MqttProtocolError("invalid UTF-8 string") from exc


def _bin(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(buf):
        raise MqttProtocolError("truncated length")
    (n,) = struct.unpack_from(">H", buf, pos)
    if pos + 2 + n > len(buf):
        raise MqttProtocolError("truncated string")
    return buf[pos + 2 : pos + 2 + n], pos + 2 + n


def _props(buf: bytes, pos: int) -> tuple[bytes, int]:
    """The raw property block (without its length) at ``pos`` (MQTT v5)."""
    n, pos = decode_varint(buf, pos)
    if pos + n > len(buf):
        raise MqttProtocolError("truncated properties")
    return buf[pos : pos + n], pos + n


def _enc_str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """A complete packet: fixed header plus ``body``."""
    return bytes([ptype << 4 | flags]) + encode_varint(len(body)) + body


def topic_matches(filt: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest; ``$`` topics hidden)."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    f_parts = filt.split("/")
    t_parts = topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts):
            return False
        if f != "+" and f != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


@dataclass
class ConnectInfo:
    level: int
    client_id: str
    keepalive: int
    clean: bool
    will: tuple[str, bytes, int, bool, bytes] | None  # topic, payload, qos, retain, props


def parse_connect(body: bytes) -> ConnectInfo:
    name, pos = _str(body, 0)
    if name not in ("MQTT", "MQIsdp") or pos + 4 > len(body):
        raise MqttProtocolError(f"not MQTT: protocol name {name!r}")
    level, flags = body[pos], body[pos + 1]
    (keepalive,) = struct.unpack_from(">H", body, pos + 2)
    pos += 4
    if level not in (4, 5):
        raise MqttProtocolError(f"unsupported protocol level {level}")
    if level == 5:
        _, pos = _props(body, pos)
    client_id, pos = _str(body, pos)
    will = None
    if flags & 0x04:
        will_props = b""
        if level == 5:
            will_props, pos = _props(body, pos)
        w_topic, pos = _str(body, pos)
        w_payload, pos = _bin(body, pos)
        will = (w_topic, w_payload, (flags >> 3) & 3, bool(flags & 0x20), will_props)
    if flags & 0x80:
        _, pos = _str(body, pos)
    if flags & 0x40:
        _, pos = _bin(body, pos)
    return ConnectInfo(level, client_id, keepalive, bool(flags & 0x02), will)


@dataclass
class PublishInfo:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int | None
    props: bytes


def parse_publish(flags: int, body: bytes, level: int) -> PublishInfo:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MqttProtocolError("QoS 3")
    topic, pos = _str(body, 0)
    if not topic or "+" in topic or "#" in topic:
        raise MqttProtocolError(f"invalid topic name {topic!r}")
    pid = None
    if qos:
        if pos + 2 > len(body):
            raise MqttProtocolError("truncated packet id")
        (pid,) = struct.unpack_from(">H", body, pos)
        pos += 2
    props = b""
    if level == 5:
        props, pos = _props(body, pos)
    return PublishInfo(topic, body[pos:], qos, bool(flags & 1), pid, props)


def encode_publish(
    topic: str, payload: bytes, qos: int, retain: bool, pid: int | None, props: bytes, level: int
) -> bytes:
    body = _enc_str(topic)
    if qos:
        body += struct.pack(">H", pid or 1)
    if level == 5:
        body += encode_varint(len(props)) + props
    return packet(PUBLISH, (qos << 1) | int(retain), body + payload)


# --- the broker (asyncio) ----------------------------------------------------------------------
@dataclass
class _Session:
    client_id: str
    level: int
    writer: asyncio.StreamWriter
    will: tuple[str, bytes, int, bool, bytes] | None
    subs: dict[str, int] = field(default_factory=dict)  # filter -> granted qos
    pids: itertools.cycle = field(default_factory=lambda: itertools.cycle(range(1, 65536)))
    closed: bool = False

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)


@dataclass
class BrokerStats:
    connections: int = 0
    messages_in: int = 0
    messages_out: int = 0
    protocol_errors: int = 0
    wills_sent: int = 0


class MiniBroker:
    """``async with MiniBroker() as b: ... b.port`` — an MQTT broker in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.stats = BrokerStats()
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, tuple[bytes, int, bytes]] = {}
        self._anon = itertools.count(1)
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("mini broker listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for s in list(self._sessions.values()):
                s.closed = True
                s.writer.close()
            for t in list(self._handlers):
                t.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MiniBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- one connection -----------------------------------------------------------------
    async def _read_packet(
        self, reader: asyncio.StreamReader, timeout: float | None
    ) -> tuple[int, int, bytes]:
        async with asyncio.timeout(timeout):
            b0 = (await reader.readexactly(1))[0]
            mult, length = 1, 0
            for _ in range(4):
                b = (await reader.readexactly(1))[0]
                length += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            else:
                raise MqttProtocolError("bad remaining length")
            if length > MAX_PACKET:
                raise MqttProtocolError(f"packet of {length} bytes")
            body = await reader.readexactly(length)
        return b0 >> 4, b0 & 0x0F, body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.stats.connections += 1
        session: _Session | None = None
        clean_exit = False
        try:
            ptype, _, body = await self._read_packet(reader, 10.0)
            if ptype != CONNECT:
                raise MqttProtocolError("first packet is not CONNECT")
            info = parse_connect(body)
            cid = info.client_id or f"mini-{next(self._anon)}"
            old = self._sessions.pop(cid, None)
            if old is not None:  # session takeover: MQTT 5 says why (0x8E Session taken over)
                old.closed = True
                if old.level == 5:
                    old.writer.write(packet(DISCONNECT, 0, b"\x8e\x00"))
                old.writer.close()
            session = _Session(cid, info.level, writer, info.will)
            self._sessions[cid] = session
            if info.level == 5:
                props = b"\x12" + _enc_str(cid) if not info.client_id else b""
                writer.write(packet(CONNACK, 0, b"\x00\x00" + encode_varint(len(props)) + props))
            else:
                writer.write(packet(CONNACK, 0, b"\x00\x00"))
            timeout = info.keepalive * 1.5 if info.keepalive else None
            while True:
                ptype, flags, body = await self._read_packet(reader, timeout)
                if ptype == DISCONNECT:
                    clean_exit = True
                    reason = body[0] if body else 0
                    if reason == 0x04:  # disconnect with will message
                        clean_exit = False
                    return
                self._handle(session, ptype, flags, body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except MqttProtocolError as exc:
            self.stats.protocol_errors += 1
            log.warning("mini broker: dropping a client: %s", exc)
        except asyncio.CancelledError:
            clean_exit = True
        finally:
            if session is not None:
                session.closed = True
                if self._sessions.get(session.client_id) is session:
                    del self._sessions[session.client_id]
                if not clean_exit and session.will is not None:
                    self.stats.wills_sent += 1
                    topic, payload, qos, retain, props = session.will
                    self._route(topic, payload, qos, retain, props)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    def _handle(self, s: _Session, ptype: int, flags: int, body: bytes) -> None:
        if ptype == PUBLISH:
            p = parse_publish(flags, body, s.level)
            self.stats.messages_in += 1
            if p.qos == 1:
                s.send(packet(PUBACK, 0, struct.pack(">H", p.packet_id)))
            elif p.qos == 2:
                s.send(packet(PUBREC, 0, struct.pack(">H", p.packet_id)))
            self._route(p.topic, p.payload, p.qos, p.retain, p.props)
        elif ptype == PUBREL:
            s.send(packet(PUBCOMP, 0, body[:2]))
        elif ptype == PUBREC:
            s.send(packet(PUBREL, 2, body[:2]))
        elif ptype == SUBSCRIBE:
            self._subscribe(s, body)
        elif ptype == UNSUBSCRIBE:
            (pid,) = struct.unpack_from(">H", body, 0)
            pos = 2
            if s.level == 5:
                _, pos = _props(body, pos)
            n = 0
            while pos < len(body):
                f, pos = _str(body, pos)
                s.subs.pop(f, None)
                n += 1
            tail = (b"\x00" + b"\x00" * n) if s.level == 5 else b""
            s.send(packet(UNSUBACK, 0, struct.pack(">H", pid) + tail))
        elif ptype == PINGREQ:
            s.send(packet(PINGRESP, 0, b""))
        elif ptype in (PUBACK, PUBCOMP):
            pass  # our deliveries are fire-and-forget
        else:
            raise MqttProtocolError(f"unexpected packet type {ptype}")

    def _subscribe(self, s: _Session, body: bytes) -> None:
        (pid,) = struct.unpack_from(">H", body, 0)
        pos = 2
        if s.level == 5:
            _, pos = _props(body, pos)
        granted: list[int] = []
        filters: list[str] = []
        while pos < len(body):
            f, pos = _str(body, pos)
            if pos >= len(body):
                raise MqttProtocolError("subscription without options")
            qos = min(body[pos] & 3, 2)
            pos += 1
            s.subs[f] = qos
            granted.append(qos)
            filters.append(f)
        if not filters:
            raise MqttProtocolError("SUBSCRIBE without a topic filter")
        head = struct.pack(">H", pid) + (b"\x00" if s.level == 5 else b"")
        s.send(packet(SUBACK, 0, head + bytes(granted)))
        for topic, (payload, qos, props) in list(self._retained.items()):
            for f, sub_qos in zip(filters, granted, strict=True):
                if topic_matches(f, topic):
                    self._deliver(s, topic, payload, min(qos, sub_qos), True, props)
                    break

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool, props: bytes) -> None:
        if retain:
            if payload:
                self._retained[topic] = (payload, qos, props)
            else:
                self._retained.pop(topic, None)
        for s in list(self._sessions.values()):
            best = -1
            for f, sub_qos in s.subs.items():
                if topic_matches(f, topic):
                    best = max(best, sub_qos)
            if best >= 0:
                self._deliver(s, topic, payload, min(qos, best), False, props)

    def _deliver(
        self, s: _Session, topic: str, payload: bytes, qos: int, retain: bool, props: bytes
    ) -> None:
        pid = next(s.pids) if qos else None
        s.send(encode_publish(topic, payload, qos, retain, pid, props, s.level))
        self.stats.messages_out += 1
