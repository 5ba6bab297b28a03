"""One MQTT v5 connection to the broker, kept up on the event loop (the asyncio shell).

:class:`MqttClient` opens TCP (+ TLS), sends CONNECT (with the Will the caller builds for
each attempt), reads CONNACK, then reads packets and keeps the connection alive until it
fails, and reconnects with capped, jittered backoff (:mod:`core.backoff`). It decides
nothing about messages: it reports the connection (``on_up``), every packet
(``on_packet``) and the loss (``on_down``) to its owner, and sends what it is given.

The keepalive is answered by this loop, not a helper thread: if the event loop freezes,
no PINGREQ goes out and the broker publishes the gateway's Last Will after 1.5 ×
keepalive. A broker that stops answering (nothing received for 1.5 × keepalive) is
dropped and reconnected.

Failures that retrying soon cannot fix wait the longest delay: credentials refused
(CONNACK 0x86, 0x87, 0x8A, 0x8C) and "Session taken over" (DISCONNECT 0x8E: another
process connected with the same client id — two gateways sharing an id would otherwise
knock each other off the broker every second). Brokers that close the old connection
without that DISCONNECT (mosquitto 2.0.11 does) are caught by the backoff itself: it
starts over only once a connection has stayed up for ``stable_s``, so a connection the
broker closes soon after accepting it counts as a failure and the delays grow; after
``_BRIEF_IN_A_ROW`` such connections in a row the next attempt waits the longest delay.
Both are logged as an error naming the client id and counted (``taken_over``,
``brief_connections``; the publisher puts them in the status), so the second gateway is
found, not hidden in a reconnect storm. Every failure is explained in ``last_error`` (TCP,
TLS certificate checks, the broker refusing our certificate, refusals by reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import ssl
import time
from collections.abc import Callable

from core.backoff import Backoff
from gateway.mqtt.codec import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    PingReq,
    PingResp,
    Prop,
    encode,
    reason_name,
)
from gateway.mqtt.errors import MqttProtocolError, MqttRefused

__all__ = ["LinkState", "MqttClient"]

log = logging.getLogger(__name__)

AT_CAP = {0x86, 0x87, 0x8A, 0x8C, 0x8E}
"""Reason codes after which the next attempt waits the longest backoff."""

_TAKEN_OVER = "session taken over by another client with our client id"
_CLOSED = "the broker closed the connection"
_BRIEF_IN_A_ROW = 3  # connections in a row the broker closed soon after accepting them

_CLIENT_CERT_ALERTS = (
    "ALERT_DECRYPT_ERROR",
    "ALERT_UNKNOWN_CA",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_ACCESS_DENIED",
)
"""TLS alerts a broker sends when it does not accept the client certificate."""


class LinkState(enum.Enum):
    """State of the link to the broker."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    """The broker answered but refused us (credentials, authorization): retried slowly."""
    DISCONNECTED = "disconnected"


def explain(exc: BaseException) -> str:
    """A failed connection in words a field engineer can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
            return (
                f"the broker refused our client certificate ({reason}): check that "
                "mqtt.cert_file was issued by the CA the broker trusts and is not expired"
            )
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, MqttRefused):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "no answer from the broker"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, on this host and port?)"
    if isinstance(exc, asyncio.IncompleteReadError):
        return _CLOSED
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return repr(exc)


