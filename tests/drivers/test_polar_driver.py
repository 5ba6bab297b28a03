"""The BLE path end to end: simulated patch -> bumble link -> bleak -> driver -> sink.

Nothing is mocked above the radio: the driver runs real bleak and
bleak-retry-connector code on a bleak backend built on bumble virtual
controllers (drivers/sim/bumble_backend.py).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from bleak import BleakClient

from core.block import SampleBlock, concat_blocks
from core.events import (
    BatteryLevel,
    ButtonPressed,
    Connected,
    DeviceInfo,
    Disconnected,
    DriverError,
    Gap,
    HeartRate,
    RecordingSink,
    RrGapSeen,
)
from drivers import uuids
from drivers.ble_adapter import BleAdapter
from drivers.ble_driver import ble_driver as polar_driver
from drivers.polar_pmd import (
    decode_ecg_frame,
    parse_control_response,
    start_ecg_command,
    stop_command,
)
from drivers.polar_session import PolarSettings
from sim.bumble_backend import SimBleWorld
from sim.polar_patch import SimBlePatch
from tests.support import SPEED, RunningDriver, wait_for


def check_values_match_sent(blocks: list[SampleBlock], patch: SimBlePatch, k0: int) -> None:
    """Every received sample equals what the patch sent at device sample ``k0 + seq``."""
    for b in blocks:
        sent = np.array([patch.sent[k0 + s] for s in range(b.seq, b.end_seq)])
        np.testing.assert_allclose(b.lead("ECG"), sent, atol=1e-6)


async def test_bleak_client_over_bumble(world: SimBleWorld, patch: SimBlePatch) -> None:
    lost = asyncio.Event()
    client = BleakClient(
        patch.address, disconnected_callback=lambda _c: lost.set(), backend=world.backend()
    )
    await client.connect()
    try:
        assert client.mtu_size == 247
        assert client.services.get_service(uuids.PMD_SERVICE) is not None
        assert await client.read_gatt_char(uuids.BATTERY_LEVEL) == bytearray([87])
        assert await client.read_gatt_char(uuids.PMD_CONTROL_POINT) == bytearray(b"\x0f\x01\x00")
        responses: list[bytes] = []
        frames: list[bytes] = []
        await client.start_notify(uuids.PMD_CONTROL_POINT, lambda _c, d: responses.append(d))
        await client.start_notify(uuids.PMD_DATA, lambda _c, d: frames.append(d))
        await client.write_gatt_char(uuids.PMD_CONTROL_POINT, start_ecg_command(), response=True)
        await wait_for(lambda: len(frames) >= 2, "two ECG frames")
        assert parse_control_response(responses[0]).ok
        assert decode_ecg_frame(frames[0]).n == 73
        await client.stop_notify(uuids.PMD_DATA)
        await patch.disconnect()
        await wait_for(lost.is_set, "disconnected callback")
        assert not client.is_connected
    finally:
        await client.disconnect()


async def test_stream_hr_battery_button(driver: RunningDriver, patch: SimBlePatch) -> None:
    await wait_for(lambda: driver.samples >= 3 * 130, "3 s of ECG")
    press = await patch.press_button()
    await wait_for(lambda: driver.events(ButtonPressed), "button event")
    await wait_for(lambda: len(driver.events(HeartRate)) >= 2, "HR events")

    whole = concat_blocks(driver.sink.blocks)  # raises unless seq is contiguous
    assert whole.seq == 0 and whole.fs == 130.0 and whole.source == "patch-1"
    assert driver.sink.gaps == []
    check_values_match_sent(driver.sink.blocks, patch, min(patch.sent))

    (button,) = driver.events(ButtonPressed)
    assert (button.press_id, button.device_time) == (1, press.device_time_posix)
    assert button.seq is not None and button.seq >= 0
    hrs = driver.events(HeartRate)
    assert hrs[0].bpm == 72
    rr = [r for e in hrs for r in e.rr_s]  # the true intervals of the beats heard
    sent = [round(r * 1024) / 1024 for _, r in patch.rr_sent]
    assert rr and rr == sent[: len(rr)]
    assert all(0.6 < r < 1.1 for r in rr)  # 72 bpm with sinus arrhythmia
    assert [e.percent for e in driver.events(BatteryLevel)] == [87]
    assert driver.events(DeviceInfo)[0].model == "SIM-PATCH"
    assert driver.events(Connected)[0].mtu == 247
    await patch.set_battery(55)
    await wait_for(lambda: len(driver.events(BatteryLevel)) == 2, "battery notification")
    assert driver.events(BatteryLevel)[1].percent == 55
    stats = driver.driver.stats()
    assert stats["frames_ok"] >= 5 and stats["frames_malformed"] == 0 and stats["connects"] == 1


async def test_malformed_notification_counted_and_dropped(
    driver: RunningDriver, patch: SimBlePatch
) -> None:
    await wait_for(lambda: driver.samples >= 130, "ECG flowing")
    patch.corrupt_next_frame()
    await wait_for(lambda: driver.stat("frames_malformed") == 1, "malformed frame counted")
    after = driver.samples
    await wait_for(lambda: driver.samples >= after + 2 * 73, "stream goes on")
    (error,) = [e for e in driver.events(DriverError) if e.what == "pmd_frame"]
    assert error.count == 1
    assert driver.sink.gaps == []
    concat_blocks(driver.sink.blocks)
    check_values_match_sent(driver.sink.blocks, patch, min(patch.sent))


async def test_disconnect_reconnect_reports_exact_gap(
    driver: RunningDriver, patch: SimBlePatch
) -> None:
    await wait_for(lambda: driver.samples >= 2 * 130, "ECG flowing")
    await patch.disconnect()
    await wait_for(lambda: driver.stat("reconnects") == 1, "reconnected")
    await wait_for(lambda: len(driver.sink.gaps) == 1, "gap reported")
    after = driver.samples
    await wait_for(lambda: driver.samples >= after + 2 * 73, "streaming again")

    (gap,) = driver.sink.gaps
    assert isinstance(gap, Gap) and gap.final and gap.source == "patch-1"
    # the gap is exactly the device samples the patch never sent
    k0 = min(patch.sent)
    missing = [k for k in range(k0, max(patch.sent)) if k not in patch.sent]
    assert (gap.first_seq, gap.end_seq) == (missing[0] - k0, missing[-1] + 1 - k0)
    assert gap.n_samples == len(missing)
    blocks = driver.sink.blocks
    before = [b for b in blocks if b.end_seq <= gap.first_seq]
    later = [b for b in blocks if b.seq >= gap.end_seq]
    assert len(before) + len(later) == len(blocks)
    assert concat_blocks(before).end_seq == gap.first_seq
    assert concat_blocks(later).seq == gap.end_seq
    assert gap.start == pytest.approx(concat_blocks(before).end)
    assert gap.end == pytest.approx(concat_blocks(later).start)
    check_values_match_sent(blocks, patch, k0)
    kinds = [e.kind for e in driver.sink.events if isinstance(e, Connected | Disconnected)]
    assert kinds == ["connected", "disconnected", "connected"]


async def test_a_press_made_while_disconnected_arrives_at_its_sample(
    driver: RunningDriver, patch: SimBlePatch
) -> None:
    """The patient presses while the link is down: the device keeps the press and
    notifies it when the gateway subscribes again; the gateway places it by its device
    time on the samples' numbering (the device clock kept running)."""
    await wait_for(lambda: driver.samples >= 2 * 130, "ECG flowing")
    await patch.disconnect()
    press = await patch.press_button()  # nobody listens: kept
    await wait_for(lambda: driver.events(ButtonPressed), "the press, after reconnecting")
    (button,) = driver.events(ButtonPressed)
    k0 = min(patch.sent)
    at = (press.device_time_ns - patch._sample_time_ns(k0)) * 130 / 1e9  # its sample
    assert button.press_id == 1 and button.seq is not None
    assert abs(button.seq - at) <= 1
    assert driver.driver.stats()["presses_repeated"] == 0


