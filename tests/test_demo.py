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


def _record_with_pause_and_af(where: Path, fs: float = 360.0) -> Path:
    """A WFDB record at MIT-BIH's rate: 20 s of synthetic sinus rhythm with a 4 s pause at
    12 s, then MIT-BIH record 201 from 440 s to 520 s (sinus, then AF from 477 s on)."""
    import numpy as np
    import wfdb

    from sim.synth import EcgSynth

    x = EcgSynth(fs, ("MLII",), hr_bpm=70.0, seed=3).generate(int(20 * fs))[:, 0]
    x[int(12 * fs) : int(16 * fs)] = x[int(11.9 * fs)]  # no beat for 4 s
    z = np.load(Path(__file__).parent / "data" / "mitdb201_excerpt.npz")
    real = (z["adu"] - z["baseline"]) / z["gain"]  # mV
    real = real - np.median(real) + np.median(x)  # no step at the splice
    y = np.concatenate([x, real])
    wfdb.wrsamp(
        "pause_af",
        fs=fs,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=y[:, None].astype(float),
        fmt=["16"],
        write_dir=str(where),
    )
    return where / "pause_af"


async def test_demo_replays_a_record_and_its_pause_and_af_reach_the_center(
    mosquitto, tmp_path: Path
) -> None:
    """A replayed record with a pause and AF (real, MIT-BIH 201) at 4x real time: the
    gateway raises auto events for both, the center stores every event."""
    record = _record_with_pause_and_af(tmp_path)
    lines: list[str] = []
    opts = DemoOptions(
        seconds=30.0, broker_url=mosquitto().url, out_dir=tmp_path / "out", record=record, speed=4.0
    )
    result = await demo(opts, echo=lines.append)
    assert result.ok, "\n".join(lines)
    events = _saved(tmp_path / "out", PATCH_ID, "event")
    reasons = {e["trigger"]["reason"] for e in events if e["trigger"]["type"] == "auto"}
    assert {"pause", "af_onset"} <= reasons, [e["trigger"] for e in events]
    af = next(e for e in events if e["trigger"].get("reason") == "af_onset")
    onset_s = af["trigger"]["seq"] / 250.0 - 20.0 + 440.0  # back to record 201's time
    assert 470.0 < onset_s < 492.0  # the reference onset is 477.3 s
    assert result.center is not None and result.center["event"] == len(events)
