"""MQTT publisher: delivers the durable outbox (QoS 1) and live ECG (QoS 0) to the broker.

One paho-mqtt 2.x client (MQTT v5) with its own network thread; everything else
runs on the asyncio event loop. Paho's callbacks never touch our state: they
hand their facts to the loop with ``call_soon_threadsafe`` and return at once
(one network loop, one publishing path, no lock held across paho calls).

Delivery of strips and events (at least once)
---------------------------------------------
- A drain task takes the oldest rows from the outbox (``peek``, priority order)
  and publishes each with QoS 1 and the MQTT v5 user properties ``msg_id`` and
  ``seq``, keeping at most ``inflight`` unacknowledged (and never more than the
  broker's Receive Maximum).
- A row is acked in the outbox only when its PUBACK carries a success reason
  code. A failure PUBACK (MQTT v5, e.g. 0x87 "Not authorized" for an ACL
  denial) is counted, recorded with ``outbox.nack(row, reason)``, and the row
  stays in the outbox; it is retried after ``retry_backoff_s``.
- When the connection drops, un-acked messages stay pending. Paho keeps them
  and re-sends them (DUP) on reconnect; new rows wait until those re-sent ones
  are acknowledged, so the order per device is kept. A message whose PUBACK
  does not come within ``ack_timeout_s`` of being (re)sent on a live connection
  is handed back to the drain and published again. If the process stops, every
  un-acked row is still in the outbox and is sent at next start. Consumers
  de-duplicate by ``msg_id``.

Status
------
``{prefix}/{gateway_id}/status`` is retained JSON: "online" on each connect and
every ``status_period_s``, "offline" on a clean exit, and the same "offline" as
the Last Will, which the broker publishes if the connection dies uncleanly.
Statuses go through the outbox like everything else (kind ``status``, lowest
priority, retained) with latest-wins replacement: during an outage one status
waits, not thousands. If the broker has not acknowledged the exit's "offline"
within ``offline_timeout_s``, the gateway disconnects with reason 0x04 ("with
Will Message") so the broker publishes the "offline" Will anyway.

Security
--------
TLS (``mqtts://``) with TLS 1.2 minimum and hostname checking; a client key
readable by group or others is refused. Plaintext (``mqtt://``, only accepted by
the configuration with ``insecure = true``) is logged as a warning at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import logging
import math
import os
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.backoff import Backoff
from gateway import __version__
from gateway.config import MqttConfig
from gateway.outbox import Outbox, OutboxMessage

__all__ = ["LinkState", "Publisher", "PublisherError", "PublisherStats", "status_payload"]

log = logging.getLogger(__name__)

STATUS_SCHEMA = "ecg-gateway/status/v1"

_AUTH_FAILURES = {
    0x86,  # Bad User Name or Password
    0x87,  # Not authorized
    0x8A,  # Banned
    0x8C,  # Bad authentication method
}
"""CONNACK reason codes that retrying soon cannot fix: wait the longest backoff."""

_OK_RC = (mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS, mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN)
"""paho ``publish()`` results for which paho holds the QoS 1 message (NO_CONN: sent on
reconnect)."""


class PublisherError(Exception):
    """The publisher cannot start with this configuration (files, permissions, TLS)."""


class LinkState(enum.Enum):
    """State of the link to the broker."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    """The broker answered but refused us (credentials, authorization): retried slowly."""
    DISCONNECTED = "disconnected"


@dataclass
class PublisherStats:
    """Counters since start (messages unless said otherwise)."""

    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    """Connection attempts that failed (TCP/TLS error or CONNACK refusal)."""
    published: int = 0
    """QoS 1 outbox messages handed to the client (re-sends by paho not counted)."""
    acked: int = 0
    nacked: int = 0
    nacked_by_reason: dict[str, int] = field(default_factory=dict)
    ack_timeouts: int = 0
    resent_after_reconnect: int = 0
    status_sent: int = 0
    live_sent: int = 0
    live_dropped: int = 0
    live_dropped_offline: int = 0
    live_dropped_rate: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _InFlight:
    row_id: int
    msg: OutboxMessage
    sent_at: float
    """Monotonic s when last (re)sent on a live connection."""


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


def _utc_iso(t: float) -> str:
    """POSIX seconds → ISO-8601 UTC with milliseconds and a 'Z'."""
    stamp = dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """JSON-safe copy of device facts: NaN/inf → None, numpy scalars → Python, else str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        with contextlib.suppress(Exception):
            return _plain(item())
    return str(value)