@pytest.mark.timeout(120)
async def test_many_disconnects_gap_ledger_equals_truly_missed(
    driver: RunningDriver, patch: SimBlePatch
) -> None:
    """A patch without memory (Polar PMD): 20 disconnects at random moments; the gaps
    reported are exactly the device samples that were never sent, nothing else."""
    import random

    rng = random.Random(9)
    await wait_for(lambda: driver.samples >= 130, "ECG flowing")
    for i in range(20):
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        await wait_for(lambda: patch.streaming, "streaming", 30)
        await patch.disconnect()
        await wait_for(lambda i=i: driver.stat("reconnects") == i + 1, "reconnected", 30)
    after = driver.samples
    await wait_for(lambda: driver.samples >= after + 130, "streaming again")
    await driver.stop()

    k0 = min(patch.sent)
    end = max(b.end_seq for b in driver.sink.blocks)
    received = np.zeros(end, int)
    for b in driver.sink.blocks:
        received[b.seq : b.end_seq] += 1
    reported = np.zeros(end, int)
    for g in driver.sink.gaps:
        assert g.final and g.n_samples > 0
        reported[g.first_seq : g.end_seq] += 1
    truly_missed = np.array([k0 + s not in patch.sent for s in range(end)])
    np.testing.assert_array_equal(received, ~truly_missed)  # every sent sample, once
    np.testing.assert_array_equal(reported.astype(bool), truly_missed)  # gaps = the rest
    assert reported.max() == 1  # no range reported twice
    assert len(driver.sink.gaps) >= 10  # most disconnects cost samples
    check_values_match_sent(driver.sink.blocks, patch, k0)


