"""Publisher against a real mosquitto: delivery, status, Last Will, outage, ACL, auth, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import __version__
from gateway.config import MqttConfig
from gateway.mqtt import LinkState, Publisher, PublisherError
from gateway.outbox import Outbox, OutboxMessage
from gateway.status import status_payload
from tests.support import (
    Mosquitto,
    MqttListener,
    Received,
    make_client_cert,
    make_tls_files,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

GW = "gw1"
PREFIX = "ecg/v1"
STATUS = f"{PREFIX}/{GW}/status"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

FAST = {"reconnect_delay_s": (0.1, 0.5), "status_period_s": 60.0, "stable_s": 0.3}
"""Publisher options for tests: reconnect quickly after a broker outage."""


def mqtt_config(broker: Mosquitto, **kw: Any) -> MqttConfig:
    return MqttConfig(url=broker.url, insecure=broker.tls is None, keepalive_s=5, **kw)


def strip_topic(device_id: str, kind: str = "strip", gateway_id: str = GW) -> str:
    return f"{PREFIX}/{gateway_id}/{device_id}/{kind}"


def put(
    outbox: Outbox, device_id: str, n: int, kind: str = "strip", **kw: Any
) -> list[OutboxMessage]:
    """Store ``n`` small strip/event bodies for ``device_id``."""
    out = []
    for i in range(n):
        body = {
            "schema": "ecg-gateway/strip/v1",
            "kind": kind,
            "gateway_id": GW,
            "device_id": device_id,
            "samples": {"first_seq": 1300 * i, "end_seq": 1300 * (i + 1), "fs": 130.0},
        }
        topic = kw.get("topic") or strip_topic(device_id, kind)
        out.append(outbox.put(kind, device_id, topic, body))
    return out


def data_messages(listener: MqttListener) -> list[Received]:
    return [m for m in list(listener.messages) if not m.topic.endswith("/status")]


def first_arrivals(messages: list[Received]) -> list[Received]:
    """Each msg_id once, in order of first arrival (consumers de-duplicate by msg_id)."""
    seen: set[str] = set()
    out = []
    for m in messages:
        msg_id = m.user_properties.get("msg_id")
        if msg_id not in seen:
            seen.add(msg_id)
            out.append(m)
    return out


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "outbox.sqlite3")
    yield ob
    ob.close()


def statuses(listener: MqttListener) -> list[dict]:
    return [m.json() for m in listener.on(STATUS)]


# --- pure -------------------------------------------------------------------------------


def test_status_payload_schema() -> None:
    body = json.loads(
        status_payload(GW, "online", devices={"patch-1": {"samples": 130}}, now=1_700_000_000.25)
    )
    assert body == {
        "schema": "ecg-gateway/status/v1",
        "gateway_id": GW,
        "state": "online",
        "time": "2023-11-14T22:13:20.250Z",
        "version": __version__,
        "devices": {"patch-1": {"samples": 130}},
    }


# --- delivery ---------------------------------------------------------------------------


async def test_outbox_messages_arrive_with_user_properties(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, f"{PREFIX}/{GW}/#")
    stored = put(outbox, "patch-1", 5) + put(outbox, "cart-1", 2, kind="event")
    caplog.set_level(logging.WARNING, logger="gateway.mqtt")
    async with Publisher(mqtt_config(broker), GW, outbox, **FAST) as pub:
        assert await pub.wait_drained(timeout=10.0)
        late = put(outbox, "patch-1", 3)  # stored while running: wake() sends them
        pub.wake()
        assert await pub.wait_drained(timeout=10.0)
        await wait_for(lambda: len(data_messages(listener)) >= 10, "10 messages at subscriber")
        assert pub.connected
        assert pub.stats()["acked"] == 10 + 1  # and the "online" status, through the outbox too
        assert pub.stats()["nacked"] == 0
    assert outbox.pending() == 0
    assert "INSECURE" in caplog.text  # plaintext is loud

    got = {m.user_properties["msg_id"]: m for m in data_messages(listener)}
    assert set(got) == {s.msg_id for s in stored + late}
    for s in stored + late:
        m = got[s.msg_id]
        assert m.topic == s.topic
        assert m.qos == 1
        assert m.user_properties["seq"] == str(s.seq)
        body = m.json()
        assert body["msg_id"] == s.msg_id
        assert body["seq"] == s.seq
        assert body["device_id"] == s.device_id
        assert m.payload == s.payload
    patch_seqs = [m.json()["seq"] for m in data_messages(listener) if "patch-1" in m.topic]
    assert patch_seqs == sorted(patch_seqs) == list(range(1, 9))


async def test_status_online_while_running_offline_after_exit(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    facts = {"patch-1": {"samples": 1300, "heart_rate_bpm": 72.0}}
    async with Publisher(mqtt_config(broker), GW, outbox, status_devices=lambda: facts) as pub:
        await wait_for(lambda: pub.connected, "connected")
        await wait_for(lambda: pub.stats()["status_sent"] >= 1, "status sent")
        late = mqtt_listener(broker, STATUS)  # subscribes after: reads the retained message
        await wait_for(lambda: statuses(late), "retained online status")
        online = statuses(late)[-1]
        assert late.on(STATUS)[-1].retain
        assert online["state"] == "online"
        assert online["devices"] == facts
        assert online["gateway_id"] == GW
        assert ISO_UTC.match(online["time"])
    assert not pub.connected
    later = mqtt_listener(broker, STATUS)
    await wait_for(lambda: statuses(later), "retained offline status")
    assert statuses(later)[-1]["state"] == "offline"
    assert later.on(STATUS)[-1].retain


async def test_periodic_status(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, STATUS)
    async with Publisher(mqtt_config(broker), GW, outbox, status_period_s=0.1):
        await wait_for(lambda: len(statuses(listener)) >= 3, "three status messages")
    assert {s["state"] for s in statuses(listener)[:3]} == {"online"}


async def test_status_goes_through_the_outbox_latest_wins(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    """During an outage statuses wait in the outbox as one row (the latest), retained."""
    broker = mosquitto()
    async with Publisher(
        mqtt_config(broker), GW, outbox, **{**FAST, "status_period_s": 0.1}
    ) as pub:
        await wait_for(lambda: pub.connected, "connected")
        broker.stop()
        await wait_for(lambda: not pub.connected, "outage seen")
        await wait_for(lambda: pub.stats()["status_sent"] >= 6, "statuses during the outage")
        assert outbox.pending_by_kind() == {"status": 1}
        waiting = outbox.peek(10)[0]
        assert waiting.retain and waiting.topic == STATUS
        assert outbox.stats["superseded"] >= 4
        broker.start()
        await wait_for(lambda: pub.connected, "reconnected")
        assert await pub.wait_drained(timeout=10.0)
        late = mqtt_listener(broker, STATUS)
        await wait_for(lambda: statuses(late), "retained status after the outage")
        got = late.on(STATUS)[0]
        assert got.retain and got.json()["state"] == "online"
        assert got.user_properties["kind"] == "status"


async def test_no_online_after_offline_even_when_the_period_ends_at_exit(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, STATUS)
    for _ in range(3):  # the periodic status fires all the time, also during the exit
        async with Publisher(mqtt_config(broker), GW, outbox, status_period_s=0.01):
            await wait_for(lambda: len(statuses(listener)) >= 2, "periodic statuses")
        await wait_for(lambda: statuses(listener)[-1]["state"] == "offline", "offline")
        await asyncio.sleep(0.2)
        assert statuses(listener)[-1]["state"] == "offline"


async def test_offline_not_acknowledged_in_time_falls_back_to_the_will(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, STATUS)
    async with Publisher(mqtt_config(broker), GW, outbox, offline_timeout_s=0.0) as pub:
        await wait_for(lambda: [s for s in statuses(listener) if s["state"] == "online"], "online")
    await wait_for(lambda: statuses(listener)[-1]["state"] == "offline", "the Will, on exit")
    later = mqtt_listener(broker, STATUS)
    await wait_for(lambda: statuses(later), "retained status")
    assert later.on(STATUS)[-1].retain and statuses(later)[-1]["state"] == "offline"
    assert pub.stats()["status_sent"] >= 2


async def test_last_will_when_connection_dies(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, STATUS)
    async with Publisher(mqtt_config(broker), GW, outbox, **FAST) as pub:
        await wait_for(lambda: [s for s in statuses(listener) if s["state"] == "online"], "online")
        # The link dies without a DISCONNECT packet (as on a crash or a cut cable).
        assert pub.client is not None and pub.client._writer is not None
        pub.client._writer.transport.abort()
        await wait_for(
            lambda: [s for s in statuses(listener) if s["state"] == "offline"], "Last Will"
        )
        await wait_for(lambda: pub.stats()["connects"] >= 2 and pub.connected, "reconnected")
        await wait_for(lambda: statuses(listener)[-1]["state"] == "online", "online again")
        assert pub.stats()["disconnects"] == 1
        assert "lost" in (pub.stats()["last_error"] or "")
    states = [s["state"] for s in statuses(listener)]
    assert states[-1] == "offline"  # the clean exit


async def test_broker_outage_mid_stream_loses_nothing(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto(persistence=True)
    # The monitoring center's consumer: a persistent session kept across the restart.
    listener = mqtt_listener(
        broker, f"{PREFIX}/{GW}/+/strip", client_id="center", session_expiry_s=600
    )
    devices = ("patch-1", "cart-1")
    n_per_device = 40
    stored: list[OutboxMessage] = []

    async def produce(pub: Publisher) -> None:
        for _ in range(n_per_device):
            for d in devices:
                stored.extend(put(outbox, d, 1))
            pub.wake()
            await asyncio.sleep(0.01)

    async with Publisher(mqtt_config(broker, inflight=5), GW, outbox, **FAST) as pub:
        producer = asyncio.create_task(produce(pub))
        await wait_for(lambda: pub.stats()["acked"] >= 10, "first messages acked")
        broker.pause()  # the broker hangs: PUBACKs stop, messages pile up in flight...
        await wait_for(lambda: pub.window.inflight == 5, "a full in-flight window")
        broker.stop()  # ...then goes down; the producer goes on storing
        await wait_for(lambda: not pub.connected, "publisher saw the outage")
        await asyncio.sleep(0.3)
        live_during_outage = pub.publish_live(strip_topic("patch-1", "live"), b"{}")
        broker.start()
        await producer
        pub.wake()
        assert await pub.wait_drained(timeout=30.0), broker.log()
        assert pub.stats()["disconnects"] >= 1
        assert pub.stats()["connects"] >= 2
        assert pub.stats()["resent_after_reconnect"] >= 1
    assert not live_during_outage
    assert outbox.pending() == 0

    expected = {m.msg_id for m in stored}
    assert len(expected) == 2 * n_per_device

    def received_ids() -> set[str]:
        return {m.user_properties.get("msg_id") for m in data_messages(listener)}

    await wait_for(lambda: expected <= received_ids(), "every message at the consumer")
    unique = first_arrivals(data_messages(listener))
    assert len(unique) == len(expected)
    for d in devices:
        seqs = [int(m.user_properties["seq"]) for m in unique if f"/{d}/" in m.topic]
        assert seqs == list(range(1, n_per_device + 1)), f"{d}: order or completeness broken"


async def test_stalled_broker_unacked_messages_are_published_again(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, f"{PREFIX}/{GW}/+/strip")
    cfg = mqtt_config(broker, inflight=3)
    async with Publisher(cfg, GW, outbox, ack_timeout_s=0.3, **FAST) as pub:
        await wait_for(lambda: pub.connected, "connected")
        broker.pause()  # PUBACKs stop coming
        stored = put(outbox, "patch-1", 6)
        pub.wake()
        await wait_for(lambda: pub.stats()["ack_timeouts"] >= 1, "the stall noticed")
        broker.resume()
        assert await pub.wait_drained(timeout=15.0)
    expected = [s.msg_id for s in stored]
    await wait_for(
        lambda: set(expected) <= {m.user_properties["msg_id"] for m in data_messages(listener)},
        "all messages at consumer",
    )
    assert len(data_messages(listener)) > len(expected)  # duplicates: at least once
    assert [
        m.user_properties["msg_id"] for m in first_arrivals(data_messages(listener))
    ] == expected


async def test_broker_down_at_start_is_not_fatal(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    broker.stop()
    stored = put(outbox, "patch-1", 3)
    async with Publisher(mqtt_config(broker), GW, outbox, **FAST) as pub:
        await wait_for(lambda: pub.stats()["connect_failures"] >= 1, "a failed attempt")
        assert not pub.connected
        assert pub.state is LinkState.DISCONNECTED
        await wait_for(lambda: "refused" in (pub.stats()["last_error"] or ""), "reason found")
        assert "cannot connect" in (pub.stats()["last_error"] or "")
        await wait_for(lambda: pub.stats()["connect_failures"] >= 3, "jittered retries")
        assert not await pub.wait_drained(timeout=0.2)
        assert outbox.pending() == 3
        broker.start()
        listener = mqtt_listener(broker, f"{PREFIX}/{GW}/+/strip")
        pub.wake()
        assert await pub.wait_drained(timeout=15.0)
        # the backoff starts over once a connection has held (stable_s)
        await wait_for(lambda: pub.client.backoff.failures == 0, "the backoff started over")
    await wait_for(lambda: len(data_messages(listener)) >= 3, "3 messages")
    assert {m.user_properties["msg_id"] for m in data_messages(listener)} == {
        s.msg_id for s in stored
    }


# --- live -------------------------------------------------------------------------------


async def test_live_is_qos0_rate_limited_and_dropped_offline(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
) -> None:
    broker = mosquitto()
    topic = strip_topic("patch-1", "live")
    listener = mqtt_listener(broker, topic)
    pub = Publisher(mqtt_config(broker), GW, outbox, live_max_rate_hz=0.001, **FAST)
    assert not pub.publish_live(topic, b"{}")  # not started: dropped
    async with pub:
        await wait_for(lambda: pub.connected, "connected")
        sent = [pub.publish_live(topic, b'{"n": %d}' % i) for i in range(5)]
        other = pub.publish_live(strip_topic("cart-1", "live"), b"{}")  # own rate budget
        await wait_for(lambda: listener.on(topic), "live message")
    assert sent == [True, False, False, False, False]
    assert other
    assert pub.stats()["live_sent"] == 2
    assert pub.stats()["live_dropped"] == 5
    assert pub.stats()["live_dropped_rate"] == 4
    assert pub.stats()["live_dropped_offline"] == 1
    assert [(m.qos, m.json()) for m in listener.on(topic)] == [(0, {"n": 0})]
    assert outbox.pending() == 0  # live ECG is never stored


# --- broker refusals --------------------------------------------------------------------

USERS = {"gw1": "gw1-secret", "center": "center-secret"}
ACL = {"gw1": [f"topic write {PREFIX}/gw1/#"], "center": ["topic read #"]}


def write_password(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


async def test_acl_denied_publish_is_nacked_and_kept(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
    tmp_path: Path,
) -> None:
    broker = mosquitto(users=USERS, acl=ACL)
    listener = mqtt_listener(broker, "#", username="center", password=USERS["center"])
    cfg = mqtt_config(broker, username="gw1", password_file=write_password(tmp_path, "gw1-secret"))
    denied = put(outbox, "patch-1", 1, topic=strip_topic("patch-1", gateway_id="gw2"))[0]
    allowed = put(outbox, "patch-1", 1)[0]
    async with Publisher(cfg, GW, outbox, retry_backoff_s=0.2, **FAST) as pub:
        await wait_for(lambda: not outbox.waiting(allowed.row_id), "allowed message acked")
        await wait_for(lambda: pub.stats()["nacked"] >= 2, "denied message nacked, then retried")
        assert not await pub.wait_drained(timeout=0.2)
        assert pub.connected
        reasons = pub.stats()["nacked_by_reason"]
        assert list(reasons) == ["Not authorized (0x87)"]
        assert "Not authorized" in (pub.stats()["last_error"] or "")
        assert denied.msg_id in (pub.stats()["last_error"] or "")
    assert outbox.pending() == 1
    assert [m.msg_id for m in outbox.peek(10)] == [denied.msg_id]
    assert outbox.peek(10)[0].attempts >= 2
    assert "Not authorized" in (outbox.last_error(denied.row_id) or "")
    await wait_for(lambda: listener.on(allowed.topic), "allowed message at consumer")
    assert not listener.on(denied.topic)


async def test_wrong_password_is_refused_with_clear_error(
    mosquitto: Callable[..., Mosquitto],
    outbox: Outbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto(users=USERS)
    cfg = mqtt_config(broker, username="gw1", password_file=write_password(tmp_path, "wrong"))
    put(outbox, "patch-1", 2)
    caplog.set_level(logging.ERROR, logger="gateway.mqtt")
    async with Publisher(cfg, GW, outbox, **FAST) as pub:
        await wait_for(lambda: pub.stats()["connect_failures"] >= 1, "refused")
        assert not pub.connected
        assert pub.state is LinkState.REFUSED
        error = pub.stats()["last_error"] or ""
        assert "refused" in error
        assert "password" in error.lower() or "authorized" in error.lower()
    assert "refused the connection" in caplog.text
    assert outbox.pending() == 2


async def test_right_password_connects(
    mosquitto: Callable[..., Mosquitto], outbox: Outbox, tmp_path: Path
) -> None:
    broker = mosquitto(users=USERS)
    cfg = mqtt_config(broker, username="gw1", password_file=write_password(tmp_path, "gw1-secret"))
    put(outbox, "patch-1", 1)
    async with Publisher(cfg, GW, outbox, **FAST) as pub:
        assert await pub.wait_drained(timeout=10.0)
        assert pub.stats()["connect_failures"] == 0


# --- TLS --------------------------------------------------------------------------------


async def test_world_readable_key_file_is_refused(tmp_path: Path, outbox: Outbox) -> None:
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    cert = tmp_path / "client.pem"
    cert.write_text("")
    cfg = MqttConfig(url="mqtts://127.0.0.1:8883", cert_file=cert, key_file=key)
    with pytest.raises(PublisherError, match=r"mode 0644.*chmod 600"):
        async with Publisher(cfg, GW, outbox):
            pass


async def test_mutual_tls_delivery(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto(tls=True)
    assert broker.tls is not None
    listener = mqtt_listener(broker, f"{PREFIX}/{GW}/#")
    cfg = mqtt_config(
        broker,
        ca_file=broker.tls.ca_file,
        cert_file=broker.tls.client_cert,
        key_file=broker.tls.client_key,
    )
    assert cfg.tls
    stored = put(outbox, "patch-1", 2)
    caplog.set_level(logging.WARNING, logger="gateway.mqtt")
    async with Publisher(cfg, GW, outbox, **FAST) as pub:
        assert await pub.wait_drained(timeout=10.0)
    assert "INSECURE" not in caplog.text
    await wait_for(lambda: len(data_messages(listener)) >= 2, "2 messages over TLS")
    assert [m.user_properties["msg_id"] for m in data_messages(listener)] == [
        s.msg_id for s in stored
    ]


async def test_tls_untrusted_broker_is_not_used(
    mosquitto: Callable[..., Mosquitto], outbox: Outbox, tmp_path: Path
) -> None:
    broker = mosquitto(tls=True)
    # Our CA is not the one that signed the broker: the handshake must fail.
    other = make_tls_files(tmp_path / "other-pki")
    cfg = mqtt_config(
        broker, ca_file=other.ca_file, cert_file=other.client_cert, key_file=other.client_key
    )
    put(outbox, "patch-1", 1)
    async with Publisher(cfg, GW, outbox, **FAST) as pub:
        await wait_for(
            lambda: "certificate" in (pub.stats()["last_error"] or ""), "clear TLS error"
        )
        assert not pub.connected
        assert pub.stats()["connect_failures"] >= 1
    assert outbox.pending() == 1


async def test_status_reports_refused_messages(mosquitto, mqtt_listener, tmp_path) -> None:
    """A message the ACL refuses shows up in the retained status's transmission facts."""
    from gateway.config import MqttConfig
    from gateway.mqtt import Publisher
    from gateway.outbox import Outbox
    from tests.support import wait_for

    broker = mosquitto(
        users={"gw1": "pw", "mc": "pw"},
        acl={"gw1": ["topic write ecg/v1/gw1/#"], "mc": ["topic read ecg/v1/#"]},
    )
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "pw").chmod(0o600)
    cfg = MqttConfig(url=broker.url, insecure=True, username="gw1", password_file=tmp_path / "pw")
    listener = mqtt_listener(broker, "ecg/v1/gw1/status", username="mc", password="pw")
    with Outbox(tmp_path / "o.sqlite3") as ob:
        ob.put("event", "d1", "ecg/v1/other-gw/d1/event", {"kind": "event"})
        async with Publisher(cfg, "gw1", ob, status_period_s=0.2, retry_backoff_s=60) as pub:
            await wait_for(lambda: pub.stats()["nacked"] >= 1, "the refused publish")

            def refused() -> bool:
                last = [m.json() for m in listener.on("ecg/v1/gw1/status")][-1:]
                return bool(last) and last[0].get("transmission", {}).get("nacked", 0) >= 1

            await wait_for(refused, "status with the refusal")
        status = [m.json() for m in listener.on("ecg/v1/gw1/status")][-1]
        assert status["transmission"]["outbox_pending"] == 1
        assert any("authorized" in r.lower() for r in status["transmission"]["nacked_by_reason"])


