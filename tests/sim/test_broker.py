"""The pure-Python broker with real paho clients (MQTT v5 and v3.1.1) on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sim.broker import (
    MiniBroker,
    MqttProtocolError,
    decode_varint,
    encode_varint,
    topic_matches,
)
from sim.embedded_broker import EmbeddedBroker, find_mosquitto

pytestmark = pytest.mark.timeout(30)


class Client:
    """A paho client with its own thread, recording messages."""

    def __init__(self, port: int, protocol: int = mqtt.MQTTv5, will: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.got = threading.Event()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        if will:
            self.c.will_set(will, b"gone", qos=1, retain=True)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        self.messages.append(msg)
        self.got.set()

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for SUBACK (without blocking the broker's event loop)."""
        self.c.subscribe(topic, qos)
        await _until(self.ready.is_set)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, **kw) -> None:
        info = self.c.publish(topic, payload, qos=qos, **kw)
        await asyncio.to_thread(info.wait_for_publish, 5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def _until(pred, limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not pred():
            await asyncio.sleep(0.02)


def test_codec_and_matching() -> None:
    for n in (0, 127, 128, 16_383, 16_384, 268_435_455):
        assert decode_varint(encode_varint(n)) == (n, len(encode_varint(n)))
    with pytest.raises(MqttProtocolError):
        decode_varint(b"\xff\xff\xff\xff\x01")
    assert topic_matches("ecg/v1/+/+/event", "ecg/v1/gw/p1/event")
    assert topic_matches("ecg/#", "ecg") and topic_matches("ecg/#", "ecg/v1/x")
    assert not topic_matches("ecg/+", "ecg/v1/x") and not topic_matches("#", "$SYS/x")


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v3.1.1"])
async def test_pubsub_retained_and_properties(protocol: int) -> None:
    async with MiniBroker() as broker:
        pub = Client(broker.port)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("msg_id", "abc"), ("seq", "7")]
        await pub.publish("ecg/v1/gw/status", b"online", retain=True)
        sub = Client(broker.port, protocol)
        await sub.subscribe("ecg/v1/#")
        await _until(lambda: len(sub.messages) == 1)
        assert sub.messages[0].retain and sub.messages[0].payload == b"online"
        await pub.publish("ecg/v1/gw/p1/event", b"{}", properties=props)
        pub.c.publish("ecg/v1/gw/p1/live", b"x", qos=0)
        await _until(lambda: len(sub.messages) == 3)
        ev = sub.messages[1]
        assert ev.topic == "ecg/v1/gw/p1/event" and ev.qos == 1 and not ev.retain
        if protocol == mqtt.MQTTv5:
            assert ("msg_id", "abc") in ev.properties.UserProperty
        pub.close()
        sub.close()


async def test_last_will_on_abrupt_close_and_garbage_survived() -> None:
    async with MiniBroker() as broker:
        sub = Client(broker.port)
        await sub.subscribe("gw/status")
        dying = Client(broker.port, will="gw/status")
        await _until(lambda: broker.stats.connections >= 2)
        await asyncio.sleep(0.2)
        dying.c.socket().close()  # no DISCONNECT: the will goes out
        dying.c.loop_stop()
        await _until(lambda: any(m.payload == b"gone" for m in sub.messages))
        with socket.create_connection(("127.0.0.1", broker.port)) as raw:
            raw.sendall(b"\x10\xff\xff\xff\xff\xff garbage")
        await _until(lambda: broker.stats.protocol_errors == 1)
        late = Client(broker.port)
        await late.subscribe("gw/status")
        await _until(lambda: len(late.messages) == 1)
        assert late.messages[0].payload == b"gone" and late.messages[0].retain
        for c in (sub, late):
            c.close()


@pytest.mark.parametrize("prefer", ["python", "mosquitto"])
async def test_embedded_broker(prefer: str) -> None:
    if prefer == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    async with EmbeddedBroker(prefer=prefer) as broker:
        assert broker.kind == prefer and broker.url.startswith("mqtt://127.0.0.1:")
        sub = Client(broker.port)
        await sub.subscribe("t")
        pub = Client(broker.port)
        await pub.publish("t", b"hello")
        await _until(lambda: len(sub.messages) == 1)
        sub.close()
        pub.close()
