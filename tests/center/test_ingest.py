"""Ingest through a real mosquitto: stored once by msg_id, garbage counted and acknowledged
(the session is never poisoned), the PUBACK only after the commit, the retained status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from center.app import Center, demo_config
from center.store import schema as t
from tests.center.conftest import CenterBroker, variant
from tests.center.publisher import LightPublisher
from tests.support import wait_for


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


async def test_duplicates_and_garbage_through_the_broker(
    broker: CenterBroker, tmp_path: Path
) -> None:
    pub = LightPublisher(broker.url)
    async with Center(demo_config(tmp_path / "c.db", broker.url), web=False) as center:
        await wait_for(center.link.subscribed.is_set, "center subscribed")
        msgs = [
            variant(k, gateway=f"gw-{i}")
            for i, k in enumerate(["patch-event", "patch-strip", "cart-strip"])
        ]
        for topic, payload, body in msgs + msgs:  # every message twice
            pub.publish(
                topic, payload, body["msg_id"], body["seq"], body["kind"], body["device_id"]
            )
        for garbage in (b"not json", b'{"schema": "x"}', b"\x00" * 10):
            pub.publish("ecg/v1/gw-0/patch-1/event", garbage, "g", 1, "event", "patch-1")
        topic, payload, body = variant("patch-strip", gateway="gw-9")
        pub.publish(topic, payload, body["msg_id"], 1, "strip", "patch-1")  # after the garbage
        pub.drain()
        await wait_for(lambda: center.ingest.stats.received >= 10, "all ten messages")
        assert _count(center.engine, t.events) == 4
        assert _count(center.engine, t.rejects) == 3
        with center.engine.connect() as conn:
            counters = dict(conn.execute(sa.select(t.counters.c.name, t.counters.c.value)).all())
        assert counters["duplicates"] == 3 and counters["rejected"] == 3
    pub.close()


# the gateway's Last Will has no time (it is set at CONNECT: docs/mqtt.md); a Will with a
# time after the last online status must work too
@pytest.mark.parametrize("will_time", [None, "2026-12-01T17:00:00.000Z"])
async def test_status_and_last_will(broker: CenterBroker, tmp_path: Path, will_time) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-5", protocol=mqtt.MQTTv5)
    will = {
        "schema": "ecg-gateway/status/v1",
        "gateway_id": "gw-5",
        "state": "offline",
        "time": will_time,
        "last_will": True,
        "connected_at": "2026-12-01T16:58:00.000Z",
    }
    gw.will_set("ecg/v1/gw-5/status", json.dumps(will), qos=1, retain=True)
    gw.connect(broker.host, broker.port)
    gw.loop_start()
    online = json.loads((Path(__file__).parent / "data" / "status-online.json").read_text())
    online |= {"gateway_id": "gw-5", "time": "2026-12-01T16:59:00.000Z"}
    gw.publish("ecg/v1/gw-5/status", json.dumps(online), qos=1, retain=True).wait_for_publish()
    async with Center(demo_config(tmp_path / "c.db", broker.url), web=False) as center:

        def state() -> str | None:
            with center.engine.connect() as conn:
                return conn.execute(sa.select(t.gateways.c.state)).scalar()

        await wait_for(lambda: state() == "online", "retained status online")
        gw._sock.close()  # the gateway vanishes: the broker publishes its Last Will
        gw.loop_stop()
        await wait_for(lambda: state() == "offline", "Last Will offline", limit_s=60)
