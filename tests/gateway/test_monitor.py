"""The monitor against a real mosquitto: events printed, PNG + JSON saved, duplicates skipped."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from core.block import SampleBlock
from gateway.monitor import Monitor, MonitorError
from gateway.payloads import build_live_payload, build_strip_body
from gateway.pipeline import StripFacts, Trigger
from gateway.status import build_status
from sim.synth import EcgSynth

T0 = 1_790_000_000.0


def _publisher(broker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def _event_body(seq: int) -> dict:
    x = EcgSynth(130.0, ("ECG",), seed=1).generate(1300)
    block = SampleBlock(x, 130.0, T0, 5000, ("ECG",), "p1")
    body = build_strip_body(
        block,
        gateway_id="gw1",
        kind="event",
        trigger=Trigger("button", pre_s=5.0, post_s=5.0, seq=5650, time=T0 + 5),
        facts=StripFacts(heart_rate_bpm=72.0),
        gaps=[],
        created=T0 + 11,
    )
    body.update(msg_id=f"m-{seq}", seq=seq)
    return body


def test_monitor_saves_events_and_skips_duplicates(mosquitto, tmp_path: Path) -> None:
    broker = mosquitto()
    lines: list[str] = []
    mon = Monitor(broker.url, out_dir=tmp_path, echo=lines.append)
    mon.start()
    pub = _publisher(broker)
    try:
        status = build_status("gw1", "online", now=T0)
        pub.publish("ecg/v1/gw1/status", json.dumps(status), qos=1, retain=True).wait_for_publish()
        for seq in (1, 1, 3):  # a duplicate, then a hole at 2
            payload = json.dumps(_event_body(seq))
            pub.publish("ecg/v1/gw1/p1/event", payload, qos=1).wait_for_publish()
        pub.publish("ecg/v1/gw1/p1/event", b"\x00garbage", qos=1).wait_for_publish()
        ok = mon.wait_for(lambda s: s["bad_payloads"] == 1 and s["duplicates"] == 1, 10)
        assert ok, lines
    finally:
        pub.loop_stop()
        mon.stop()
    s = mon.summary()
    assert s["counts"]["p1"]["event"] == 2 and s["seq_gaps"] == 1
    assert s["statuses"]["gw1"] == ["online"]
    assert (tmp_path / "p1" / "event-000001.png").stat().st_size > 1000
    assert json.loads((tmp_path / "p1" / "event-000003.json").read_text())["seq"] == 3
    assert any(line.startswith("*** EVENT gw1/p1  button press") for line in lines)


def test_live_strips_statuses_and_bad_fields(mosquitto, tmp_path: Path) -> None:
    broker = mosquitto()
    lines: list[str] = []
    mon = Monitor(broker.url, out_dir=None, live=True, echo=lines.append)
    mon.start()
    pub = _publisher(broker)
    try:
        for state in ("online", "offline"):
            status = json.dumps(build_status("gw1", state, now=T0))
            pub.publish("ecg/v1/gw1/status", status, qos=1, retain=True).wait_for_publish()
        x = EcgSynth(130.0, ("ECG",), seed=3).generate(260)
        for i in range(2):
            block = SampleBlock(x[i * 130 : (i + 1) * 130], 130.0, T0 + i, i * 130, ("ECG",), "p1")
            live = build_live_payload(block, gateway_id="gw1", hr_bpm=70.0)
            pub.publish("ecg/v1/gw1/p1/live", live, qos=1).wait_for_publish()
        strip = _event_body(1)
        strip.update(kind="strip", trigger={"type": "periodic"}, msg_id="s-1")
        strip["facts"]["st"] = {"st60_mv": {"II": -0.02, "V5": -0.12}, "beats": 9}
        pub.publish("ecg/v1/gw1/p1/strip", json.dumps(strip), qos=1).wait_for_publish()
        bad = {**strip, "msg_id": "s-2", "seq": "two"}
        pub.publish("ecg/v1/gw1/p1/strip", json.dumps(bad), qos=1).wait_for_publish()
        ok = mon.wait_for(
            lambda s: s["bad_payloads"] == 1 and s["live_samples"].get("p1") == 260, 10
        )
        assert ok, lines
    finally:
        pub.loop_stop()
        mon.stop()
    s = mon.summary()
    assert s["statuses"]["gw1"] == ["online", "offline"]
    assert s["counts"]["p1"] == {"live": 2, "strip": 1}
    assert s["strip_samples"]["p1"] == 1300 and s["seq_gaps"] == 0
    assert any("gw1 OFFLINE" in line for line in lines)
    assert sum(line.startswith("live") for line in lines) == 1  # at most one per 5 s
    assert any(line.startswith("strip     gw1/p1  periodic") for line in lines)
    assert any("ST60 lowest V5 -1.2 mm" in line for line in lines)


def test_unreachable_broker_is_a_clear_error() -> None:
    mon = Monitor("mqtt://127.0.0.1:1", echo=lambda _: None)
    with pytest.raises(MonitorError, match="cannot reach"):
        mon.start(timeout=2)


def test_a_monitor_with_a_client_id_gets_what_was_sent_while_it_was_away(
    mosquitto, tmp_path: Path
) -> None:
    """Persistent session: an event published while the monitor is stopped arrives when it
    comes back under the same id; a monitor without an id never sees it."""
    broker = mosquitto()
    first = Monitor(broker.url, client_id="desk-1", echo=lambda _: None)
    first.start()
    first.stop()
    pub = _publisher(broker)
    try:
        pub.publish("ecg/v1/gw1/p1/event", json.dumps(_event_body(1)), qos=1).wait_for_publish()
        lines: list[str] = []
        back = Monitor(broker.url, client_id="desk-1", echo=lines.append)
        clean = Monitor(broker.url, echo=lambda _: None)
        back.start()
        clean.start()
        try:
            assert back.wait_for(lambda s: s["counts"].get("p1", {}).get("event") == 1, 10), lines
            assert clean.summary()["counts"].get("p1", {}).get("event", 0) == 0
        finally:
            back.stop()
            clean.stop()
    finally:
        pub.loop_stop()