class MqttClient:
    """Keeps one MQTT v5 connection up (see the module docstring).

    Parameters
    ----------
    host, port, ssl_context
        The broker; ``ssl_context`` None means plaintext.
    make_connect
        Builds the CONNECT packet for each attempt (so the Will carries its time).
    on_up, on_packet, on_down
        Called on the event loop: connected (with the CONNACK), each packet received
        (PINGRESP excepted), connection lost (with the reason).
    keepalive_s
        Keepalive asked of the broker, seconds (the broker may set another).
    delays
        ``(first, cap)`` of the reconnect backoff, seconds.
    stable_s
        A connection that stays up this long starts the backoff over; one the broker
        closes sooner counts as a failure.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        make_connect: Callable[[], Connect],
        on_up: Callable[[ConnAck], None],
        on_packet: Callable[[Packet], None],
        on_down: Callable[[str], None],
        keepalive_s: int = 30,
        delays: tuple[float, float] = (1.0, 60.0),
        connect_timeout_s: float = 10.0,
        stable_s: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.state = LinkState.STOPPED
        self.last_error: str | None = None
        self.backoff = Backoff(delays, random.Random())
        self.connects = self.connect_failures = self.disconnects = 0
        self.taken_over = 0  # times another client connected with our client id
        self.brief_connections = 0  # connections the broker closed within stable_s
        self.stable_s = stable_s
        self._brief_in_a_row = 0
        self._up_at = 0.0
        self.client_id = ""
        self.next_delay_s: float | None = None  # the wait before the next attempt
        self._make_connect = make_connect
        self._on_up, self._on_packet, self._on_down = on_up, on_packet, on_down
        self._writer: asyncio.StreamWriter | None = None
        self._ended: asyncio.Future[str] | None = None
        self._last_sent = self._last_heard = 0.0
        self._at_cap = False
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    # --- sending ---------------------------------------------------------------------------
    def send(self, packet: Packet) -> bool:
        """Queue ``packet`` on the connection; False when there is none."""
        writer = self._writer
        if writer is None or writer.is_closing() or self.state is not LinkState.CONNECTED:
            return False
        writer.write(encode(packet))
        self._last_sent = time.monotonic()
        return True

    def drop(self, reason: str) -> None:
        """End the connection now (e.g. a stalled broker); the client reconnects."""
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    async def disconnect(self, reason: int = 0, timeout_s: float = 2.0) -> None:
        """Send DISCONNECT (``0x04``: "publish my Will") and close; do not reconnect."""
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(Exception):
                writer.write(encode(Disconnect(reason)))
                async with asyncio.timeout(timeout_s):
                    await writer.drain()
        self._stopping = True
        self.drop("closed by us")

    # --- the connection's life ----------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect; returns when cancelled or after :meth:`disconnect`."""
        self._stopping = False
        try:
            while not self._stopping:
                try:
                    await self._connection()
                except (OSError, TimeoutError, ssl.SSLError, MqttProtocolError, MqttRefused,
                        asyncio.IncompleteReadError) as exc:  # fmt: skip
                    self._failed(exc)
                if not self._stopping:
                    self.next_delay_s = self._delay()
                    await asyncio.sleep(self.next_delay_s)
        finally:
            self.state = LinkState.STOPPED
            self._writer = None

    def _delay(self) -> float:
        if self._at_cap:
            self._at_cap = False
            return self.backoff.at_cap()
        return self.backoff.next()

    def _failed(self, exc: BaseException) -> None:
        self.connect_failures += 1
        refused = isinstance(exc, MqttRefused)
        self.state = LinkState.REFUSED if refused else LinkState.DISCONNECTED
        self._at_cap = refused and exc.reason in AT_CAP  # type: ignore[union-attr]
        broker = f"broker {self.host}:{self.port}"
        if refused:
            error = f"{broker} refused the connection: {exc}"
        else:
            error = f"cannot connect to {broker}: {explain(exc)}"
        if error != self.last_error:
            level = logging.ERROR if refused else logging.WARNING
            log.log(level, "%s; retrying (the outbox keeps all strips and events)", error)
        self.last_error = error

    async def _connection(self) -> None:
        self.state = LinkState.CONNECTING
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context else None,
            )
        try:
            packets = PacketReader()
            connect = self._make_connect()
            self.client_id = connect.client_id
            writer.write(encode(connect))
            async with asyncio.timeout(self.connect_timeout_s):
                connack, more = await self._first_packets(reader, packets)
            self._accept(connack, writer)
            # what came with the CONNACK (a session's redelivered messages) comes first
            reason = self._dispatch(more) or await self._serve(reader, packets)
            self.disconnects += 1
            self.state = LinkState.DISCONNECTED
            self._judge_lifetime(reason, time.monotonic() - self._up_at)
            if reason == _TAKEN_OVER:
                self.taken_over += 1
                self.last_error = (
                    f"broker {self.host}:{self.port}: another client connected with our "
                    f"client id {self.client_id!r} (Session taken over, 0x8E; {self.taken_over} "
                    "so far): is a second gateway running with this id? Reconnecting after "
                    "the longest delay"
                )
                log.error("%s", self.last_error)
            elif self._brief_in_a_row >= _BRIEF_IN_A_ROW:
                self.last_error = (
                    f"broker {self.host}:{self.port} closed our connection {_BRIEF_IN_A_ROW} "
                    f"times in a row within {self.stable_s:g} s of accepting it: most likely "
                    f"another client uses our client id {self.client_id!r} (is a second "
                    "gateway running with this id?), or the broker refuses what we send. "
                    "Reconnecting after the longest delay"
                )
                log.error("%s", self.last_error)
            elif reason != "closed by us":
                self.last_error = f"connection to {self.host}:{self.port} lost: {reason}"
                log.warning("%s", self.last_error)
            self._writer = None
            self._on_down(reason)
        finally:
            self._writer = None
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _first_packets(
        self, reader: asyncio.StreamReader, packets: PacketReader
    ) -> tuple[ConnAck, list[Packet]]:
        """The CONNACK and whatever arrived with it in the same read (never dropped)."""
        while True:
            data = await reader.read(65536)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            got = packets.feed(data)
            if got:
                if not isinstance(got[0], ConnAck):
                    raise MqttProtocolError(f"expected CONNACK, got {type(got[0]).__name__}")
                return got[0], got[1:]

    def _accept(self, connack: ConnAck, writer: asyncio.StreamWriter) -> None:
        if connack.reason >= 0x80:
            hint = " (check mqtt.username / mqtt.password_file)" if connack.reason in AT_CAP else ""
            raise MqttRefused(connack.reason, f"{reason_name(connack.reason)}{hint}")
        server_keepalive = connack.props.get(Prop.SERVER_KEEP_ALIVE)
        if isinstance(server_keepalive, int) and server_keepalive > 0:
            self.keepalive_s = server_keepalive
        self.connects += 1
        self._up_at = time.monotonic()
        self.state = LinkState.CONNECTED
        self._writer = writer
        self._last_sent = self._last_heard = time.monotonic()
        log.info(
            "connected to %s:%d (session present: %s)",
            self.host,
            self.port,
            connack.session_present,
        )
        self._on_up(connack)

    async def _serve(self, reader: asyncio.StreamReader, packets: PacketReader) -> str:
        """Read and keep alive until the connection ends; returns why it ended."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        tasks = [
            loop.create_task(self._read(reader, packets), name="mqtt-read"),
            loop.create_task(self._keepalive(), name="mqtt-keepalive"),
        ]
        try:
            await asyncio.wait([self._ended, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._ended.done():
            return self._ended.result()
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                return explain(t.exception())  # type: ignore[arg-type]
        return "connection closed"

    async def _read(self, reader: asyncio.StreamReader, packets: PacketReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                self.drop(_CLOSED)
                return
            self._last_heard = time.monotonic()
            ended = self._dispatch(packets.feed(data))
            if ended:
                self.drop(ended)
                return

    def _dispatch(self, packets: list[Packet]) -> str | None:
        """Hand ``packets`` on in order; why the connection ends if one is a DISCONNECT."""
        for packet in packets:
            if isinstance(packet, Disconnect):
                self._at_cap = packet.reason in AT_CAP
                if packet.reason == 0x8E:
                    return _TAKEN_OVER
                return f"the broker disconnected us: {reason_name(packet.reason)}"
            if not isinstance(packet, PingResp):
                self._on_packet(packet)
        return None

    def _judge_lifetime(self, reason: str, lived_s: float) -> None:
        """The backoff starts over only after a connection that stayed up ``stable_s``; one
        the broker closed sooner is a failure (the delays keep growing), and a run of them
        waits the longest delay."""
        if reason == "closed by us":
            return
        if lived_s >= self.stable_s:
            self.backoff.reset()
            self._brief_in_a_row = 0
            return
        if reason in (_CLOSED, _TAKEN_OVER):
            self.brief_connections += 1
            self._brief_in_a_row += 1
            if self._brief_in_a_row >= _BRIEF_IN_A_ROW:
                self._at_cap = True

    async def _keepalive(self) -> None:
        """PINGREQ when idle; give up on a broker silent for 1.5 × keepalive."""
        while True:
            await asyncio.sleep(max(self.keepalive_s / 4, 0.05))
            now = time.monotonic()
            if self.backoff.failures and now - self._up_at >= self.stable_s:
                self.backoff.reset()  # this connection held: the next failure starts over
                self._brief_in_a_row = 0
            if now - self._last_heard > 1.5 * self.keepalive_s:
                self.drop(f"no answer from the broker for {1.5 * self.keepalive_s:g} s")
                return
            if now - self._last_sent >= self.keepalive_s / 2:
                self.send(PingReq())
