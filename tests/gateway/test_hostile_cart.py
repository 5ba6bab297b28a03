"""What a stress-test cart can send, through the whole gateway (issue #10).

A simulated cart on a real pseudo-terminal, the gateway as ``ecg-gateway run`` builds it
(driver, channel, pipeline, recording, outbox, publisher) and a real mosquitto. The cart
misbehaves: a sample counter that jumps by 2^31, a power cycle, a new sample rate
mid-stream, a second program opening its port, a run of corrupted frames. Nothing it
sends may stop the gateway, overwrite what was recorded, or lose a sample silently:
every sample the cart produced is in the recording, in order, or in a reported gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.events import DriverError, RecordingSink
from core.tasks import cancel_and_wait
from drivers.cart_driver import CartDriver, CartSettings
from gateway.app import Gateway
from gateway.config import parse_config
from sim.cart import SimCart
from tests.support import NO_SAMPLE, MqttListener, read_recording, wait_for

pytestmark = pytest.mark.timeout(90)

GW = "gw-h"


def _config(tmp_path: Path, broker_url: str, port: str, **sections: Any) -> Any:
    return parse_config(
        {
            "gateway": {"id": GW, "state_dir": str(tmp_path / "state")},
            "mqtt": {"url": broker_url, "insecure": True},
            "devices": [{"kind": "cart_serial", "id": "cart-1", "port": port}],
            "live": {"enabled": False},
            **sections,
        }
    )


@contextlib.asynccontextmanager
async def _running(cfg: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await wait_for(gw.started.is_set, "the gateway started")
        yield gw
    finally:
        stop.set()
        await task


def _samples(gw: Gateway) -> int:
    return gw.channels["cart-1"].stats()["samples"]


def _accounted(
    gw: Gateway, cart: SimCart, tmp_path: Path, stopped_at: int, *, lost: bool = False
) -> None:
    """Every sample the cart produced is in the recording, in production order, exactly
    once (up to ``stopped_at``, what the cart had produced when the gateway was told to
    stop, less the last 0.1 s on the line); every sample the recording misses inside a
    stream is in a reported gap. With
    ``lost`` (frames lost on the line; one stream numbered as the cart counts): each
    recorded sample is the one the cart produced under its number, and every missing one
    is in a reported gap."""
    streams = read_recording(tmp_path / "state" / "recordings" / "cart-1")
    # The simulated cart streams from its start, before the gateway opens the port: what the
    # pty could not hold before then never reaches the gateway, and the first record holds
    # "no sample" rows from 0 to the first sample heard. Those are before the stream as the
    # gateway knows it.
    lead = _leading_holes(next(iter(streams.values()))[1])
    if lost:
        ((first, rows),) = streams.values()
        hole = (rows == NO_SAMPLE).all(axis=1)
        hole[:lead] = False
        idx = np.flatnonzero(~hole[lead:]) + first + lead
        np.testing.assert_array_equal(
            rows[lead:][~hole[lead:]], np.clip(cart.recorded[idx], -32767, 32767)
        )
        gaps = _gap_lines(tmp_path)
        assert int(hole.sum()) == sum(e["n_samples"] for e in gaps), (_runs(hole), gaps)
        assert first + len(rows) >= stopped_at - 200
        return
    got, missing = [], 0
    for k, (_first, rows) in enumerate(streams.values()):
        rows = rows[lead:] if k == 0 else rows
        hole = (rows == NO_SAMPLE).all(axis=1)
        got.append(rows[~hole])
        missing += int(hole.sum())
    recorded = np.concatenate(got)
    produced = cart.recorded[lead : lead + len(recorded)]
    np.testing.assert_array_equal(recorded, np.clip(produced, -32767, 32767))
    assert lead + len(recorded) >= stopped_at - 200  # the last frames may still be on the line
    reported = sum(e["n_samples"] for e in _gap_lines(tmp_path))
    assert missing <= reported  # (a gap at a stream's end leaves no hole in its file)


def _leading_holes(rows: np.ndarray) -> int:
    """"No sample" rows before a record's first sample."""
    heard = np.flatnonzero(~(rows == NO_SAMPLE).all(axis=1))
    return int(heard[0]) if heard.size else len(rows)


