"""The center's one MQTT v5 connection: persistent session, QoS 1, manual acknowledgement.

paho runs its network loop in its own thread. Incoming messages go to ``on_message`` with
the connection *generation* they arrived on; :meth:`MqttLink.ack` sends the PUBACK only
for messages of the current connection (after a reconnect the broker sends unacknowledged
messages again, and an old packet id may by then name a different message). Outgoing QoS 1
publishes (the acknowledgements to gateways) report their PUBACK to ``on_puback``.
"""

from __future__ import annotations

import logging
import ssl
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from center.config import MqttConfig

__all__ = ["Incoming", "LinkError", "MqttLink"]

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The MQTT link cannot be set up (TLS files, password file)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One received message, as the ingest worker needs it."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    user_props: dict[str, str] = field(default_factory=dict)


def _tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """TLS ≥ 1.2 with the broker's certificate and host name verified."""
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file is not None:
        if cfg.key_file is not None and cfg.key_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LinkError(f"{cfg.key_file} must be readable by its owner only (chmod 600)")
        ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    return ctx


class MqttLink:
    """Connect, subscribe and keep the session; see the module docstring."""

    def __init__(
        self,
        cfg: MqttConfig,
        on_message: Callable[[Incoming], None],
        on_puback: Callable[[int, bool, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_message_cb = on_message
        self._on_puback_cb = on_puback
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.last_error: str | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 30)
        if cfg.username is not None:
            password = None
            if cfg.password_file is not None:
                try:
                    password = cfg.password_file.read_text().strip()
                except OSError as exc:
                    raise LinkError(f"cannot read mqtt.password_file: {exc.strerror}") from None
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls:
            self.client.tls_set_context(_tls_context(cfg))
        else:
            log.warning("MQTT without TLS (%s): allowed by insecure = true; never for "
                        "patient data outside a test bench", cfg.url)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def topics(self) -> list[tuple[str, SubscribeOptions]]:
        """Our subscriptions: records through the share group, statuses to every process."""
        p, g = self.cfg.topic_prefix, self.cfg.share_group
        shared = "$share/" + g + "/" if g else ""
        opts = SubscribeOptions(qos=1)
        kinds = ("event", "strip", "study", "record")  # record: full disclosure (#13)
        return [(f"{shared}{p}/+/+/{kind}", opts) for kind in kinds] + [
            (f"{p}/+/status", opts),
            (f"{shared}{p}/+/ping", opts),  # provisioning's test transmission (issue #14)
        ]

    def start(self) -> None:
        """Connect in the background (paho's thread); reconnects by itself."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        props.ReceiveMaximum = self.cfg.receive_maximum
        self.client.connect_async(
            self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
            clean_start=False, properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker) and stop paho's thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """PUBACK a stored message if it came on the current connection; whether sent."""
        if qos == 0 or generation != self.generation or not self.connected.is_set():
            return False
        return self.client.ack(mid, qos) == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes) -> int | None:
        """QoS 1 publish; the packet id, or None when paho refused it (not connected)."""
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    # --- paho callbacks (network thread; they never block) -------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.error("broker refused the connection: %s", reason_code)
            return
        self.generation += 1
        self.last_error = None
        self.connected.set()
        log.info("connected to %s (session present: %s)", self.cfg.url, flags.session_present)
        client.subscribe(self.topics())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self.last_error = f"subscription refused: {', '.join(refused)}"
            log.error("broker refused a subscription: %s", ", ".join(refused))
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason_code != 0:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        self._on_message_cb(
            Incoming(self.generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload), props)
        )

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if self._on_puback_cb is not None:
            self._on_puback_cb(mid, not reason_code.is_failure, str(reason_code))