def status_payload(
    gateway_id: str,
    state: str,
    *,
    devices: dict[str, Any] | None = None,
    now: float,
    transmission: dict[str, Any] | None = None,
) -> bytes:
    """The retained status JSON (``ecg-gateway/status/v1``); ``now`` in POSIX UTC s."""
    body = status_body(gateway_id, state, devices=devices, now=now, transmission=transmission)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def status_body(
    gateway_id: str,
    state: str,
    *,
    devices: dict[str, Any] | None = None,
    now: float,
    transmission: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status as a JSON-ready dict; device facts are made JSON-safe (NaN → null)."""
    body = {
        "schema": STATUS_SCHEMA,
        "gateway_id": gateway_id,
        "state": state,
        "time": _utc_iso(now),
        "version": __version__,
        "devices": _plain(devices or {}),
    }
    if transmission is not None:
        body["transmission"] = _plain(transmission)
    return body


def _check_private(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise PublisherError(f"cannot read {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PublisherError(
            f"refusing to start: {what} {path} is mode {stat.S_IMODE(mode):04o}; "
            f"it must be readable by its owner only (chmod 600 {path})"
        )


def _tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Client TLS context: TLS >= 1.2, broker certificate and host name verified."""
    if cfg.key_file is not None:
        if cfg.cert_file is None:
            raise PublisherError("mqtt.key_file is set but mqtt.cert_file is not")
        _check_private(cfg.key_file, "client key file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if cfg.ca_file is not None:
            ctx.load_verify_locations(cafile=str(cfg.ca_file))
        else:
            ctx.load_default_certs()
        if cfg.cert_file is not None:
            keyfile = str(cfg.key_file) if cfg.key_file is not None else None
            ctx.load_cert_chain(str(cfg.cert_file), keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise PublisherError(f"cannot load TLS files: {exc}") from None
    return ctx


def _quiet_paho_shutdown(record: logging.LogRecord) -> bool:
    """Drop paho 2.2's harmless "Client is not connected" error when its loop stops."""
    return not str(record.msg).startswith("Client is not connected")


class Publisher:
    """Delivers the outbox and live ECG over MQTT; an async context manager.

    Parameters
    ----------
    cfg
        Broker settings.
    gateway_id
        Pseudonymous gateway id (topics, default client id).
    outbox
        Durable outbox; only touched from the event loop thread.
    status_devices
        Called on the event loop for the ``devices`` facts of each status message.
    status_period_s
        Seconds between retained "online" status messages.
    live_max_rate_hz
        At most this many live messages per second per topic; more are dropped.
    retry_backoff_s
        Seconds before a message refused by the broker (failure PUBACK) is retried.
    reconnect_delay_s
        (first, cap) reconnect delay, seconds; doubles after each failure up to the cap,
        times a random 0.5-1.0 (jitter: gateways that lost the broker together do not
        all come back at the same instant).
    ack_timeout_s
        Seconds without PUBACK on a live connection before a message is published
        again (default max(60, 2 × keepalive)).
    offline_timeout_s
        On exit, seconds to wait for the broker to acknowledge the "offline" status.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        gateway_id: str,
        outbox: Outbox,
        *,
        status_devices: Callable[[], dict] | None = None,
        status_period_s: float = 30.0,
        live_max_rate_hz: float = 5.0,
        retry_backoff_s: float = 30.0,
        reconnect_delay_s: tuple[float, float] = (1.0, 60.0),
        ack_timeout_s: float | None = None,
        offline_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.status_topic = f"{cfg.topic_prefix}/{gateway_id}/status"
        self.stats = PublisherStats()
        self.state = LinkState.STOPPED
        self._status_devices = status_devices
        self._status_period_s = status_period_s
        self._live_min_interval_s = 1.0 / live_max_rate_hz if live_max_rate_hz > 0 else 0.0
        self._retry_backoff_s = retry_backoff_s
        self._reconnect_delay_s = reconnect_delay_s
        self._reconnect = Backoff(reconnect_delay_s)  # used on the paho thread only
        self._refused_at_cap = False
        self._exiting = False  # __aexit__ started: no more "online"
        self._ack_timeout_s = (
            ack_timeout_s if ack_timeout_s is not None else max(60.0, 2.0 * cfg.keepalive_s)
        )
        self._offline_timeout_s = offline_timeout_s
        self._clock = clock
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._closing = False
        self._window = cfg.inflight
        self._inflight: dict[int, _InFlight] = {}
        self._resending = False
        self._backoff: dict[int, float] = {}  # row_id -> monotonic s when it may be retried
        self._live_last: dict[str, float] = {}  # topic -> monotonic s of last live publish
        self._ssl_context: ssl.SSLContext | None = None
        self._probe: asyncio.Task[None] | None = None
        self._failing = False

    # --- public -------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    @property
    def inflight(self) -> int:
        """Outbox messages published and not yet acknowledged."""
        return len(self._inflight)

    def wake(self) -> None:
        """Nudge the drain task (call after ``outbox.put``); safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def publish_live(self, topic: str, payload: bytes) -> bool:
        """Send live ECG, QoS 0, best effort, not stored.

        Dropped (and counted) when not connected or when this topic already had a
        message less than ``1 / live_max_rate_hz`` s ago. Returns True when sent.
        """
        client = self._client
        if client is None or not self._connected:
            self.stats.live_dropped += 1
            self.stats.live_dropped_offline += 1
            return False
        now = time.monotonic()
        last = self._live_last.get(topic)
        if last is not None and now - last < self._live_min_interval_s:
            self.stats.live_dropped += 1
            self.stats.live_dropped_rate += 1
            return False
        try:
            info = client.publish(topic, payload, qos=0)
        except ValueError as exc:
            self.stats.live_dropped += 1
            self.stats.last_error = f"live message to {topic!r} refused: {exc}"
            log.error("%s", self.stats.last_error)
            return False
        if info.rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.stats.live_dropped += 1
            self.stats.live_dropped_offline += 1
            return False
        self._live_last[topic] = now
        self.stats.live_sent += 1
        return True

    async def wait_drained(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the outbox is empty and nothing is in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self._inflight and self.outbox.pending() == 0:
                return True
            if loop.time() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.05)

    # --- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Publisher:
        self._loop = asyncio.get_running_loop()
        client = self._make_client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client = client
        self.state = LinkState.CONNECTING
        client.loop_start()
        log.info(
            "MQTT publisher %s: broker %s, status topic %s",
            self.cfg.client_id or self.gateway_id,
            self.cfg.url,
            self.status_topic,
        )
        self._tasks = [
            asyncio.create_task(self._drain_loop(), name="mqtt-drain"),
            asyncio.create_task(self._status_loop(), name="mqtt-status"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Publish "offline" (waits up to ``offline_timeout_s``); stop draining; disconnect.

        The "offline" status goes through the outbox like every status. If the broker has
        not acknowledged it in time (a backlog, a slow link), the gateway disconnects with
        reason "Disconnect with Will Message" so the broker publishes the retained
        "offline" Will instead. Un-acknowledged rows stay in the outbox (sent at next
        start; the next status supersedes a waiting "offline").
        """
        offline_delivered = False
        self._exiting = True
        for task in self._tasks:  # no "online" may follow the "offline"
            if task.get_name() == "mqtt-status":
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._connected:
            row = self._put_status("offline")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._offline_timeout_s
            while (
                row is not None
                and self._connected
                and self.outbox.waiting(row)
                and loop.time() < deadline
            ):
                self._wake.set()
                await asyncio.sleep(0.02)
            offline_delivered = row is not None and not self.outbox.waiting(row)
            if not offline_delivered:
                log.warning("broker did not acknowledge the offline status before exit")
        if self._probe is not None:
            self._tasks.append(self._probe)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        client = self._client
        if client is None:
            return
        self._closing = True
        if offline_delivered:
            client.disconnect()
        else:  # MQTT v5 reason 0x04: the broker publishes our Will ("offline", retained)
            client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        await asyncio.to_thread(client.loop_stop)
        self._connected = False
        self.state = LinkState.STOPPED
        if self._inflight:
            log.info(
                "%d message(s) in flight at exit stay in the outbox (re-sent at next start)",
                len(self._inflight),
            )
        self._inflight.clear()
        self._client = None

    # --- client setup -------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or self.gateway_id,
            protocol=mqtt.MQTTv5,
        )
        paho_log = logging.getLogger(f"{__name__}.paho")
        if _quiet_paho_shutdown not in paho_log.filters:
            paho_log.addFilter(_quiet_paho_shutdown)
        client.enable_logger(paho_log)
        if cfg.password_file is not None:
            if cfg.username is None:
                raise PublisherError("mqtt.password_file is set but mqtt.username is not")
            try:
                password = cfg.password_file.read_text().strip("\r\n")
            except OSError as exc:
                raise PublisherError(
                    f"cannot read mqtt.password_file {cfg.password_file}: {exc.strerror}"
                ) from None
            if os.stat(cfg.password_file).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning(
                    "password file %s is readable by others; chmod 600 it", cfg.password_file
                )
            client.username_pw_set(cfg.username, password)
        elif cfg.username is not None:
            client.username_pw_set(cfg.username)
        if cfg.tls:
            self._ssl_context = _tls_context(cfg)
            client.tls_set_context(self._ssl_context)
        else:
            log.warning(
                "INSECURE: MQTT to %s is plaintext (mqtt://, insecure = true): ECG data and "
                "credentials travel unencrypted. Use mqtts:// for patient data.",
                cfg.url,
            )
        client.will_set(
            self.status_topic,
            status_payload(self.gateway_id, "offline", now=self._clock()),
            qos=1,
            retain=True,
        )
        self._schedule_reconnect(client, self._reconnect.delays[0])
        client.max_inflight_messages_set(cfg.inflight + 1)
        client.max_queued_messages_set(0)
        client.on_pre_connect = self._cb_pre_connect
        client.on_connect = self._cb_connect
        client.on_connect_fail = self._cb_connect_fail
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        return client

    # --- paho thread: hand facts to the loop, never block ---------------------------------
    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing to update
            loop.call_soon_threadsafe(fn, *args)

    def _cb_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # The Will's time is that of the connection it guards.
        client.will_set(
            self.status_topic,
            status_payload(self.gateway_id, "offline", now=self._clock()),
            qos=1,
            retain=True,
        )

    def _cb_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            if reason_code.value in _AUTH_FAILURES:  # retrying soon cannot fix credentials
                self._schedule_reconnect(client, self._reconnect.at_cap())
                self._refused_at_cap = True
            self._to_loop(self._on_refused, reason_code.getName(), int(reason_code.value))
            return
        self._reconnect.reset()
        receive_max = getattr(properties, "ReceiveMaximum", None)
        self._to_loop(self._on_connected, bool(flags.session_present), receive_max)

    def _cb_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._schedule_reconnect(client, self._reconnect.next())
        self._to_loop(self._on_connect_failed)

    def _schedule_reconnect(self, client: mqtt.Client, delay_s: float) -> None:
        """Make paho's next reconnect wait exactly ``delay_s`` (jittered by :class:`Backoff`).

        paho doubles its delay without jitter; called from the paho thread after each
        failure (before paho waits), ``reconnect_delay_set(d, d)`` makes its wait ``d``.
        """
        client.reconnect_delay_set(delay_s, delay_s)  # type: ignore[arg-type]  # float math

    def _cb_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if self._refused_at_cap:  # a refused CONNECT is followed by this disconnect
            self._refused_at_cap = False
        else:
            self._schedule_reconnect(client, self._reconnect.next())
        self._to_loop(self._on_disconnected, str(reason_code))

    def _cb_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        # paho counts any PUBACK as "published"; only a success reason code acks the row.
        self._to_loop(
            self._on_puback,
            mid,
            bool(reason_code.is_failure),
            reason_code.getName(),
            reason_code.value,
        )

    # --- event loop: state changes ------------------------------------------------------
    def _on_connected(self, session_present: bool, receive_max: int | None) -> None:
        self._connected = True
        self._failing = False
        self.state = LinkState.CONNECTED
        self.stats.connects += 1
        self._window = self.cfg.inflight
        if receive_max:
            self._window = max(1, min(self.cfg.inflight, int(receive_max) - 1))  # 1 for status
        log.info(
            "connected to %s (session present: %s, %d message(s) to re-send)",
            self.cfg.url,
            session_present,
            len(self._inflight),
        )
        if self._inflight:
            self._resending = True
            self.stats.resent_after_reconnect += len(self._inflight)
            now = time.monotonic()
            for entry in self._inflight.values():
                entry.sent_at = now
        if not self._exiting:
            self._put_status("online")

    def _on_refused(self, reason: str, value: int) -> None:
        self.stats.connect_failures += 1
        self.state = LinkState.REFUSED
        hint = " (check mqtt.username / mqtt.password_file)" if value in _AUTH_FAILURES else ""
        error = f"broker {self.cfg.url} refused the connection: {reason} ({value:#04x}){hint}"
        if error != self.stats.last_error:
            log.error("%s; retrying every %s s", error, self._reconnect_delay_s[1])
        self.stats.last_error = error

    def _on_connect_failed(self) -> None:
        self.stats.connect_failures += 1
        if self.state is not LinkState.REFUSED:
            self.state = LinkState.DISCONNECTED
        if self._failing or self._client is None:
            return
        self._failing = True  # until the next successful connect
        self.stats.last_error = f"cannot connect to broker {self.cfg.url}; retrying"
        # paho does not say why; one probe per streak of failures finds out (TLS or TCP).
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._explain_connect_failure(), name="mqtt-probe")

    async def _explain_connect_failure(self) -> None:
        detail = await asyncio.to_thread(self._probe_link)
        if self._connected:
            return
        self.stats.last_error = f"cannot connect to broker {self.cfg.url}: {detail}; retrying"
        log.warning("%s (the outbox keeps all strips and events)", self.stats.last_error)

    def _probe_link(self) -> str:
        """Try TCP (+ TLS handshake) once, as paho does; describe what fails."""
        host, port = self.cfg.host, self.cfg.port
        try:
            with socket.create_connection((host, port), timeout=5.0) as sock:
                if self._ssl_context is not None:
                    with self._ssl_context.wrap_socket(sock, server_hostname=host) as tls:
                        # With TLS 1.3 the broker checks our certificate after the handshake
                        # and answers a bad one with an alert: read briefly to see it.
                        tls.settimeout(1.0)
                        with contextlib.suppress(TimeoutError, socket.timeout):
                            tls.recv(1)
        except ssl.SSLCertVerificationError as exc:
            return f"TLS certificate check failed: {exc.verify_message}"
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
                return (
                    f"the broker refused our client certificate ({reason}): check that "
                    "mqtt.cert_file was issued by the CA the broker trusts and is not expired"
                )
            return f"TLS handshake failed: {reason}"
        except OSError as exc:
            return exc.strerror or str(exc)
        return "network or TLS error (the link worked when probed again)"

    def _on_disconnected(self, reason: str) -> None:
        was_connected = self._connected
        self._connected = False
        if self._closing:
            return
        if not was_connected and self.state is not LinkState.REFUSED:
            # Dropped before any CONNACK (e.g. TLS 1.3 rejecting our certificate after
            # the handshake): a failed connection attempt, and worth explaining.
            self._on_connect_failed()
            return
        if self.state is not LinkState.REFUSED:
            self.state = LinkState.DISCONNECTED
        if was_connected:
            self.stats.disconnects += 1
            self.stats.last_error = f"connection to {self.cfg.url} lost: {reason}"
            log.warning(
                "%s; %d message(s) in flight will be re-sent",
                self.stats.last_error,
                len(self._inflight),
            )

    def _on_puback(self, mid: int, failed: bool, reason: str, value: int) -> None:
        if self._client is None:
            return  # after exit: the outbox may be closed; the row is re-sent next start
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # a message we had given up waiting for (ack timeout); re-sent already
        if not self._inflight:
            self._resending = False
        try:
            if failed:
                self._nack(entry, f"{reason} ({value:#04x})")
            else:
                self.outbox.ack(entry.row_id)
                self.stats.acked += 1
        except Exception as exc:
            self.stats.last_error = f"outbox update failed for row {entry.row_id}: {exc!r}"
            log.exception("outbox update failed for row %d", entry.row_id)
        self._wake.set()

    def _nack(self, entry: _InFlight, reason: str) -> None:
        self.stats.nacked += 1
        self.stats.nacked_by_reason[reason] = self.stats.nacked_by_reason.get(reason, 0) + 1
        self._backoff[entry.row_id] = time.monotonic() + self._retry_backoff_s
        msg = entry.msg
        self.stats.last_error = (
            f"broker refused {msg.kind} {msg.msg_id} (device {msg.device_id}, seq {msg.seq}) "
            f"on {msg.topic}: {reason}; kept in the outbox, retry in {self._retry_backoff_s:g} s"
        )
        log.error("%s", self.stats.last_error)
        self.outbox.nack(entry.row_id, reason)

    # --- event loop: tasks --------------------------------------------------------------
    def _devices(self) -> dict[str, Any]:
        if self._status_devices is None:
            return {}
        try:
            return dict(self._status_devices())
        except Exception as exc:
            self.stats.last_error = f"status_devices() failed: {exc!r}"
            log.exception("status_devices() failed")
            return {}

    def _put_status(self, state: str) -> int | None:
        """Commit a retained status to the outbox (superseding a waiting one); its row id."""
        now = self._clock()
        try:
            body = status_body(
                self.gateway_id,
                state,
                devices=self._devices(),
                now=now,
                transmission=self._transmission(),
            )
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.stats.last_error = f"status message could not be built: {exc!r}"
            log.exception("status message could not be built")
            body = status_body(self.gateway_id, state, now=now)
        try:
            msg = self.outbox.put(
                "status", self.gateway_id, self.status_topic, body, retain=True, replace=True
            )
        except Exception as exc:  # a full disk must not stop the publisher
            self.stats.last_error = f"status could not be stored: {exc!r}"
            log.exception("status could not be stored in the outbox")
            return None
        self.stats.status_sent += 1
        self._wake.set()
        return msg.row_id

    def _transmission(self) -> dict[str, Any]:
        """Delivery facts for the status: what waits in the outbox, what the broker refused."""
        st = self.stats
        return {
            "outbox_pending": self.outbox.pending(),
            "inflight": len(self._inflight),
            "acked": st.acked,
            "nacked": st.nacked,
            "nacked_by_reason": dict(st.nacked_by_reason),
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self._status_period_s)
            self._put_status("online")

    async def _drain_loop(self) -> None:
        tick_s = 0.5  # re-checks backoffs and ack timeouts even when nobody wakes us
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._drain_once()
            except Exception as exc:
                self.stats.last_error = f"drain failed: {exc!r}"
                log.exception("outbox drain failed; retrying")
                await asyncio.sleep(1.0)

    def _drain_once(self) -> None:
        client = self._client
        if client is None or not self._connected:
            return
        now = time.monotonic()
        self._expire_unacked(now)
        if self._resending:
            return  # paho is re-sending the previous connection's messages: keep order
        for row_id, until in list(self._backoff.items()):
            if until <= now:
                del self._backoff[row_id]
        room = self._window - len(self._inflight)
        if room <= 0:
            return
        exclude = {e.row_id for e in self._inflight.values()} | set(self._backoff)
        for msg in self.outbox.peek(room, exclude=exclude):
            if not self._send(client, msg, now):
                break

    def _expire_unacked(self, now: float) -> None:
        for mid, entry in list(self._inflight.items()):
            if now - entry.sent_at > self._ack_timeout_s:
                del self._inflight[mid]
                self.stats.ack_timeouts += 1
                log.warning(
                    "no PUBACK for %s %s after %.0f s; publishing it again",
                    entry.msg.kind,
                    entry.msg.msg_id,
                    now - entry.sent_at,
                )
        if not self._inflight:
            self._resending = False

    def _send(self, client: mqtt.Client, msg: OutboxMessage, now: float) -> bool:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [
            ("msg_id", msg.msg_id),
            ("seq", str(msg.seq)),
            ("kind", msg.kind),
            ("device_id", msg.device_id),
        ]
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1  # UTF-8
        try:
            info = client.publish(
                msg.topic, msg.payload, qos=1, retain=msg.retain, properties=props
            )
        except ValueError as exc:  # bad topic or payload: retrying the same bytes cannot help
            self._nack(_InFlight(msg.row_id, msg, now), f"invalid message: {exc}")
            return True
        if info.rc not in _OK_RC:
            self.stats.last_error = f"paho refused publish of {msg.msg_id}: {info.rc.name}"
            log.warning("%s; will retry", self.stats.last_error)
            return False
        self._inflight[info.mid] = _InFlight(msg.row_id, msg, now)
        self.stats.published += 1
        if info.rc == mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN:
            self._resending = True  # paho sends it on reconnect, before anything newer
        return True