def _runs(hole: np.ndarray) -> list[tuple[int, int]]:
    """[first, end) of each run of True (for the failure message)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], hole.astype(np.int8), [0]])))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _gap_lines(tmp_path: Path) -> list[dict]:
    import json

    path = tmp_path / "state" / "study" / "cart-1.gaps.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_counter_glitches_cost_seconds_not_a_freeze(
    mosquitto, mqtt_listener, tmp_path: Path
) -> None:
    """Finding 1: frames whose sample number jumps by 2^31 and to 4e9 (a counter glitch, a
    corrupted frame that passed its CRC), with a strip every 2 s: each is a device restart
    (a gap of the wall time between, numbering goes on), no window is queued per period
    across the jump, no far-away record is created, and the cart's samples all land in
    order in the recording."""
    broker = mosquitto()
    listener: MqttListener = mqtt_listener(broker, f"ecg/v1/{GW}/#")
    async with SimCart(speed=4.0, stage_s=600.0, seed=4, keep=True) as cart:
        cfg = _config(tmp_path, broker.url, cart.port, strips={"period_s": 2.0, "duration_s": 1.0})
        async with _running(cfg) as gw:
            driver = gw.drivers["cart-1"]
            await wait_for(lambda: _samples(gw) > 1500, "the cart streams")
            cart.glitch(2**31)
            await wait_for(lambda: driver.stats()["restarts"] >= 2, "the glitch and back")
            cart.glitch(4_000_000_000)
            await wait_for(lambda: driver.stats()["restarts"] >= 4, "the second glitch")
            at = _samples(gw)
            await wait_for(lambda: _samples(gw) > at + 1500, "the stream goes on")
            windows = gw.channels["cart-1"].pipeline._s.windows  # type: ignore[union-attr]
            assert len(windows.pending) <= 2  # nothing queued per period across a jump
            assert driver.stats()["restarts"] == 4
            strips_seen = len(listener.on(f"ecg/v1/{GW}/cart-1/strip"))  # (on their way)
            stopped_at = cart.produced
        ch = gw.channels["cart-1"]
        assert ch.counters["errors"] == 0 and ch.counters["recording_errors"] == 0
    # numbering stayed with the wall clock: the stream is as long as the test, no record
    # far away (the quota would delete the real ones first)
    end = ch.study.end_seq or 0
    assert end < 500 * 120
    dats = list((tmp_path / "state" / "recordings" / "cart-1").rglob("*.dat"))
    assert len(dats) == 1 and dats[0].name == "cart-1_000000000000.dat"
    reasons = [g["reason"] for g in _gap_lines(tmp_path)]
    assert reasons and all("restarted" in r for r in reasons)
    assert all(g["n_samples"] < 500 * 10 for g in _gap_lines(tmp_path))  # seconds, not years
    _accounted(gw, cart, tmp_path, stopped_at)
    strips = [m.json() for m in listener.on(f"ecg/v1/{GW}/cart-1/strip")]
    assert len(strips) >= max(strips_seen, 3)  # one per 2 s of stream, jumps or not
    assert [s["seq"] for s in strips] == list(range(1, len(strips) + 1))
    assert all(s["samples"]["end_seq"] <= end for s in strips)


async def test_a_power_cycle_and_a_new_rate_overwrite_nothing(
    mosquitto, mqtt_listener, tmp_path: Path
) -> None:
    """Findings 7 and 9: the cart restarts at another sample rate (a HELLO announcing
    250 Hz) and is then power-cycled (its counter starts again at 0). Each is a new stream,
    reported with its reason; the pipeline never raises; the 500 Hz records stay as they
    were and the 250 Hz stream gets records of its own. A second program opening the port
    is refused while the gateway holds it."""
    broker = mosquitto()
    listener = mqtt_listener(broker, f"ecg/v1/{GW}/#")
    async with SimCart(speed=4.0, stage_s=600.0, seed=6, keep=True) as cart:
        cfg = _config(tmp_path, broker.url, cart.port, strips={"period_s": 2.0, "duration_s": 1.0})
        async with _running(cfg) as gw:
            driver = gw.drivers["cart-1"]
            await wait_for(lambda: _samples(gw) > 1500, "500 Hz")
            intruder_sink = RecordingSink()
            intruder = CartDriver(
                CartSettings("intruder", cart.port), intruder_sink, reconnect_delay_s=(5, 5)
            )
            task = asyncio.create_task(intruder.run())
            await wait_for(lambda: intruder_sink.of(DriverError), "the second reader refused")
            await cancel_and_wait(task)
            assert "open in another program" in intruder_sink.of(DriverError)[0].detail
            assert intruder.stats()["opens"] == 0
            cart.restart(fs=250)
            await wait_for(lambda: driver.stats()["restarts"] >= 1, "the new rate")
            at = _samples(gw)
            await wait_for(lambda: _samples(gw) > at + 800, "250 Hz")
            cart.restart()
            await wait_for(lambda: driver.stats()["restarts"] >= 2, "the power cycle")
            at = _samples(gw)
            await wait_for(lambda: _samples(gw) > at + 800, "250 Hz again")
            stopped_at = cart.produced
        ch = gw.channels["cart-1"]
        assert ch.counters["errors"] == 0  # (it raised on every block after a rate change)
        assert ch.pipeline.counters["new_streams"] == 1
        assert driver.stats()["frame_errors"] == 0  # nobody stole bytes
    streams = read_recording(tmp_path / "state" / "recordings" / "cart-1")
    assert list(streams) == [".", next(k for k in streams if k.startswith("250Hz_from_"))]
    _first, rows = streams["."]
    before = cart.recorded[: cart.restarts_at[1]]
    lead = _leading_holes(rows)  # sent before the gateway first heard the cart (_accounted)
    kept = rows[lead:][~(rows[lead:] == NO_SAMPLE).all(axis=1)]
    np.testing.assert_array_equal(kept, before[lead : lead + len(kept)])  # the 500 Hz part
    assert lead + len(kept) >= len(before) - 200
    _accounted(gw, cart, tmp_path, stopped_at)
    reasons = " | ".join(g["reason"] for g in _gap_lines(tmp_path))
    assert "sample rate changed from 500 to 250 Hz" in reasons and "restarted" in reasons
    rates = {m.json()["samples"]["fs"] for m in listener.on(f"ecg/v1/{GW}/cart-1/strip")}
    assert rates == {500.0, 250.0}


async def test_junk_is_counted_and_logged_a_line_a_minute(
    mosquitto, mqtt_listener, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 11: 120 corrupted frames in a row cost their samples (reported as gaps) and
    a couple of log lines, not 120. And a periodic strip is labelled with the stage it
    shows (stage 1 here, not the next one), with a blood pressure measured by then."""
    broker = mosquitto()
    listener = mqtt_listener(broker, f"ecg/v1/{GW}/cart-1/strip")
    async with SimCart(speed=4.0, stage_s=2.0, seed=8, keep=True) as cart:
        cfg = _config(tmp_path, broker.url, cart.port, strips={"period_s": 1.6, "duration_s": 1.5})
        with caplog.at_level(logging.INFO):
            async with _running(cfg) as gw:
                driver = gw.drivers["cart-1"]
                await wait_for(lambda: _samples(gw) > 1000, "the cart streams")
                cart.corrupt_next_frame(120)
                await wait_for(lambda: driver.stats()["frame_errors"] >= 120, "120 bad frames")
                await wait_for(lambda: len(listener.on(f"ecg/v1/{GW}/cart-1/strip")) >= 6, "6")
                stopped_at = cart.produced
    lines = [r.getMessage() for r in caplog.records if "cart-1: frame:" in r.getMessage()]
    assert 1 <= len(lines) <= 2, lines
    gap_lines = [r for r in caplog.records if "samples missing" in r.getMessage()]
    assert 1 <= len(gap_lines) <= 2
    assert sum(g["n_samples"] for g in _gap_lines(tmp_path)) >= 120 * 20
    _accounted(gw, cart, tmp_path, stopped_at, lost=True)
    stage_samples = int(2.0 * 500)
    for m in listener.on(f"ecg/v1/{GW}/cart-1/strip"):
        s = m.json()
        last = s["samples"]["end_seq"] - 1
        if s["trigger"]["type"] != "periodic":
            continue
        assert s["facts"]["stage"]["stage"] == last // stage_samples + 1
        bp = s["facts"].get("blood_pressure")  # measured at the end of each stage
        assert bp is None or bp["time"] <= s["samples"]["end_seq"] / 500 + cart_t0(s) + 1e-3


def cart_t0(strip: dict) -> float:
    """UTC of the cart's sample 0 as this strip's times say (its start minus its offset)."""
    import datetime as dt

    start = dt.datetime.fromisoformat(strip["samples"]["start"].replace("Z", "+00:00"))
    return start.timestamp() - strip["samples"]["first_seq"] / strip["samples"]["fs"]