# --- certificates as identities ---------------------------------------------------------


async def test_client_certificate_from_another_ca_is_refused(
    mosquitto: Callable[..., Mosquitto], outbox: Outbox, tmp_path: Path
) -> None:
    """The gateway trusts the broker, but its own certificate was not issued by the broker's CA."""
    broker = mosquitto(tls=True)
    assert broker.tls is not None
    rogue = make_tls_files(tmp_path / "rogue-pki", client_cn="gw1")
    cfg = mqtt_config(
        broker, ca_file=broker.tls.ca_file, cert_file=rogue.client_cert, key_file=rogue.client_key
    )
    put(outbox, "patch-1", 1)
    async with Publisher(cfg, GW, outbox, **FAST) as pub:
        await wait_for(
            lambda: "refused our client certificate" in (pub.stats()["last_error"] or ""),
            "a clear diagnosis",
        )
        assert not pub.connected
        assert pub.stats()["connects"] == 0
        assert pub.stats()["connect_failures"] >= 1
        assert "mqtt.cert_file" in (pub.stats()["last_error"] or "")
    assert outbox.pending() == 1


async def test_certificate_identity_acl_keeps_gateways_apart(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    tmp_path: Path,
) -> None:
    """mTLS with the certificate CN as the username and ``pattern write ecg/v1/%u/#``.

    Gateway gw-a, holding its own valid certificate, tries to publish as gw-b: the broker
    refuses each message (v5 reason code), the publisher counts it, keeps it in the
    outbox and says so in its status; gw-a's own messages go through.
    """
    broker = mosquitto(
        tls=True,
        identity_as_username=True,
        acl_patterns=[f"pattern write {PREFIX}/%u/#", f"pattern readwrite {PREFIX}/%u/status"],
        acl={"center": [f"topic read {PREFIX}/#"]},
    )
    assert broker.tls is not None
    pki = tmp_path / "pki"
    cert_a = make_client_cert(broker.tls, "gw-a", pki)
    cert_center = make_client_cert(broker.tls, "center", pki)
    listener = mqtt_listener(broker, f"{PREFIX}/#", cert=cert_center)

    def config(cert: tuple[Path, Path]) -> MqttConfig:
        return mqtt_config(broker, ca_file=broker.tls.ca_file, cert_file=cert[0], key_file=cert[1])

    with Outbox(tmp_path / "a.sqlite3") as box_a, Outbox(tmp_path / "b.sqlite3") as box_b:
        own = box_a.put("strip", "patch-1", strip_topic("patch-1", gateway_id="gw-a"), {"n": 1})
        forged = box_a.put("event", "patch-1", strip_topic("patch-1", gateway_id="gw-b"), {})
        async with Publisher(
            config(cert_a), "gw-a", box_a, retry_backoff_s=0.2, **{**FAST, "status_period_s": 0.3}
        ) as pub:
            await wait_for(lambda: not box_a.waiting(own.row_id), "gw-a's own strip acked")
            await wait_for(lambda: pub.stats()["nacked"] >= 2, "forged message refused, retried")
            assert list(pub.stats()["nacked_by_reason"]) == ["Not authorized (0x87)"]
            assert forged.msg_id in (pub.stats()["last_error"] or "")

            def status_says_refused() -> bool:
                st = [m.json() for m in listener.on(f"{PREFIX}/gw-a/status")]
                return bool(st) and st[-1].get("transmission", {}).get("nacked", 0) >= 1

            await wait_for(status_says_refused, "status reporting the refusal")
        assert [m.msg_id for m in box_a.peek(10)] == [forged.msg_id]  # kept, not dropped
        assert box_b.pending() == 0
    await wait_for(lambda: listener.on(own.topic), "own strip at the monitoring center")
    assert not listener.on(forged.topic)


