"""Records to a real mosquitto through the outbox and the publisher: chunks verified and
confirmed by a stand-in center, a broker outage and an uploader restart in the middle,
the window share and the byte-rate cap, the confirmation kept on disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from core.block import SampleBlock
from gateway.config import MqttConfig
from gateway.mqtt import Publisher
from gateway.outbox import Outbox
from gateway.recording import RecordingStore
from gateway.upload import RECORD_ACK_SCHEMA, UploadSettings
from gateway.upload_io import Uploader
from gateway.upload_rate import KindLimit, TokenBucket
from tests.support import Mosquitto, wait_for

pytestmark = pytest.mark.timeout(90)
FS = 250.0


class StandInCenter:
    """Collects record chunks, checks every checksum, confirms a whole verified record."""

    def __init__(self, broker: Mosquitto, confirm: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.chunks: dict[tuple[str, str, int], dict[int, bytes]] = {}
        self.records: dict[tuple[str, str, int], bytes] = {}
        self.headers: dict[tuple[str, str, int], str] = {}
        self.received = 0
        self.confirm = confirm
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="stand-in-center", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *a: c.subscribe("ecg/v1/+/+/record", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300  # like a center: the broker queues during its outage
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        data = base64.b64decode(body["data"])
        assert hashlib.sha256(data).hexdigest() == body["chunk_sha256"]
        key = (body["device_id"], body["record"], body["version"])
        with self.lock:
            self.received += 1
            parts = self.chunks.setdefault(key, {})
            parts[body["chunk"]] = data
            if len(parts) < body["chunks"] or key in self.records:
                return
            whole = b"".join(parts[i] for i in range(body["chunks"]))
            digest = hashlib.sha256(body["header"].encode() + whole).hexdigest()
            assert digest == body["sha256"] and len(whole) == body["size"]
            self.records[key], self.headers[key] = whole, body["header"]
        if self.confirm:
            ack = {"schema": RECORD_ACK_SCHEMA, "record": body["record"],
                   "version": body["version"], "sha256": body["sha256"]}  # fmt: skip
            topic = msg.topic.removesuffix("/record") + "/record-ack"
            client.publish(topic, json.dumps(ack), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_records(root: Path, seconds: int, hole: tuple[int, int] | None = None) -> RecordingStore:
    """``seconds`` of a 250 Hz patch in 4-s records under ``root/p1`` (a hole: never sent)."""
    rng = np.random.default_rng(3)
    store = RecordingStore(root / "p1", "p1", file_s=4.0)
    n = int(seconds * FS)
    x = rng.normal(0, 0.3, (n, 1))
    for a in range(0, n, 125):
        if hole and hole[0] <= a < hole[1]:
            continue
        store.write(SampleBlock(x[a : a + 125], FS, 1.79e9 + a / FS, a, ("ECG",), "p1"))
    store.close()
    return store


def _uploader(state: Path, outbox: Outbox, pub: Publisher | None, chunk: int = 600) -> Uploader:
    up = Uploader(
        state / "recordings",
        state / "upload.sqlite3",
        outbox,
        gateway_id="gw-u",
        topic_prefix="ecg/v1",
        settings=UploadSettings(chunk_bytes=chunk, settle_s=0.0, quiet_s=0.0),
        file_s=4.0,
        queued_chunks=4,
        scan_s=0.1,
        poll_s=0.02,
        wake=pub.wake if pub else None,
    )
    if pub is not None:
        pub.subscribe(up.ack_filter, up.on_message)
    return up


def _publisher(broker: Mosquitto, outbox: Outbox, limit: KindLimit | None = None) -> Publisher:
    cfg = MqttConfig(url=broker.url, insecure=True, client_id="gw-u")
    return Publisher(cfg, "gw-u", outbox, reconnect_delay_s=(0.1, 0.3),
                     limits={"record": limit or KindLimit(2)})  # fmt: skip


def _on_disk(state: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in (state / "recordings" / "p1").glob("*.dat")}


async def test_records_arrive_verified_through_an_outage_and_a_restart(mosquitto, tmp_path):
    broker = mosquitto(persistence=True)
    center = StandInCenter(broker)
    state = tmp_path / "state"
    write_records(state / "recordings", 20, hole=(1500, 2250))  # 5 records, a 3-s hole
    outbox = Outbox(state / "outbox.sqlite3")
    async with _publisher(broker, outbox) as pub:
        up = _uploader(state, outbox, pub)
        task = asyncio.create_task(up.run())
        await wait_for(lambda: center.received >= 4, "the first chunks")
        broker.stop()  # an outage in the middle of the upload
        await asyncio.sleep(0.5)
        task.cancel()  # ... and the gateway stops (state on disk)
        await asyncio.gather(task, return_exceptions=True)
        up.close()
        broker.start()
        up = _uploader(state, outbox, pub)  # restarted: resumes at its chunk
        assert any(s.next_chunk for s in up.core.records.values())
        task = asyncio.create_task(up.run())
        await wait_for(lambda: up.core.facts("p1")["records_confirmed"] == 5, "5 confirmed", 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        facts = up.facts("p1")
        up.close()
    center.close()
    outbox.close()
    got = {name: data for (_, name, _), data in center.records.items()}
    assert got == _on_disk(state)  # byte for byte, the hole's "no sample" values included
    assert facts["bytes_pending"] == 0 and facts["records_sent"] == 5
    assert all(v == 1 for (_, _, v) in center.records)


async def test_late_backfill_makes_version_2_and_quota_waits_for_confirmation(mosquitto, tmp_path):
    broker = mosquitto()
    center = StandInCenter(broker)
    state = tmp_path / "state"
    store = write_records(state / "recordings", 8, hole=(500, 750))  # 2 records
    outbox = Outbox(state / "outbox.sqlite3")
    async with _publisher(broker, outbox) as pub:
        up = _uploader(state, outbox, pub)
        task = asyncio.create_task(up.run())
        await wait_for(lambda: up.core.facts("p1")["records_confirmed"] == 2, "2 confirmed")
        store.write(SampleBlock(np.full((250, 1), 0.25), FS, 1.79e9 + 2, 500, ("ECG",), "p1"))
        store.close()  # the patch backfilled the hole an hour later
        await wait_for(lambda: ("p1", "p1_000000000000", 2) in center.records, "version 2")
        await wait_for(lambda: up.core.deletable("p1", "p1_000000000000"), "v2 confirmed")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        up.close()
    center.close()
    outbox.close()
    v1 = center.records[("p1", "p1_000000000000", 1)]
    v2 = center.records[("p1", "p1_000000000000", 2)]
    assert v1 != v2 and v2 == _on_disk(state)["p1_000000000000"]
    assert np.all(np.frombuffer(v1, "<i2")[500:750] == -32768)  # v1 kept its hole


async def test_records_keep_to_their_share_and_rate_while_an_event_goes_at_once(
    mosquitto, mqtt_listener, tmp_path
):
    broker = mosquitto()
    center = StandInCenter(broker, confirm=False)
    listener = mqtt_listener(broker, "ecg/v1/gw-u/p1/event")
    state = tmp_path / "state"
    write_records(state / "recordings", 40)  # 10 records of 2000 bytes
    outbox = Outbox(state / "outbox.sqlite3")
    limit = KindLimit(2, TokenBucket(rate=8000.0, burst=2000.0))
    async with _publisher(broker, outbox, limit) as pub:
        up = _uploader(state, outbox, pub, chunk=1000)
        task = asyncio.create_task(up.run())
        await wait_for(lambda: center.received >= 2, "records flowing")
        t0 = asyncio.get_running_loop().time()
        max_share = 0
        outbox.put("event", "p1", "ecg/v1/gw-u/p1/event", {"x": 1})
        pub.wake()
        while not listener.on("ecg/v1/gw-u/p1/event"):
            max_share = max(max_share, len(limit.inflight))
            await asyncio.sleep(0.001)
        event_s = asyncio.get_running_loop().time() - t0
        start, n0 = asyncio.get_running_loop().time(), center.received
        await asyncio.sleep(2.0)
        rate = (center.received - n0) * 1400 / (asyncio.get_running_loop().time() - start)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        up.close()
    center.close()
    outbox.close()
    assert event_s < 0.5 and max_share <= 2
    assert rate < 8000 * 1.3  # about 1,400 bytes a chunk message; the cap holds


async def test_a_confirmation_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    write_records(state / "recordings", 4)
    outbox = Outbox(state / "outbox.sqlite3")
    up = _uploader(state, outbox, None, chunk=4000)
    await up.step()
    (st,) = up.core.records.values()
    assert st.sent
    ack = {"schema": RECORD_ACK_SCHEMA, "record": st.name, "version": 1, "sha256": st.sha256}
    up.on_confirmation("ecg/v1/gw-u/p1/record-ack", json.dumps(ack).encode())
    up.on_confirmation("ecg/v1/gw-u/p1/record-ack", b"not json")  # ignored, logged
    up.close()
    again = _uploader(state, outbox, None)
    assert again.deletable("p1", st.name)
    again.close()
    outbox.close()


async def test_recordings_command_shows_what_was_sent_and_confirmed(tmp_path, capsys):
    from gateway.cli import main

    state = tmp_path / "state"
    write_records(state / "recordings", 8)
    outbox = Outbox(state / "outbox.sqlite3")
    up = _uploader(state, outbox, None, chunk=4000)
    await up.step()
    first = up.core.records["p1/p1_000000000000"]
    ack = {"schema": RECORD_ACK_SCHEMA, "record": first.name, "version": 1,
           "sha256": first.sha256}  # fmt: skip
    up.on_confirmation("ecg/v1/gw-u/p1/record-ack", json.dumps(ack).encode())
    up.close()
    outbox.close()
    assert main(["recordings", "--dir", str(state / "recordings")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "center" in lines[0]
    assert "v1 confirmed" in lines[1] and "v1 sent" in lines[2]
