"""Our patch profile end to end through bleak + bumble: nothing lost across disconnects."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from core.events import RecordingSink
from drivers.ble_driver import ble_driver as patch_driver
from drivers.patch_session import PatchSettings
from sim.bumble_backend import SimBleWorld
from sim.patch import SimPatch
from tests.support import RunningDriver, wait_for

pytestmark = pytest.mark.timeout(90)


def _received(sink: RecordingSink, end: int) -> tuple[np.ndarray, np.ndarray]:
    got = np.zeros(end)
    count = np.zeros(end, int)
    for b in sink.blocks:
        a, z = b.seq, min(b.end_seq, end)
        if a < end:
            got[a:z] = b.samples[: z - a, 0]
            count[a:z] += 1
    return got, count


def _quick_to_give_up(patch: SimPatch, time_scale: float) -> PatchSettings:
    """Short silence and setup limits: on the virtual link a wedged setup costs 0.5 s."""
    return PatchSettings(
        id="patch-1",
        address=patch.address,
        silence_timeout_s=0.5,
        connect_timeout_s=0.5,
        time_scale=time_scale,  # the simulated patch runs faster than real time
    )


def _driving(world: SimBleWorld, patch: SimPatch, time_scale: float) -> tuple[Any, RunningDriver]:
    """A patch driver for ``patch`` quick to give up and reconnect, started: (driver, run)."""
    sink = RecordingSink()
    drv = patch_driver(
        _quick_to_give_up(patch, time_scale), sink, backend=world.backend(),
        reconnect_delay_s=(0.05, 0.5),
    )  # fmt: skip
    run = RunningDriver(drv, sink)
    run.start()
    return drv, run


async def _backfilled(drv: Any, target: int, limit_s: float, what: str) -> None:
    """Wait until the driver holds every sample before ``target`` (nothing missing)."""
    ledger = drv.session.stream.ledger
    await wait_for(
        lambda: ledger.next_seq is not None and ledger.next_seq >= target and ledger.missing == 0,
        what,
        limit_s,
    )


def _exactly_the_recording(sink: RecordingSink, patch: SimPatch, target: int) -> None:
    """Every sample the patch recorded before ``target`` reached the sink once, unchanged."""
    got, count = _received(sink, target)
    np.testing.assert_array_equal(count, 1)
    np.testing.assert_allclose(got * 1000, patch.recorded[:target], atol=1e-3)


async def test_forced_disconnects_lose_nothing() -> None:
    world = SimBleWorld()
    rng = random.Random(4)
    async with SimPatch(world, speed=10.0, memory_s=600) as patch:
        cfg = PatchSettings(id="patch-1", address=patch.address, silence_timeout_s=2, time_scale=10)
        sink = RecordingSink()
        drv = patch_driver(cfg, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2))
        run = RunningDriver(drv, sink)
        run.start()
        try:
            await wait_for(lambda: drv.stats()["samples"] > 500, "first ECG", 30)
            for i in range(10):
                await asyncio.sleep(rng.uniform(0.1, 0.6))
                await patch.disconnect()
                await wait_for(lambda i=i: drv.stats()["connects"] > i + 1, "reconnected", 30)
            target = patch.next_seq
            await _backfilled(drv, target, 60, "every missing range backfilled")
        finally:
            await run.stop()
        _exactly_the_recording(sink, patch, target)
        assert drv.stats()["frames_backfill"] > 0 and drv.stats()["samples_lost"] == 0
        assert not sink.gaps


@pytest.mark.soak  # 30 s; the default suite forces 10 (test_forced_disconnects_lose_nothing)
@pytest.mark.timeout(240)
async def test_ten_minutes_with_100_disconnects_at_random_moments_lose_nothing() -> None:
    """10 simulated minutes (20x real time), 100 forced disconnects at random moments.

    The simulated link sometimes wedges when a connection drops mid-setup (the virtual
    controller stops answering); the driver's bounded setup gets it going again, which
    costs simulated time — the patch memory (1 h) covers it.
    """
    world = SimBleWorld()
    rng = random.Random(2026)
    speed, minutes = 20.0, 10.0
    moments = sorted(rng.uniform(2.0, minutes * 60 - 2.0) for _ in range(100))  # simulated s
    async with SimPatch(world, speed=speed, memory_s=3600) as patch:
        cfg = _quick_to_give_up(patch, speed)
        sink = RecordingSink()
        drv = patch_driver(cfg, sink, backend=world.backend(), reconnect_delay_s=(0.02, 0.2))
        run = RunningDriver(drv, sink)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        run.start()
        forced = 0
        try:
            for moment in moments:
                await asyncio.sleep(max(0.0, t0 + moment / speed - loop.time()))
                # a disconnect needs a connection: if the last one is still coming back,
                # this one happens as soon as it is up
                await wait_for(lambda: patch.connected, "connected again", 30)
                await patch.disconnect()
                forced += 1
            await asyncio.sleep(max(0.0, t0 + minutes * 60 / speed - loop.time()))
            target = patch.next_seq
            await _backfilled(drv, target, 90, "every missing range backfilled")
        finally:
            await run.stop()
        assert forced == 100
        assert target >= 0.95 * minutes * 60 * 250  # about 10 minutes at 250 Hz were recorded
        _exactly_the_recording(sink, patch, target)
        assert drv.stats()["frames_backfill"] > 0 and drv.stats()["samples_lost"] == 0
        assert not sink.gaps


async def test_patch_gone_longer_than_its_memory_gives_exact_final_gap() -> None:
    world = SimBleWorld()
    async with SimPatch(world, speed=20.0, memory_s=10) as patch:
        cfg = PatchSettings(id="patch-2", address=patch.address, time_scale=20)
        sink = RecordingSink()
        drv = patch_driver(cfg, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2))
        run = RunningDriver(drv, sink)
        run.start()
        await wait_for(lambda: drv.stats()["samples"] > 1000, "first ECG", 30)
        await run.stop()
        last = drv.session.stream.ledger.next_seq or 0
        await asyncio.sleep(1.5)  # 30 simulated seconds away: 20 s fall out of memory
        oldest = patch.oldest
        assert oldest > last
        run = RunningDriver(drv, sink)  # the same driver again: same recording, same ledger
        run.start()
        try:
            await wait_for(lambda: sink.gaps, "the final gap", 30)
        finally:
            await run.stop()
        (gap,) = sink.gaps
        assert (gap.first_seq, gap.end_seq, gap.final) == (last, oldest, True) or (
            gap.first_seq == last and gap.end_seq >= oldest
        )


async def test_stuck_adapter_is_reset_and_nothing_is_lost() -> None:
    """Every connection fails (a stuck BlueZ) until the adapter is power-cycled."""
    from drivers.ble_adapter import AdapterHealth, BleAdapter

    world = SimBleWorld()
    health = AdapterHealth(failures_to_reset=4, min_span_s=0.1, cooldown_s=1.0)
    adapter = BleAdapter(world.reset_adapter, health)
    async with SimPatch(world, speed=10.0, memory_s=600) as patch:
        cfg = PatchSettings(id="patch-1", address=patch.address, silence_timeout_s=1, time_scale=10)
        sink = RecordingSink()
        drv = patch_driver(
            cfg, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2), adapter=adapter
        )
        run = RunningDriver(drv, sink)
        run.start()
        try:
            await wait_for(lambda: drv.stats()["samples"] > 500, "first ECG", 30)
            world.jam()
            await patch.disconnect()
            await wait_for(lambda: world.resets == 1, "the adapter reset", 30)
            await wait_for(lambda: drv.stats()["connects"] >= 2, "connected after the reset", 30)
            target = patch.next_seq
            await _backfilled(drv, target, 30, "the outage backfilled")
        finally:
            await run.stop()
        assert drv.stats()["connect_failures"] >= 4 and health.resets == 1
        _exactly_the_recording(sink, patch, target)


@pytest.mark.soak  # 30 s; the default suite backfills a patch away longer than its memory
@pytest.mark.timeout(180)
async def test_patch_away_for_an_hour_comes_back_with_every_sample() -> None:
    """The patient leaves the gateway for one simulated hour (at 200x real time while away,
    5x otherwise); on return the gateway backfills the hour from the patch's memory:
    nothing is lost."""
    world = SimBleWorld()
    async with SimPatch(world, speed=5.0, memory_s=2 * 3600) as patch:
        drv, run = _driving(world, patch, 200.0)
        sink = run.sink
        try:
            await wait_for(lambda: drv.stats()["samples"] > 250 * 10, "10 s of ECG", 30)
            left_at = patch.next_seq
            patch.set_speed(200.0)
            await patch.go_away(3600.0)
            await wait_for(lambda: patch.connected, "back after the hour", 60)
            patch.set_speed(5.0)
            assert patch.next_seq - left_at >= 3600 * 250
            target = patch.next_seq
            await _backfilled(drv, target, 120, "the hour backfilled")
        finally:
            await run.stop()
        _exactly_the_recording(sink, patch, target)
        assert drv.stats()["samples_lost"] == 0 and not sink.gaps
        assert drv.stats()["connect_failures"] > 0  # it kept trying while the patch was away


async def test_two_patches_on_one_adapter_each_lose_nothing() -> None:
    """Two patients' patches on one gateway: one adapter (lock), independent backfill."""
    from drivers.ble_adapter import BleAdapter

    world = SimBleWorld()
    adapter = BleAdapter(world.reset_adapter)
    async with (
        SimPatch(world, speed=10.0, seed=1) as p1,
        SimPatch(world, speed=10.0, seed=2, hr_bpm=95.0) as p2,
    ):
        runs = []
        for i, patch in enumerate((p1, p2)):
            cfg = PatchSettings(id=f"patch-{i}", address=patch.address, time_scale=10)
            sink = RecordingSink()
            drv = patch_driver(
                cfg,
                sink,
                backend=world.backend(),
                reconnect_delay_s=(0.05, 0.2),
                adapter=adapter,
            )
            runs.append(RunningDriver(drv, sink))
            runs[-1].start()
        try:
            drivers = [r.driver for r in runs]
            await wait_for(
                lambda: all(d.stats()["samples"] > 500 for d in drivers), "both stream", 30
            )
            for _ in range(3):
                await p1.disconnect()
                await asyncio.sleep(0.2)
                await p2.disconnect()
                await asyncio.sleep(0.2)
            targets = [p1.next_seq, p2.next_seq]
            await wait_for(
                lambda: all(
                    d.session.stream.ledger.next_seq >= t and d.session.stream.ledger.missing == 0
                    for d, t in zip(drivers, targets, strict=True)
                ),
                "both backfilled",
                30,
            )
        finally:
            for r in runs:
                await r.stop()
        for r, patch, target in zip(runs, (p1, p2), targets, strict=True):
            _exactly_the_recording(r.sink, patch, target)
            assert r.driver.stats()["connects"] >= 4