async def test_silent_stream_watchdog_reconnects(driver: RunningDriver, patch: SimBlePatch) -> None:
    await wait_for(lambda: driver.samples >= 130, "ECG flowing")
    patch.stall()
    await wait_for(lambda: driver.stat("watchdog_trips") == 1, "watchdog trip")
    await wait_for(lambda: driver.stat("reconnects") == 1, "reconnected")
    after = driver.samples
    await wait_for(lambda: driver.samples >= after + 73, "streaming again")
    assert [e.what for e in driver.events(DriverError)] == ["silence"]
    assert driver.events(Disconnected)[0].reason == "silent stream"
    assert len(driver.sink.gaps) == 1


async def test_cancel_stops_stream_and_disconnects(
    driver: RunningDriver, patch: SimBlePatch
) -> None:
    await wait_for(lambda: driver.samples >= 73, "ECG flowing")
    await driver.stop()
    assert driver.task is not None and driver.task.cancelled()
    await wait_for(lambda: not patch.connected, "patch sees the link drop")
    assert not patch.streaming
    assert patch.commands == [start_ecg_command(), stop_command()]
    assert driver.events(Disconnected)[-1].reason == "stopped"


async def test_unreachable_patch_is_retried_with_errors(world: SimBleWorld) -> None:
    config = PolarSettings("nobody", "F0:00:00:00:FF:FF", connect_timeout_s=0.3)
    sink = RecordingSink()
    running = RunningDriver(
        polar_driver(config, sink, backend=world.backend(), reconnect_delay_s=(0.01, 0.05)),
        sink,
    )
    running.start()
    await wait_for(lambda: running.stat("connect_failures") >= 2, "two failed attempts")
    await running.stop()
    assert running.events(Connected) == []
    assert all(e.what == "link" for e in running.events(DriverError))


async def test_two_patches_share_one_adapter(world: SimBleWorld) -> None:
    """Two patches on one adapter: connections are serialised, both stream."""
    adapter = BleAdapter()
    async with (
        SimBlePatch(world, speed=SPEED, hr_bpm=60.0, seed=1) as p1,
        SimBlePatch(world, speed=SPEED, hr_bpm=90.0, seed=2) as p2,
    ):
        runs = []
        for i, p in enumerate((p1, p2)):
            cfg = PolarSettings(f"patch-{i}", p.address, time_scale=SPEED)
            sink = RecordingSink()
            drv = polar_driver(cfg, sink, backend=world.backend(), adapter=adapter)
            runs.append(RunningDriver(drv, sink))
        for r in runs:
            r.start()
        try:
            await wait_for(lambda: all(r.samples > 500 for r in runs), "both patches streaming")
        finally:
            for r in runs:
                await r.stop()
        assert {b.source for b in runs[0].sink.blocks} == {"patch-0"}
        assert {b.source for b in runs[1].sink.blocks} == {"patch-1"}


