"""The gateway as a whole: simulated BLE patch -> pipeline -> outbox -> real mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from gateway.app import Gateway
from gateway.config import parse_config
from sim.bumble_backend import SimBleWorld
from sim.polar_patch import SimBlePatch
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)


async def test_patch_to_broker_with_button_event(mosquitto, mqtt_listener, tmp_path: Path) -> None:
    broker = mosquitto()
    listener = mqtt_listener(broker, "ecg/v1/#")
    world = SimBleWorld()
    async with SimBlePatch(world, speed=4.0, hr_bpm=66.0) as patch:
        cfg = parse_config(
            {
                "gateway": {"id": "gw-t", "state_dir": str(tmp_path / "state")},
                "mqtt": {"url": broker.url, "insecure": True},
                "devices": [{"kind": "polar_pmd", "id": "p1", "address": patch.address}],
                "strips": {"period_s": 600.0, "duration_s": 4.0},
                "events": {"pre_s": 3.0, "post_s": 3.0},
                "live": {"block_s": 1.0, "max_rate_hz": 20},
            }
        )
        gw = Gateway(cfg, ble_backend=world.backend())
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        await wait_for(lambda: listener.on("ecg/v1/gw-t/p1/strip"), "the first strip", 60)
        await patch.press_button()
        await wait_for(lambda: listener.on("ecg/v1/gw-t/p1/event"), "the event", 60)
        stop.set()
        await task

    (strip,) = [m.json() for m in listener.on("ecg/v1/gw-t/p1/strip")]
    (event,) = [m.json() for m in listener.on("ecg/v1/gw-t/p1/event")]
    assert strip["samples"]["n"] == 4 * 130 and strip["seq"] == 1
    assert event["samples"]["n"] == 6 * 130 and event["trigger"]["type"] == "button"
    ev_msg = listener.on("ecg/v1/gw-t/p1/event")[0]
    assert ev_msg.user_properties["msg_id"] == event["msg_id"]
    assert ev_msg.user_properties["seq"] == "1"
    assert abs(strip["facts"]["heart_rate_bpm"] - 66) < 3
    assert listener.on("ecg/v1/gw-t/p1/live")
    states = [m.json()["state"] for m in listener.on("ecg/v1/gw-t/status")]
    assert states[0] == "online" and states[-1] == "offline"
    assert gw.outbox_pending_at_exit == 0
    assert listener.on("ecg/v1/gw-t/status")[-1].json()["devices"]["p1"]["driver"]["connects"] == 1


async def test_world_readable_key_refuses_to_start(tmp_path: Path) -> None:
    from gateway.app import run_gateway

    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    cfg = parse_config(
        {
            "gateway": {"id": "gw-k", "state_dir": str(tmp_path / "state")},
            "mqtt": {"url": "mqtts://127.0.0.1:8883", "cert_file": str(cert), "key_file": str(key)},
        }
    )
    assert await run_gateway(cfg) == 78


def test_gaps_go_to_the_study_record_and_status(tmp_path: Path) -> None:
    from core.events import Gap
    from gateway.channel import DeviceChannel
    from gateway.pipeline import DevicePipeline, PipelineSettings

    pipeline = DevicePipeline("p1", PipelineSettings())
    ch = DeviceChannel("p1", pipeline, lambda *_: None, tmp_path / "study")
    ch.on_gap(Gap("p1", 100, 230, 1.79e9, 1.79e9 + 1, "pmd timestamp jump", True))
    ch.on_gap(Gap("p1", 500, 510, 1.79e9 + 3, 1.79e9 + 3.1, "serial frames lost", True))
    lines = (tmp_path / "study" / "p1.gaps.jsonl").read_text().splitlines()
    assert [json.loads(x)["n_samples"] for x in lines] == [130, 10]
    assert ch.gap_ledger[0]["reason"] == "pmd timestamp jump"


async def test_study_records_of_a_patch_with_a_dropout(
    mosquitto, mqtt_listener, tmp_path: Path
) -> None:
    """Hourly (here: every second) study records: recorded span, coverage, new gaps; the
    patch's dropout is backfilled, so coverage stays 100 %; a final record at shutdown."""
    from sim.patch import SimPatch

    broker = mosquitto()
    listener = mqtt_listener(broker, "ecg/v1/gw-s/+/study")
    world = SimBleWorld()
    async with SimPatch(world, speed=4.0) as patch:
        cfg = parse_config(
            {
                "gateway": {"id": "gw-s", "state_dir": str(tmp_path / "state")},
                "mqtt": {"url": broker.url, "insecure": True},
                "devices": [{"kind": "patch", "id": "p1", "address": patch.address}],
                "live": {"enabled": False},
                "study": {"period_s": 1.0},
            }
        )
        gw = Gateway(cfg, ble_backend=world.backend())
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        await wait_for(lambda: len(listener.on("ecg/v1/gw-s/p1/study")) >= 2, "study records")
        await patch.disconnect()
        await wait_for(lambda: len(listener.on("ecg/v1/gw-s/p1/study")) >= 5, "more records")
        stop.set()
        await task
    records = [m.json() for m in listener.on("ecg/v1/gw-s/p1/study")]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    last = records[-1]
    assert last["schema"] == "ecg-gateway/study/v1" and last["final"] is True
    rec = last["recording"]
    assert rec["fs"] == 250.0 and rec["first_seq"] == 0
    assert rec["samples_missing"] == 0 and rec["coverage_pct"] == 100.0
    assert rec["samples_received"] == rec["end_seq"] - rec["first_seq"]
    assert rec["duration_s"] > 4.0
    # the simulated patch's ECG is clean: nearly every judged second is analysable
    assert rec["analysable_pct"] is not None and rec["analysable_pct"] > 90
    assert 0 < rec["analysable_s"] <= rec["duration_s"]
    assert all(
        r["recording"]["end_seq"] >= p["recording"]["end_seq"]
        for p, r in itertools.pairwise(records)
    )
    # the full recording on disk (WFDB): every sample the patch recorded, the dropout
    # backfilled in place, in µV exactly as the patch sent them
    dats = sorted((tmp_path / "state" / "recordings" / "p1").glob("p1_*.dat"))
    assert [d.name for d in dats] == ["p1_000000000000.dat"]
    wf = wfdb.rdrecord(str(dats[0].with_suffix("")))
    end = rec["end_seq"]
    assert wf.fs == 250.0 and wf.sig_len == end
    np.testing.assert_allclose(wf.p_signal[:, 0] * 1000, patch.recorded[:end], atol=1e-6)