async def test_an_absent_patch_holds_up_no_other() -> None:
    """Two patches on one adapter, one of them away: while the absent one's connection
    attempt waits out its (long) timeout, the present one connects and streams."""
    from drivers.ble_adapter import BleAdapter

    world = SimBleWorld()
    adapter = BleAdapter(world.reset_adapter)
    async with SimPatch(world, speed=10.0) as present:
        nobody = world.new_address(0xE0)  # no patch answers there
        absent_cfg = PatchSettings(id="away", address=nobody, connect_timeout_s=60, time_scale=10)
        here_cfg = PatchSettings(id="here", address=present.address, time_scale=10)
        runs = []
        for cfg in (absent_cfg, here_cfg):
            sink = RecordingSink()
            drv = patch_driver(cfg, sink, backend=world.backend(), adapter=adapter)
            runs.append(RunningDriver(drv, sink))
            runs[-1].start()
            if cfg is absent_cfg:
                await wait_for(lambda: adapter.connecting_now == 1, "the absent patch's attempt")
        away, here = (r.driver for r in runs)
        try:
            await wait_for(lambda: here.stats()["samples"] > 500, "the present patch streams", 30)
            # the absent patch's first attempt is still waiting: it held up nothing
            assert adapter.connecting_now == 1
            assert away.stats()["connect_failures"] == 0 and away.stats()["connects"] == 0
        finally:
            for r in runs:
                await r.stop()
        assert adapter.connecting_now == 0