# --- the offline status's time; a second gateway with the same id --------------------------


async def test_offline_carries_when_the_gateway_went_offline_and_the_will_says_it_cannot(
    mosquitto: Callable[..., Mosquitto],
    mqtt_listener: Callable[..., MqttListener],
    outbox: Outbox,
    tmp_path: Path,
) -> None:
    """A clean exit's "offline" has the time of the exit; the Last Will, handed to the broker
    at CONNECT, has ``time`` null, ``last_will`` true and the time the connection it guarded
    began — here after a kill -9 of the process (the broker publishes the Will)."""
    import os
    import signal
    import subprocess
    import sys

    from core.units import iso_utc

    broker = mosquitto()
    listener = mqtt_listener(broker, STATUS)
    async with Publisher(mqtt_config(broker), GW, outbox, status_period_s=0.05):
        await wait_for(lambda: len(statuses(listener)) >= 3, "online statuses")
    offline = statuses(listener)[-1]
    online = [s for s in statuses(listener) if s["state"] == "online"]
    assert offline["state"] == "offline" and "last_will" not in offline
    assert offline["time"] >= online[-1]["time"] > online[0]["time"]  # not the connect time
    assert offline["connected_at"] == online[0]["connected_at"] <= online[0]["time"]

    root = Path(__file__).resolve().parents[2]
    before = iso_utc(__import__("time").time())
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.publisher_child", broker.url, "gw-k9",
         str(tmp_path / "child.sqlite3")],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == b"connected\n"
        child = mqtt_listener(broker, f"{PREFIX}/gw-k9/status")
        await wait_for(lambda: child.on(f"{PREFIX}/gw-k9/status"), "the child's online status")
        proc.send_signal(signal.SIGKILL)
        will_seen = lambda: [  # noqa: E731
            m.json() for m in child.on(f"{PREFIX}/gw-k9/status") if m.json()["state"] == "offline"
        ]
        await wait_for(will_seen, "the Last Will after kill -9")
    finally:
        proc.kill()
        proc.wait()
    (will,) = will_seen()
    assert will["time"] is None and will["last_will"] is True
    child_online = child.on(f"{PREFIX}/gw-k9/status")[0].json()
    assert before <= will["connected_at"] == child_online["connected_at"]


