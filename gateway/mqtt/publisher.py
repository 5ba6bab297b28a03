"""MQTT publisher: delivers the durable outbox (QoS 1) and live ECG (QoS 0) to the broker.

The glue between three parts, all on the event loop (no threads, no locks):

- the SQLite :class:`~gateway.outbox.Outbox` (what must be delivered, by priority);
- the pure :class:`~gateway.mqtt.window.DeliveryWindow` (what to publish or re-send);
- the :class:`~gateway.mqtt.client.MqttClient` (one MQTT v5 connection, kept up).

A row is deleted from the outbox only when its PUBACK carries a success reason code; a
refused row (e.g. 0x87 "Not authorized") is counted by reason, recorded, kept and
offered again after ``retry_backoff_s``. If the process stops, every unacknowledged row
is still in the outbox and is sent at next start. Consumers de-duplicate by ``msg_id``.

Status: ``{prefix}/{gateway_id}/status`` is retained JSON (:mod:`gateway.status`),
"online" at each connect and every ``status_period_s``, "offline" at a clean exit (with
its time) and as the Last Will (``time`` null, ``last_will`` true: set at CONNECT, it
cannot know when it will be needed; ``connected_at`` says which connection it guarded).
Statuses go through the outbox (lowest priority, retained, latest wins). If the broker
has not acknowledged the exit's "offline" within ``offline_timeout_s``, the gateway
disconnects with reason 0x04 so the broker publishes the "offline" Will.

Subscriptions: :meth:`Publisher.subscribe` (e.g. the center's record confirmations,
issue #13) is sent at every connection; a matching PUBLISH goes to its handler and, QoS 1,
is acknowledged after the handler returned (a handler that raises gets no PUBACK: the
broker sends it again).

Security: TLS (``mqtts://``) with TLS 1.2 at least and host names checked; secrets
readable by their owner only (:mod:`gateway.mqtt.credentials`). Plaintext (``mqtt://``,
only with ``insecure = true``) is logged as a warning at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.counters import Counters
from core.tasks import cancel_and_wait
from gateway.config import MqttConfig
from gateway.mqtt.client import LinkState, MqttClient
from gateway.mqtt.codec import (
    ConnAck,
    Connect,
    Packet,
    PubAck,
    Publish,
    Subscribe,
    reason_name,
)
from gateway.mqtt.credentials import read_password, tls_context
from gateway.mqtt.inbox import Inbox
from gateway.mqtt.live import LiveSender
from gateway.mqtt.refusals import Refusals
from gateway.mqtt.window import (
    SUBSCRIBE_ID,
    Acked,
    DeliveryWindow,
    Refused,
    Send,
    publish_packet,
)
from gateway.outbox import Outbox
from gateway.status import StatusReporter
from gateway.upload_rate import KindLimit

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

_DRAIN_TICK_S = 0.5  # backoffs and stalls are looked at this often even when nobody wakes us


class Publisher:
    """Delivers the outbox and live ECG over MQTT; an async context manager.

    Parameters
    ----------
    cfg
        Broker settings.
    gateway_id
        Pseudonymous gateway id (topics, default client id).
    outbox
        The durable outbox.
    status_devices
        Called for the ``devices`` facts of each status message.
    status_period_s
        Seconds between retained "online" status messages.
    live_max_rate_hz
        At most this many live messages per second per topic; more are dropped.
    retry_backoff_s
        Seconds before a message refused by the broker is offered again.
    reconnect_delay_s
        (first, cap) reconnect delay, seconds, doubled per failure, with jitter.
    stable_s
        A connection must stay up this long before the reconnect delay starts over (one
        the broker closes sooner counts as a failure: see :mod:`gateway.mqtt.client`).
    ack_timeout_s
        A PUBACK later than this (default max(60, 2 × keepalive)) means the broker is
        stalled: the connection is dropped and re-made, which re-sends the message.
    offline_timeout_s
        On exit, seconds to wait for the broker to acknowledge the "offline" status.
    limits
        Per bulk message kind (``record``): its share of the window and byte-rate cap.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        gateway_id: str,
        outbox: Outbox,
        *,
        status_devices: Callable[[], dict[str, Any]] | None = None,
        status_period_s: float = 30.0,
        live_max_rate_hz: float = 5.0,
        retry_backoff_s: float = 30.0,
        reconnect_delay_s: tuple[float, float] = (1.0, 60.0),
        stable_s: float = 10.0,
        ack_timeout_s: float | None = None,
        offline_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
        limits: Mapping[str, KindLimit] | None = None,
    ) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.status_topic = f"{cfg.topic_prefix}/{gateway_id}/status"
        self.status = StatusReporter(
            outbox,
            gateway_id,
            self.status_topic,
            devices=status_devices,
            transmission=self._transmission,
            clock=clock,
            connected_at=lambda: self._connected_at,
        )
        self._status_period_s = status_period_s
        self._offline_timeout_s = offline_timeout_s
        self._reconnect_delay_s = reconnect_delay_s
        self._stable_s = stable_s
        self._clock = clock
        ack_timeout = (
            ack_timeout_s if ack_timeout_s is not None else max(60.0, 2.0 * cfg.keepalive_s)
        )
        self.window = DeliveryWindow(cfg.inflight, ack_timeout, retry_backoff_s, limits)
        self.live = LiveSender(live_max_rate_hz)
        self._counters = Counters("published acked ack_timeouts resent_after_reconnect")
        self.refusals = Refusals()
        self.inbox = Inbox()
        self._last_error: str | None = None
        self.client: MqttClient | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._exiting = False
        self._connecting_at: float | None = None  # when the latest CONNECT was made
        self._connected_at: float | None = None  # when the current connection began

    # --- state ----------------------------------------------------------------------------
    @property
    def state(self) -> LinkState:
        return LinkState.STOPPED if self.client is None else self.client.state

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def stats(self) -> dict[str, Any]:
        """Counters since start (messages unless said otherwise), read now."""
        client = self.client
        live = self.live.counters.snapshot()
        return {
            "connects": client.connects if client else 0,
            "disconnects": client.disconnects if client else 0,
            "connect_failures": client.connect_failures if client else 0,
            "session_taken_over": client.taken_over if client else 0,
            "brief_connections": client.brief_connections if client else 0,
            **self._counters.snapshot(),
            "nacked": self.refusals.count,
            "nacked_by_reason": dict(self.refusals.by_reason),
            "status_sent": self.status.sent,
            **live,
            **self.inbox.counters.snapshot(),
            "live_dropped": live["live_dropped_offline"] + live["live_dropped_rate"],
            "last_error": (client.last_error if client else None)
            or self._last_error
            or self.status.last_error,
        }

    # --- public ---------------------------------------------------------------------------
    def wake(self) -> None:
        """Nudge the drain task (call after ``outbox.put``)."""
        self._wake.set()

    def publish_live(self, topic: str, payload: bytes) -> bool:
        """Send live ECG, QoS 0, best effort, not stored (see :class:`LiveSender`)."""
        return self.live.send(self.client if self.connected else None, topic, payload)

    async def wait_drained(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the outbox is empty and nothing is in flight."""
        return await _until(
            lambda: not (self.window.inflight or self.outbox.pending()), timeout, self._wake
        )

    # --- lifetime -------------------------------------------------------------------------
    async def __aenter__(self) -> Publisher:
        self.client = connect_client(
            self.cfg,
            self.gateway_id,
            will=self._will,
            on_up=self._on_up,
            on_packet=self._on_packet,
            on_down=self._on_down,
            delays=self._reconnect_delay_s,
            stable_s=self._stable_s,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.client.run(), name="mqtt-link"),
            loop.create_task(self._drain_loop(), name="mqtt-drain"),
            loop.create_task(self._status_loop(), name="mqtt-status"),
        ]
        return self

    def _will(self) -> bytes:
        """The Last Will of the connection about to be made (it says when that began)."""
        self._connecting_at = self._clock()
        return self.status.will(self._connecting_at)

    async def __aexit__(self, *exc_info: object) -> None:
        """Publish "offline" (waits up to ``offline_timeout_s``); disconnect; stop.

        Rows not acknowledged stay in the outbox (sent at next start; the next status
        supersedes a waiting "offline"). If the broker did not acknowledge the "offline"
        in time, the disconnect asks it to publish the "offline" Will instead.
        """
        self._exiting = True
        status_task, other = self._tasks[2], self._tasks[:2]
        await cancel_and_wait(status_task)  # no "online" may follow the "offline"
        delivered = await self._say_offline()
        if not delivered and self.connected:
            log.warning("broker did not acknowledge the offline status before exit")
        if self.client is not None:
            await self.client.disconnect(0x00 if delivered else 0x04)
        for task in other:
            task.cancel()
        await asyncio.gather(*other, return_exceptions=True)
        if self.window.inflight:
            log.info(
                "%d message(s) in flight at exit stay in the outbox (re-sent at next start)",
                self.window.inflight,
            )
        self._tasks = []

    async def _say_offline(self) -> bool:
        if not self.connected:
            return False
        row = self._put_status("offline")
        if row is None:
            return False
        await _until(
            lambda: not (self.connected and self.outbox.waiting(row)),
            self._offline_timeout_s,
            self._wake,
        )
        return not self.outbox.waiting(row)

    # --- the link's events ----------------------------------------------------------------
    def _on_up(self, connack: ConnAck) -> None:
        self._connected_at = self._connecting_at
        resend = self.window.connected(
            connack.receive_maximum, connack.session_present, time.monotonic()
        )
        self._counters.add("resent_after_reconnect", len(resend))
        if self.inbox.filters and self.client is not None:
            self.client.send(Subscribe(SUBSCRIBE_ID, self.inbox.filters))
        self._send(resend)
        if not self._exiting:
            self._put_status("online")
        self._wake.set()

    def _on_down(self, reason: str) -> None:
        self.window.disconnected()

    def subscribe(self, topic_filter: str, handler: Callable[[Publish], None]) -> None:
        """Receive messages on ``topic_filter`` (QoS 1; see :class:`~gateway.mqtt.inbox.Inbox`)."""
        self.inbox.add(topic_filter, handler)
        if self.connected and self.client is not None:
            self.client.send(Subscribe(SUBSCRIBE_ID, self.inbox.filters))

    def _on_packet(self, packet: Packet) -> None:
        if isinstance(packet, Publish):
            # PUBACK only once every handler took it (a confirmation saved to disk, ...);
            # otherwise the broker delivers it again at the next connection
            handled = self.inbox.deliver(packet)
            if handled and packet.qos == 1 and packet.packet_id is not None and self.client:
                self.client.send(PubAck(packet.packet_id))
            return
        if not isinstance(packet, PubAck):
            return
        result = self.window.puback(packet.packet_id, packet.reason, time.monotonic())
        try:
            if isinstance(result, Acked):
                self.outbox.ack(result.row.row_id)
                self._counters.add("acked")
            elif isinstance(result, Refused):
                self._refused(result, packet)
        except Exception as exc:  # a full disk must not stop delivery
            self._last_error = f"outbox update failed: {exc!r}"
            log.exception("outbox update failed")
        self._wake.set()

    def _refused(self, r: Refused, packet: PubAck) -> None:
        self._last_error = self.refusals.add(r, packet, self.window.retry_backoff_s)
        log.error("%s", self._last_error)
        self.outbox.nack(r.row.row_id, reason_name(r.reason))

    # --- delivery -------------------------------------------------------------------------
    async def _drain_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_TICK_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._drain_once()
            except Exception as exc:
                self._last_error = f"drain failed: {exc!r}"
                log.exception("outbox drain failed; retrying")
                await asyncio.sleep(1.0)

    def _drain_once(self) -> None:
        if not self.connected or self.client is None:
            return
        now = time.monotonic()
        if self.window.stalled(now):
            self._counters.add("ack_timeouts")
            self.client.drop(f"no PUBACK within {self.window.ack_timeout_s:g} s")
            return
        if room := self.window.room:
            rows = self.outbox.peek(room, exclude=self.window.busy(now))
            self._send(self.window.offer(rows, now))

    def _send(self, sends: list[Send]) -> None:
        assert self.client is not None
        for s in sends:
            if self.client.send(publish_packet(s)) and not s.dup:
                self._counters.add("published")

    # --- status ----------------------------------------------------------------------------
    def _put_status(self, state: str) -> int | None:
        row = self.status.post(state)
        self._wake.set()
        return row

    def _transmission(self) -> dict[str, Any]:
        """Delivery facts for the status: what waits in the outbox, what the broker refused."""
        return {
            "outbox_pending": self.outbox.pending(),
            "inflight": self.window.inflight,
            "acked": self._counters["acked"],
            "nacked": self.refusals.count,
            "nacked_by_reason": dict(self.refusals.by_reason),
            "link": self.state.value,
            "session_taken_over": self.client.taken_over if self.client else 0,
            "brief_connections": self.client.brief_connections if self.client else 0,
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self._status_period_s)
            self._put_status("online")


async def _until(done: Callable[[], bool], timeout: float, wake: asyncio.Event) -> bool:
    """Wait up to ``timeout`` s for ``done()``, waking the drain task meanwhile; whether
    it came true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        if loop.time() >= deadline:
            return False
        wake.set()
        await asyncio.sleep(0.02)
    return True


def connect_client(
    cfg: MqttConfig,
    gateway_id: str,
    *,
    will: Callable[[], bytes],
    on_up: Callable[[ConnAck], None],
    on_packet: Callable[[Packet], None],
    on_down: Callable[[str], None],
    delays: tuple[float, float],
    stable_s: float = 10.0,
) -> MqttClient:
    """The gateway's MQTT client from its settings (credentials checked here, before any
    connection: :class:`~gateway.mqtt.errors.PublisherError` if they are not usable).

    ``will`` gives the retained "offline" status, built at each connection attempt (it
    carries the time of the connection it guards, not a time of going offline)."""
    password = read_password(cfg)
    ssl_context = tls_context(cfg) if cfg.tls else None
    if ssl_context is None:
        log.warning(
            "INSECURE: MQTT to %s is plaintext (mqtt://, insecure = true): ECG data and "
            "credentials travel unencrypted. Use mqtts:// for patient data.",
            cfg.url,
        )
    client_id = cfg.client_id or gateway_id
    status_topic = f"{cfg.topic_prefix}/{gateway_id}/status"

    def make_connect() -> Connect:
        return Connect(
            client_id,
            keepalive_s=cfg.keepalive_s,
            clean_start=False,
            session_expiry_s=cfg.session_expiry_s,
            will=Publish(status_topic, will(), qos=1, retain=True),
            username=cfg.username,
            password=password,
        )

    log.info("MQTT client %s: broker %s, status topic %s", client_id, cfg.url, status_topic)
    return MqttClient(
        cfg.host,
        cfg.port,
        ssl_context,
        make_connect=make_connect,
        on_up=on_up,
        on_packet=on_packet,
        on_down=on_down,
        keepalive_s=cfg.keepalive_s,
        delays=delays,
        stable_s=stable_s,
    )