async def test_rssi_of_the_advertisement_before_each_connection() -> None:
    """As on BlueZ, the driver scans for the patch before connecting (here over the virtual
    radio's scanner) and reports the RSSI the patch advertised with, at every connection."""
    from core.events import SignalStrength
    from drivers import uuids
    from sim.bumble_scanner import advertise, scanner_backend

    world = SimBleWorld()
    patch = SimPatch(world, speed=5.0)
    advertise(patch.device, "ECG Patch", [uuids.PATCH_SERVICE])
    async with patch:
        cfg = PatchSettings(id="patch-1", address=patch.address, time_scale=5)
        sink = RecordingSink()
        drv = patch_driver(
            cfg,
            sink,
            backend=world.backend(),
            scanner=scanner_backend(world),
            reconnect_delay_s=(0.05, 0.2),
        )
        run = RunningDriver(drv, sink)
        run.start()
        try:
            await wait_for(lambda: drv.stats()["samples"] > 250, "streaming", 30)
            await patch.disconnect()
            await wait_for(lambda: len(run.events(SignalStrength)) >= 2, "a second connection", 30)
        finally:
            await run.stop()
    for e in run.events(SignalStrength):
        assert isinstance(e.dbm, int) and -127 <= e.dbm <= 20, e


async def test_presses_made_while_away_reach_the_gateway_on_return() -> None:
    """The patient presses the patch twice while out of range: the patch keeps both and
    notifies them once the gateway subscribes again, each at the sample it was pressed at
    (docs/protocols/patch-gatt.md); nothing the patient does is lost."""
    from core.events import ButtonPressed

    world = SimBleWorld()
    async with SimPatch(world, speed=10.0, memory_s=600) as patch:
        drv, run = _driving(world, patch, 10.0)
        try:
            await wait_for(lambda: drv.stats()["samples"] > 250 * 5, "5 s of ECG", 30)
            await patch.go_away(20.0)
            pressed = [await patch.press_button()]
            await asyncio.sleep(0.5)
            pressed.append(await patch.press_button())
            await wait_for(lambda: patch.connected, "back in range", 30)
            await wait_for(lambda: len(run.events(ButtonPressed)) == 2, "both presses", 30)
        finally:
            await run.stop()
        got = run.events(ButtonPressed)
        assert [(p.press_id, p.seq) for p in got] == [(p.press_id, p.seq) for p in pressed]


async def test_electrodes_off_and_on_again_reach_the_gateway_as_lead_off_events() -> None:
    """The patch loses skin contact and regains it (its Status notifications, its live
    frames' flag): the driver reports one LeadOff naming the lead, then one with none."""
    from core.events import LeadOff

    world = SimBleWorld()
    async with SimPatch(world, speed=10.0, memory_s=600) as patch:
        drv, run = _driving(world, patch, 10.0)
        try:
            await wait_for(lambda: drv.stats()["samples"] > 250 * 3, "3 s of ECG", 30)
            await patch.set_lead_off(True)
            await wait_for(lambda: len(run.events(LeadOff)) == 1, "electrodes off", 30)
            at = drv.stats()["samples"]
            await wait_for(lambda: drv.stats()["samples"] > at + 250, "1 s more", 30)
            await patch.set_lead_off(False)
            await wait_for(lambda: len(run.events(LeadOff)) == 2, "contact again", 30)
            await asyncio.sleep(0.3)  # no further change is invented
        finally:
            await run.stop()
        assert [bool(e.leads) for e in run.events(LeadOff)] == [True, False]
