"""End to end: the demo's whole path (BLE patch, serial cart, gateway, broker, monitor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.observation import Observation

from sim.demo import CART_ID, EVENT_POST_S, EVENT_PRE_S, PATCH_ID, STRIP_S, DemoOptions, demo

pytestmark = pytest.mark.timeout(180)


def _saved(out: Path, device: str, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / device).glob(f"{kind}-*.json"))]


async def test_demo_against_mosquitto(mosquitto, tmp_path: Path) -> None:
    broker = mosquitto()
    out = tmp_path / "out"
    lines: list[str] = []
    result = await demo(30.0, broker.url, out, echo=lines.append)
    assert result.ok, "\n".join(lines + result.lines)

    event = _saved(out, PATCH_ID, "event")[0]
    Observation.model_validate(event["observation"])
    assert event["trigger"]["type"] == "button"
    fs = event["samples"]["fs"]
    want = round((EVENT_PRE_S + EVENT_POST_S) * fs)
    assert event["samples"]["n"] == want
    data = event["observation"]["component"][0]["valueSampledData"]["data"].split()
    assert len(data) == want

    for device in (PATCH_ID, CART_ID):
        strips = _saved(out, device, "strip")
        for strip in strips:
            Observation.model_validate(strip["observation"])
            fs = strip["samples"]["fs"]
            assert strip["samples"]["n"] == round(strip["trigger"]["pre_s"] * fs)
        periodic = [s for s in strips if s["trigger"]["type"] == "periodic"]
        assert periodic[0]["samples"]["n"] == round(STRIP_S * periodic[0]["samples"]["fs"])
        assert list((out / device).glob("strip-*.png"))
    cart_strip = _saved(out, CART_ID, "strip")[0]
    assert len(cart_strip["observation"]["component"]) == 12


def test_demo_cli_with_embedded_python_broker(tmp_path: Path) -> None:
    """`ecg-gateway demo` without --broker, forced onto the pure-Python broker."""
    pytest.importorskip("sim.broker")
    env = {**os.environ, "ECG_GATEWAY_DEMO_BROKER": "python"}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "30", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "embedded python broker" in proc.stdout
    assert "everything arrived" in proc.stdout


def _record_with_pause(where: Path, fs: float = 360.0) -> Path:
    """A synthetic WFDB record (MIT-BIH rate): sinus rhythm with a 4 s pause at 12 s."""
    import wfdb

    from sim.synth import EcgSynth

    x = EcgSynth(fs, ("MLII",), hr_bpm=70.0, seed=3).generate(int(60 * fs))[:, 0]
    x[int(12 * fs) : int(16 * fs)] = x[int(11.9 * fs)]  # no beat for 4 s
    wfdb.wrsamp(
        "pause",
        fs=fs,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=x[:, None].astype(float),
        fmt=["16"],
        write_dir=str(where),
    )
    return where / "pause"


async def test_demo_replays_a_record_and_the_pause_reaches_the_center(
    mosquitto, tmp_path: Path
) -> None:
    """A replayed record with a pause: the gateway raises an auto event the center stores."""
    record = _record_with_pause(tmp_path)
    lines: list[str] = []
    opts = DemoOptions(
        seconds=30.0, broker_url=mosquitto().url, out_dir=tmp_path / "out", record=record, speed=2.0
    )
    result = await demo(opts, echo=lines.append)
    assert result.ok, "\n".join(lines)
    events = _saved(tmp_path / "out", PATCH_ID, "event")
    auto = [e for e in events if e["trigger"]["type"] == "auto"]
    assert [e["trigger"]["reason"] for e in auto] == ["pause"], [e["trigger"] for e in events]
    assert result.center is not None and result.center["event"] == len(events)
