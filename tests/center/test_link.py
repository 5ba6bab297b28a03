"""The center's MQTT link: mutual TLS to a real mosquitto (the default, mqtts://), and an
acknowledgement made while the broker is down reaches the gateway once it is back."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import sqlalchemy as sa

from center.app import Center
from center.store import schema as t
from tests.center.conftest import add_user, center_config, publish_sync, variant
from tests.support import wait_for


async def test_mutual_tls(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto(tls=True)
    tls = broker.tls
    cfg = center_config(
        tmp_path / "c.db",
        broker.url,
        mqtt={
            "insecure": False,
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
        },
    )
    assert cfg.mqtt.tls
    async with Center(cfg, web=False) as center:
        await wait_for(center.link.subscribed.is_set, "subscribed over TLS")


async def test_ack_made_while_the_broker_is_down(broker, tmp_path: Path, mqtt_listener) -> None:  # type: ignore[no-untyped-def]
    acks = mqtt_listener(broker, "ecg/v1/+/+/ack")
    async with (
        Center(center_config(tmp_path / "c.db", broker.url)) as center,
        aiohttp.ClientSession() as s,
    ):
        await wait_for(center.link.subscribed.is_set, "subscribed")
        pw = add_user(center.engine, "tech", "technician")
        topic, payload, body = variant("patch-event", gateway="gw-d")
        publish_sync(broker, topic, payload)
        await wait_for(lambda: center.ingest.stats.stored == 1, "stored")
        r = await s.post(f"{center.url}/api/login", json={"user": "tech", "password": pw})
        h = {"Authorization": f"Bearer {(await r.json())['token']}"}
        broker.stop()
        await wait_for(lambda: not center.link.connected.is_set(), "link down")
        r = await s.post(f"{center.url}/api/events/{body['msg_id']}/ack", json={}, headers=h)
        assert r.status == 200  # acknowledged at the center, waiting in the outbox
        with center.engine.connect() as conn:
            assert conn.execute(sa.select(t.ack_outbox.c.sent_at)).scalar() is None
        broker.start()
        ack_topic = f"ecg/v1/gw-d/{body['device_id']}/ack"
        await wait_for(lambda: acks.on(ack_topic), "the ack after the outage", limit_s=60)
        await wait_for(lambda: center.acks.stats.confirmed == 1, "PUBACK recorded", limit_s=30)
