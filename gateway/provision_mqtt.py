"""The broker seen from provisioning and the doctor: a probe, and the test transmission.

Both open a connection of their own with the gateway's credentials (the same TLS checks as
the running gateway, :mod:`gateway.mqtt.credentials`) and a client id of their own
(``<id>-doctor``, ``<id>-provision``, clean session), so a running gateway's session is
never taken over.

The test transmission (docs/provisioning.md): SUBSCRIBE ``{prefix}/{gw}/pong``, PUBLISH
``{prefix}/{gw}/ping`` (QoS 1, ``ecg-gateway/ping/v1`` with a fresh ``ping_id``), wait for the
broker's PUBACK (a refusal, e.g. 0x87 from the ACL, is reported with its reason) and for the
center's pong carrying the same ``ping_id``. The round-trip time is from the PUBLISH to the
pong, ms. A ping is repeated every ``resend_s`` until a pong comes or ``timeout_s`` ends.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

from core.units import iso_utc
from gateway.config import GatewayConfig
from gateway.mqtt.client import explain
from gateway.mqtt.codec import (
    ConnAck,
    Connect,
    Disconnect,
    PacketReader,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    encode,
    reason_name,
)
from gateway.mqtt.credentials import read_password, tls_context
from gateway.mqtt.errors import PublisherError

__all__ = ["PING_SCHEMA", "PingResult", "probe_broker", "test_transmission"]

PING_SCHEMA = "ecg-gateway/ping/v1"


class _Conn:
    """One MQTT v5 connection, packets in and out (the provisioning's own, short-lived)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.packets = reader, writer, PacketReader()
        self._pending: list[Any] = []

    async def next(self) -> Any:
        while not self._pending:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the broker closed the connection")
            self._pending += self.packets.feed(data)
        return self._pending.pop(0)

    def send(self, packet: Any) -> None:
        self.writer.write(encode(packet))

    async def close(self) -> None:
        try:
            self.send(Disconnect(0))
            await self.writer.drain()
        except (OSError, ConnectionError):
            pass
        self.writer.close()


async def _connect(cfg: GatewayConfig, suffix: str, timeout_s: float) -> tuple[_Conn, int]:
    """Open, CONNECT (clean start) and read CONNACK: (connection, its reason code)."""
    m = cfg.mqtt
    ctx: ssl.SSLContext | None = tls_context(m) if m.tls else None
    password = read_password(m)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(
            m.host, m.port, ssl=ctx, server_hostname=m.host if ctx else None)
        conn = _Conn(reader, writer)
        conn.send(Connect(f"{(m.client_id or cfg.gateway.id)[:50]}-{suffix}", keepalive_s=30,
                          clean_start=True, username=m.username, password=password))
        try:
            ack = await conn.next()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            if ctx is None or m.cert_file is None or _tls_alert(exc):
                raise
            # TLS 1.3: the broker checks our certificate after the handshake and drops us
            raise ConnectionError(
                "the broker refused our client certificate (it closed the connection right "
                "after the TLS handshake): is the certificate from the CA the broker trusts?"
            ) from None
    if not isinstance(ack, ConnAck):
        raise ConnectionError(f"expected CONNACK, got {type(ack).__name__}")
    return conn, ack.reason


def _tls_alert(exc: BaseException) -> bool:
    """An SSL error that names its alert (explained by :func:`explain` already)."""
    return isinstance(exc, ssl.SSLError) and "ALERT" in str(exc.reason or "")


async def probe_broker(cfg: GatewayConfig, timeout_s: float = 10.0) -> dict[str, Any]:
    """``{"connack": reason}`` (0: accepted) or ``{"error": why}`` in the engineer's words."""
    try:
        conn, reason = await _connect(cfg, "doctor", timeout_s)
    except PublisherError as exc:
        return {"error": str(exc)}
    except (OSError, TimeoutError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError,
            ValueError) as exc:
        return {"error": explain(exc)}
    await conn.close()
    return {"connack": reason}


@dataclass(frozen=True)
class PingResult:
    """The test transmission's outcome: ``ok``, the round trip (ms), or what went wrong."""

    ok: bool
    rtt_ms: float | None
    pings_sent: int
    detail: str


def _ping_packet(topic: str, gateway: str, pid: int, ping_id: str) -> Publish:
    body = {"schema": PING_SCHEMA, "gateway_id": gateway, "ping_id": ping_id,
            "sent_at": iso_utc(time.time())}
    return Publish(topic, json.dumps(body).encode(), qos=1, packet_id=pid)


async def _exchange(conn: _Conn, cfg: GatewayConfig, timeout_s: float, resend_s: float
                    ) -> PingResult:
    gw, prefix = cfg.gateway.id, cfg.mqtt.topic_prefix
    conn.send(Subscribe(1, ((f"{prefix}/{gw}/pong", 0),)))
    loop = asyncio.get_running_loop()
    deadline, sent, pid = loop.time() + timeout_s, {}, 1
    next_ping = loop.time()
    while True:
        now = loop.time()
        if now >= deadline:
            return PingResult(False, None, len(sent), "no answer from the center within "
                              f"{timeout_s:g} s (is ecg-center running and subscribed?)")
        if now >= next_ping:
            pid += 1
            ping_id = uuid.uuid4().hex
            sent[ping_id] = time.perf_counter()
            conn.send(_ping_packet(f"{prefix}/{gw}/ping", gw, pid, ping_id))
            next_ping = now + resend_s
        try:
            async with asyncio.timeout(min(next_ping, deadline) - loop.time()):
                packet = await conn.next()
        except TimeoutError:
            continue
        if isinstance(packet, SubAck) and packet.reasons and packet.reasons[0] >= 0x80:
            return PingResult(False, None, len(sent), "the broker refused our subscription "
                              f"to the pong topic: {reason_name(packet.reasons[0])}")
        if isinstance(packet, PubAck) and packet.reason >= 0x80:
            return PingResult(False, None, len(sent), "the broker refused our test message: "
                              f"{reason_name(packet.reason)} (check its ACL)")
        if isinstance(packet, Publish) and packet.topic.endswith("/pong"):
            if packet.qos:
                conn.send(PubAck(packet.packet_id or 0))
            try:
                ping_id = json.loads(packet.payload).get("ping_id")
            except (ValueError, AttributeError):
                continue
            if ping_id in sent:
                rtt = (time.perf_counter() - sent[ping_id]) * 1000.0
                return PingResult(True, round(rtt, 1), len(sent),
                                  f"the center answered in {rtt:.0f} ms")


async def test_transmission(cfg: GatewayConfig, *, timeout_s: float = 20.0,
                            resend_s: float = 2.0) -> PingResult:
    """Ping the center through the broker and wait for its pong (see the module docstring)."""
    try:
        conn, reason = await _connect(cfg, "provision", min(timeout_s, 10.0))
    except PublisherError as exc:
        return PingResult(False, None, 0, str(exc))
    except (OSError, TimeoutError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError,
            ValueError) as exc:
        return PingResult(False, None, 0, f"cannot connect to the broker: {explain(exc)}")
    try:
        if reason >= 0x80:
            return PingResult(False, None, 0, f"the broker refused us: {reason_name(reason)}")
        return await _exchange(conn, cfg, timeout_s, resend_s)
    except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
        return PingResult(False, None, 0, f"the connection broke: {explain(exc)}")
    finally:
        await conn.close()


test_transmission.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