@pytest.mark.parametrize("broker_kind", ["mosquitto", "mini"])
async def test_a_second_gateway_with_the_same_id_is_reported_not_a_reconnect_storm(
    broker_kind: str,
    mosquitto: Callable[..., Mosquitto],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two gateways configured with one id: each connection takes the session from the
    other. mosquitto 2.0.11 just closes the old connection; MQTT 5 brokers that follow the
    specification (here the embedded one) first send DISCONNECT 0x8E "Session taken over".
    Either way each gateway says so in its log and its status, and soon waits the longest
    reconnect delay instead of knocking the other off again at once."""
    from sim.broker import MiniBroker

    async with contextlib.AsyncExitStack() as stack:
        if broker_kind == "mosquitto":
            url = mosquitto().url
        else:
            mini = await stack.enter_async_context(MiniBroker())
            url = f"mqtt://127.0.0.1:{mini.port}"
        cfg = MqttConfig(url=url, insecure=True, keepalive_s=5)
        stack.enter_context(caplog.at_level(logging.ERROR, "gateway.mqtt.client"))
        opts = {"reconnect_delay_s": (0.05, 1.0), "status_period_s": 60.0}
        pubs = []
        for name in "ab":
            ob = stack.enter_context(Outbox(tmp_path / f"{name}.sqlite3"))
            pubs.append(await stack.enter_async_context(Publisher(cfg, GW, ob, **opts)))
            await wait_for(lambda p=pubs[-1]: p.connected, f"gateway {name} connected")

        def reported(p: Publisher) -> bool:
            st = p.stats()
            return st["session_taken_over"] >= 1 or st["brief_connections"] >= 3

        await wait_for(lambda: all(reported(p) for p in pubs), "both say so")
        for p in pubs:
            assert p.client is not None
            # the longest delay (cap 1 s, jitter 0.5..1), not the first (0.05 s)
            await wait_for(lambda c=p.client: (c.next_delay_s or 0) >= 0.5, "the longest delay")
            facts = p._transmission()
            assert facts["session_taken_over"] + facts["brief_connections"] >= 1
        connects = sum(p.stats()["connects"] for p in pubs)
        assert connects <= 12  # a handful before both wait the longest delay, not a storm
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("client id 'gw1'" in x and "second gateway" in x for x in lines)
    if broker_kind == "mini":
        assert any("Session taken over, 0x8E" in x for x in lines)


async def test_a_stop_while_exiting_is_not_swallowed(
    mosquitto: Callable[..., Mosquitto], outbox: Outbox
) -> None:
    """Cancelled while its exit waits for the status task to end, the publisher's exit
    ends as cancelled: that task's CancelledError is not taken for ours (a stop swallowed
    there let the gateway's stop run on into waits nobody would cancel again)."""
    broker = mosquitto()
    broker.stop()  # (no broker: nothing to say offline to)
    pub = await Publisher(mqtt_config(broker), GW, outbox, **FAST).__aenter__()
    exiting = asyncio.create_task(pub.__aexit__(None, None, None))
    await asyncio.sleep(0)  # it cancelled the status task and waits for it
    exiting.cancel()
    done, _ = await asyncio.wait([exiting], timeout=5.0)
    assert done and exiting.cancelled()
    await pub.__aexit__(None, None, None)  # (the rest of the exit)