async def test_the_centers_ack_reaches_the_gateways_status(
    mosquitto, mqtt_listener, tmp_path: Path
) -> None:
    """An event sent, then acknowledged at the center: the gateway's status and study
    record say so (and an event never acknowledged stays visible as waiting)."""
    import paho.mqtt.client as mqtt

    broker = mosquitto()
    listener = mqtt_listener(broker, "ecg/v1/gw-a/#")
    world = SimBleWorld()
    async with SimBlePatch(world, speed=1.0, hr_bpm=66.0) as patch:
        cfg = parse_config(
            {
                "gateway": {"id": "gw-a", "state_dir": str(tmp_path / "state")},
                "mqtt": {"url": broker.url, "insecure": True},
                "devices": [{"kind": "polar_pmd", "id": "p1", "address": patch.address}],
                "events": {"pre_s": 1.0, "post_s": 1.0},
                "study": {"period_s": 1.0},
            }
        )
        gw = Gateway(cfg, ble_backend=world.backend())
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        await wait_for(lambda: gw.channels and gw.channels["p1"].counters["samples"] > 200, "ECG")
        await patch.press_button()
        await wait_for(lambda: listener.on("ecg/v1/gw-a/p1/event"), "the event", 30)
        event = listener.on("ecg/v1/gw-a/p1/event")[0].json()
        ack = {
            "schema": "ecg-center/ack/v1",
            "msg_id": event["msg_id"],
            "kind": "event",
            "acknowledged_by": "alice",
            "acknowledged_at": "2026-12-01T16:21:04.512Z",
            "note_present": False,
        }
        center = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        center.connect(broker.host, broker.port)
        center.loop_start()
        center.publish("ecg/v1/gw-a/p1/ack", json.dumps(ack), qos=1).wait_for_publish(5)
        center.publish("ecg/v1/gw-a/p1/ack", b"not json", qos=1).wait_for_publish(5)
        facts = lambda: gw.status_devices()["p1"]["acknowledgements"]  # noqa: E731
        await wait_for(lambda: facts()["acknowledged"] == 1, "the ack at the gateway", 15)
        assert facts()["waiting_for_acknowledgement"] == 0
        await wait_for(
            lambda: any(m.json()["acknowledgements"] for m in listener.on("ecg/v1/gw-a/p1/study")),
            "the ack in a study record",
            15,
        )
        center.loop_stop()
        stop.set()
        await task
    (study,) = [
        m.json() for m in listener.on("ecg/v1/gw-a/p1/study") if m.json()["acknowledgements"]
    ]
    assert study["acknowledgements"][0]["by"] == "alice"


class _StopTurnedIntoAnError:
    """A driver whose library turns the gateway's stop into an error (never a bug to
    restart for: the task is being cancelled)."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("link library: operation aborted") from None


async def test_a_device_stopped_is_not_restarted_when_its_stop_became_an_error(
    tmp_path: Path,
) -> None:
    cfg = parse_config(
        {
            "gateway": {"id": "gw-s", "state_dir": str(tmp_path / "state")},
            "mqtt": {"url": "mqtt://127.0.0.1:1", "insecure": True},
        }
    )
    gw = Gateway(cfg)
    gw.restarts = {"d1": 0}
    driver = _StopTurnedIntoAnError()
    task = asyncio.create_task(gw._keep_running("d1", driver))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=3.0)
    assert done and task.cancelled()
    assert gw.restarts == {"d1": 0} and driver.runs == 1