@pytest.mark.timeout(60)
async def test_heart_rate_service_gaps_match_the_beats_never_heard(world: SimBleWorld) -> None:
    """HRS has no sequence numbers: beats lost while the stream was stalled are found as
    RR gaps whose beat counts equal the truth and whose spans are right to within 0.4
    of a beat. The patch runs at 4x and the driver's clock with it (RR intervals are device
    seconds; a gap is settled after 15 notifications of the chain after it)."""
    speed = 4.0
    t0_wall, t0 = time.monotonic(), time.time()
    async with SimBlePatch(world, speed=speed, hr_bpm=90.0, seed=4) as patch:
        cfg = PolarSettings("patch-1", patch.address, silence_timeout_s=1.5)
        sink = RecordingSink()
        run = RunningDriver(
            polar_driver(
                cfg,
                sink,
                backend=world.backend(),
                reconnect_delay_s=(0.05, 0.1),
                clock=lambda: t0 + (time.monotonic() - t0_wall) * speed,
            ),
            sink,
        )
        run.start()
        try:
            await wait_for(lambda: len(run.events(HeartRate)) >= 15, "HR flowing", 30)
            for i in range(3):
                patch.stall()  # silent: the watchdog reconnects; beats meanwhile are lost
                await wait_for(lambda i=i: run.stat("reconnects") == i + 1, "back", 30)
                await wait_for(lambda i=i: len(run.events(RrGapSeen)) == i + 1, "rr gap", 30)
        finally:
            await run.stop()
    synth = patch.synth
    heard = {round(t, 6) for t, _ in patch.rr_sent}
    beats = [t for t in synth.r_times_between(0.0, 1e9) if t >= patch.rr_sent[0][0]]
    beats = [t for t in beats if t <= patch.rr_sent[-1][0]]
    runs: list[tuple[float, float, int]] = []  # (last heard, last unheard, unheard count)
    last_heard, last_unheard, count = beats[0], beats[0], 0
    for t in beats:
        if round(t, 6) in heard:
            if count:
                runs.append((last_heard, last_unheard, count))
            last_heard, count = t, 0
        else:
            last_unheard, count = t, count + 1
    gaps = run.events(RrGapSeen)
    assert [g.beats_missing for g in gaps] == [n for _, _, n in runs]
    for g, (a, b, _) in zip(gaps, runs, strict=True):
        assert abs(g.duration_s - (b - a)) < 0.4 * 60 / 90
    assert run.stat("rr_gaps") == 3


async def test_a_device_refusing_start_does_not_get_the_adapter_reset(world: SimBleWorld) -> None:
    """A strap that answers every START with an error ends each connection without data;
    its answers prove the adapter works, so it never counts towards the power-cycle that
    would cut every other device's link."""
    from drivers.ble_adapter import AdapterHealth
    from drivers.polar_pmd import PmdOp, PmdStatus

    resets: list[float] = []

    async def reset() -> None:
        resets.append(time.monotonic())

    health = AdapterHealth(failures_to_reset=1, min_span_s=0.0, cooldown_s=0.0)
    adapter = BleAdapter(reset, health)
    async with SimBlePatch(world, speed=SPEED, seed=3) as patch:
        handle = patch._handle_command

        def refuse_start(cmd: bytes) -> tuple[int, bytes]:
            if cmd[:1] == bytes([PmdOp.START]):
                return PmdStatus.NOT_SUPPORTED, b""
            return handle(cmd)

        patch._handle_command = refuse_start  # type: ignore[method-assign]
        cfg = PolarSettings("patch-1", patch.address, time_scale=SPEED)
        sink = RecordingSink()
        drv = polar_driver(
            cfg, sink, backend=world.backend(), adapter=adapter, reconnect_delay_s=(0.01, 0.05)
        )
        run = RunningDriver(drv, sink)
        run.start()
        try:
            await wait_for(lambda: drv.stats()["connects"] >= 3, "three refused sessions", 30)
        finally:
            await run.stop()
    assert run.samples == 0
    assert resets == [] and health.failures == 0
