"""What a BLE patch can send, through bleak over the virtual radio (issue #10).

A simulated patch of our profile (``sim/patch.py``) or a Polar-like H10
(``sim/polar_patch.py``), driven to misbehave with their test hooks; the gateway's own BLE
driver on the other end. Nothing the patch sends may stop the gateway, and every sample it
recorded must reach the gateway exactly once with its value, or be in a reported gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.events import ButtonPressed, Gap, RecordingSink
from core.units import EPOCH_2000
from drivers import uuids
from drivers.ble_driver import BleDriver
from drivers.patch_gatt import (
    DeviceTime,
    RacpOp,
    RacpResponse,
    RacpStatus,
    SymptomPress,
    decode_racp_command,
    encode_device_time,
    encode_ecg_frame,
    encode_symptom,
)
from drivers.patch_session import PatchSession, PatchSettings
from sim.bumble_backend import SimBleWorld
from sim.patch import SimPatch
from tests.support import RunningDriver, wait_for

pytestmark = pytest.mark.timeout(90)

SPEED = 10.0


@contextlib.asynccontextmanager
async def _driven(
    patch: SimPatch, world: SimBleWorld, **session: Any
) -> AsyncIterator[tuple[BleDriver, RecordingSink]]:
    """Our BLE driver on ``patch`` (RACP waits shortened with ``session`` kwargs)."""
    settings = PatchSettings("p1", patch.address, silence_timeout_s=1.0, time_scale=SPEED)
    sink = RecordingSink()
    drv = BleDriver(
        settings, PatchSession(settings, **session), sink, backend=world.backend(),
        reconnect_delay_s=(0.05, 0.2),
    )  # fmt: skip
    run = RunningDriver(drv, sink)
    run.start()
    try:
        yield drv, sink
    finally:
        await run.stop()


def _count(sink: RecordingSink, end: int) -> np.ndarray:
    count = np.zeros(end, int)
    for b in sink.blocks:
        if b.seq < end:
            count[b.seq : min(b.end_seq, end)] += 1
    return count


def _exactly(sink: RecordingSink, patch: SimPatch, end: int, *, lost_ok: bool = False) -> None:
    """Every sample the patch recorded before ``end`` reached the sink once with its value;
    with ``lost_ok`` a sample may instead be in a final gap (never both, never neither)."""
    count = _count(sink, end)
    gaps = np.zeros(end, int)
    for g in sink.gaps:
        assert g.final
        gaps[max(g.first_seq, 0) : min(g.end_seq, end)] += 1
    assert lost_ok or not gaps.any()
    np.testing.assert_array_equal(count + gaps, 1)
    for b in sink.blocks:
        z = min(b.end_seq, end)
        if b.seq < z:
            got = b.samples[: z - b.seq, 0] * 1000
            np.testing.assert_allclose(got, patch.recorded[b.seq : z], atol=1e-3)


async def _caught_up(drv: BleDriver, patch: SimPatch, what: str, limit_s: float = 30) -> int:
    target = patch.next_seq
    ledger = drv.session.stream.ledger  # type: ignore[attr-defined]
    await wait_for(
        lambda: ledger.next_seq is not None and ledger.next_seq >= target and not ledger.missing,
        what,
        limit_s,
    )
    return target


def _uv(patch: SimPatch, first: int, n: int) -> np.ndarray:
    return patch.recorded[first : first + n]


async def test_absurd_sample_numbers_lose_nothing() -> None:
    """Finding 3 (and 8's RANGE_DONE for a range never asked, and the 0xFFFFFFFF press):
    live frames at 0xFFFFFF00 and at the u32 wrap, an unsolicited backfill frame 250,000
    samples ahead, an EXTENT with next = 0xFFFFFFFF, a RANGE_DONE for a range never asked,
    a live frame running ahead and the patch's own frames going back into the hole it made,
    a symptom notification at sample 0xFFFFFFFF: afterwards every sample the patch recorded
    reached the gateway once, with its value; nothing was taken for a restart or a press."""
    world = SimBleWorld()
    async with (
        SimPatch(world, speed=SPEED, seed=3) as patch,
        _driven(patch, world, racp_retry_s=0.3) as (drv, sink),
    ):
        await wait_for(lambda: drv.stats()["samples"] > 1000, "live ECG")
        await patch.send(uuids.PATCH_ECG, encode_ecg_frame(0xFFFFFF00, _uv(patch, 0, 50)))
        await patch.send(uuids.PATCH_ECG, encode_ecg_frame(0xFFFFFFF0, _uv(patch, 0, 50)))
        head = drv.session.stream.ledger.next_seq  # type: ignore[attr-defined]
        far = encode_ecg_frame(head + 250_000, _uv(patch, 0, 50), backfill=True)
        await patch.send(uuids.PATCH_BACKFILL, far)
        us = int((time.time() - EPOCH_2000) * 1e6)
        await patch.send(uuids.PATCH_SYMPTOM, encode_symptom(SymptomPress(9, 0xFFFFFFFF, us)))
        # the next REPORT_EXTENT is answered with next = 0xFFFFFFFF, the next REQUEST_RANGE
        # first with a RANGE_DONE for a range never asked (then served as it should be)
        tricks = {"extent": 1, "range": 1}

        def hostile(command: bytes) -> bool:
            op = command[0]
            if op == RacpOp.REPORT_EXTENT and tricks["extent"]:
                tricks["extent"] -= 1
                patch.answer(RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, 0, 0xFFFFFFFF))
                return True
            if op == RacpOp.REQUEST_RANGE and tricks["range"]:
                tricks["range"] -= 1
                patch.answer(RacpResponse(RacpOp.RANGE_DONE, RacpStatus.SUCCESS, 10**6, 10**6))
            return False

        patch.on_racp = hostile
        await patch.disconnect()  # the next connection asks the extent again
        await wait_for(lambda: drv.stats()["connects"] >= 2, "reconnected")
        await wait_for(lambda: not any(tricks.values()), "the tricks played")
        # a live frame running ahead of the patch's own (true values): the patch's next
        # live frames go back into the hole it opened; only backfill may fill it
        await wait_for(lambda: patch.next_seq - patch._live_from >= 30, "samples in memory")
        k = patch.next_seq - 20
        await patch.send(uuids.PATCH_ECG, encode_ecg_frame(k, _uv(patch, k, 20)))
        target = await _caught_up(drv, patch, "all of it, backfilled")
    stats = drv.stats()
    assert stats["impossible_frames"] >= 2 and stats["restarts"] == 0
    assert stats["bad_notifications"] >= 2  # the far backfill frame, the non-press
    assert stats["racp_unexpected"] >= 2  # the absurd extent, the unasked range
    assert not sink.of(ButtonPressed)
    _exactly(sink, patch, target)


async def test_a_first_extent_with_oldest_after_next_drops_no_live_data() -> None:
    """Finding 3: the first EXTENT of a recording says oldest > next; it is refused and
    asked again, and live data is neither dropped as duplicates nor numbered wrongly."""
    world = SimBleWorld()
    async with SimPatch(world, speed=SPEED, seed=5) as patch:
        bad = {"n": 1}

        def inverted(command: bytes) -> bool:
            if command[0] == RacpOp.REPORT_EXTENT and bad["n"]:
                bad["n"] -= 1
                patch.answer(RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, 5000, 10))
                return True
            return False

        patch.on_racp = inverted
        async with _driven(patch, world, racp_retry_s=0.3) as (drv, sink):
            await wait_for(lambda: drv.stats()["samples"] > 1500, "live ECG")
            target = await _caught_up(drv, patch, "from the oldest sample on")
    stats = drv.stats()
    assert stats["racp_unexpected"] >= 1
    # live data was taken, not dropped as duplicates (at most the patch's live-frame lag
    # arrives twice: asked by backfill as "due", then sent live)
    assert stats["duplicate_samples"] <= 100 and stats["frames_live"] * 50 > stats["samples"] / 2
    _exactly(sink, patch, target)


async def test_a_patch_that_never_answers_racp_streams_and_a_drop_ends_the_wait() -> None:
    """Finding 8: a patch that never answers the record access control point still has its
    live data taken; when the link drops while the gateway waits for an answer the wait
    ends at once (no timeout counted), and a session that delivered data is not a failure
    for the backoff or the adapter."""
    world = SimBleWorld()
    async with SimPatch(world, speed=SPEED, seed=7) as patch:
        patch.on_racp = lambda _command: True  # silence
        async with _driven(patch, world, racp_timeout_s=30.0) as (drv, sink):
            await wait_for(lambda: drv.stats()["samples"] > 1000, "live ECG without RACP")
            for i in range(3):
                await patch.disconnect()  # while REPORT_EXTENT waits for its answer
                await wait_for(lambda i=i: drv.stats()["connects"] >= i + 2, "reconnected")
                at = drv.stats()["samples"]
                await wait_for(lambda at=at: drv.stats()["samples"] > at + 500, "live again")
            stats = drv.stats()
            assert stats["racp_timeouts"] == 0  # each wait ended with its link
            assert stats["connect_failures"] == 0 and drv.adapter.health.failures == 0
            patch.on_racp = None  # it answers at last: everything missed is backfilled
            await patch.disconnect()
            target = await _caught_up(drv, patch, "the drops backfilled")
    _exactly(sink, patch, target)


async def test_a_backfill_longer_than_the_wait_is_waited_for() -> None:
    """Finding 8: a backfill that takes longer than the RACP wait (1 s here; a frame every
    30 ms) is not timed out while its frames come: no timeout, no BUSY, no ABORT."""
    world = SimBleWorld()
    async with (
        SimPatch(world, speed=SPEED, seed=9) as patch,
        _driven(patch, world, racp_timeout_s=1.0) as (drv, sink),
    ):
        await wait_for(lambda: drv.stats()["samples"] > 500, "live ECG")
        patch.set_speed(50.0)  # (the absence passes quickly)
        await patch.go_away(30.0)  # 7,500 samples to backfill
        await wait_for(lambda: patch.connected, "back")
        patch.set_speed(SPEED)
        patch.backfill_frame_delay_s = 0.03  # 75 frames: over 2 s, twice the wait
        target = await _caught_up(drv, patch, "the absence backfilled")
    stats = drv.stats()
    assert stats["racp_timeouts"] == 0 and stats["racp_aborts"] == 0
    asked = [c for c in patch.racp_commands if c[0] == RacpOp.REQUEST_RANGE]
    assert len(asked) == len(set(asked))  # no range asked twice (so never answered BUSY)
    _exactly(sink, patch, target)


async def test_a_backfill_that_never_finishes_is_aborted_then_given_up() -> None:
    """Finding 8: a patch that starts every backfill and never finishes it (nor answers
    ABORT): no reconnection for it; the range is ABORTed, asked again, and after three
    requests that bring nothing it is a final gap with its reason. Every sample is either
    delivered or in that gap."""
    world = SimBleWorld()
    async with (
        SimPatch(world, speed=SPEED, seed=11) as patch,
        _driven(patch, world, racp_timeout_s=0.3, racp_retry_s=0.1) as (drv, sink),
    ):
        await wait_for(lambda: drv.stats()["samples"] > 500, "live ECG")

        begun: list[int] = []

        def stuck(command: bytes) -> bool:
            op, first, _end = decode_racp_command(command)
            if op == RacpOp.REQUEST_RANGE:  # each time the same 100 samples, then nothing
                begun.append(first)
                frame = encode_ecg_frame(begun[0], _uv(patch, begun[0], 100), backfill=True)
                asyncio.get_running_loop().create_task(patch.send(uuids.PATCH_BACKFILL, frame))
                return True
            return op == RacpOp.ABORT  # ignored too

        patch.on_racp = stuck
        connects = drv.stats()["connects"]
        patch.set_speed(50.0)
        await patch.go_away(10.0)
        await wait_for(lambda: patch.connected, "back")
        patch.set_speed(SPEED)
        await wait_for(lambda: sink.gaps, "the range given up")
        target = await _caught_up(drv, patch, "every range delivered or given up")
    assert {g.reason for g in sink.gaps} == {"patch did not backfill it (no answer)"}
    stats = drv.stats()
    assert stats["racp_aborts"] >= 3 and stats["connects"] == connects + 1  # one: the return
    _exactly(sink, patch, target, lost_ok=True)
    assert stats["samples_lost"] == sum(g.n_samples for g in sink.gaps)


async def test_a_patch_with_an_absurd_clock_never_stops_the_gateway(
    mosquitto, tmp_path: Path
) -> None:
    """Finding 2: Device Time reads of 5 bytes, then of 2^64 - 1 µs: the patch's data keeps
    flowing (anchored on arrival), the cart beside it never notices, the gateway runs on;
    a gap timed in the year 586,554 is recorded, not raised."""
    from core.events import Gap as GapEvent
    from gateway.app import Gateway
    from gateway.config import parse_config
    from sim.cart import SimCart

    broker = mosquitto()
    world = SimBleWorld()
    async with SimPatch(world, speed=SPEED) as patch, SimCart(speed=4.0) as cart:
        patch.device_time_bytes = b"\x01\x02\x03\x04\x05"
        cfg = parse_config(
            {
                "gateway": {"id": "gw-c", "state_dir": str(tmp_path / "state")},
                "mqtt": {"url": broker.url, "insecure": True},
                "devices": [
                    {"kind": "patch", "id": "p1", "address": patch.address},
                    {"kind": "cart_serial", "id": "c1", "port": cart.port},
                ],
                "live": {"enabled": False},
            }
        )
        gw = Gateway(cfg, ble_backend=world.backend(), device_time_scale=SPEED)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            await wait_for(lambda: "p1" in gw.channels, "devices built")
            p1, c1 = gw.channels["p1"], gw.channels["c1"]
            await wait_for(lambda: p1.stats()["samples"] > 1000, "the patch streams")
            patch.device_time_bytes = encode_device_time(DeviceTime(2**64 - 1, 0))
            await patch.disconnect()
            await wait_for(lambda: gw.drivers["p1"].stats()["connects"] >= 2, "reconnected")
            at = p1.stats()["samples"]
            await wait_for(lambda: p1.stats()["samples"] > at + 1000, "and streams on")
            p1.on_gap(GapEvent("p1", 0, 10, 2**64 / 1e6, 2**64 / 1e6 + 1, "absurd", True))
            assert not task.done()
            assert c1.stats()["samples"] > 0 and c1.counters["errors"] == 0
        finally:
            stop.set()
            await task
    stats = gw.drivers["p1"].stats()
    assert stats["clock_rejected"] == 2 and stats["session_errors"] == 0
    assert p1.counters["errors"] == 0 and gw.restarts == {"p1": 0, "c1": 0}


async def test_polar_lost_frames_of_any_size_and_absurd_timestamps() -> None:
    """Finding 4: an H10 sending frames of 5 to 73 samples loses six in the air and sends
    two absurd timestamps (an hour and 19 years ahead), soon after a lost frame: the gaps
    are exactly the lost samples (and an untrusted frame right beside a loss, which cannot
    be placed: the loss may lie before or after it), every other sample keeps its true
    number and value."""
    from drivers.ble_driver import ble_driver
    from drivers.polar_session import PolarSettings
    from sim.polar_patch import SimBlePatch

    rng = random.Random(4)
    world = SimBleWorld()
    async with SimBlePatch(world, speed=SPEED) as patch:
        patch.frame_sizes = [rng.randint(5, 73) for _ in range(97)]
        settings = PolarSettings("h10", patch.address, silence_timeout_s=1.0, time_scale=SPEED)
        sink = RecordingSink()
        drv = ble_driver(settings, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2))
        run = RunningDriver(drv, sink)
        run.start()
        try:
            await wait_for(lambda: run.samples > 500, "ECG")
            for i in range(6):
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                patch.drop_frames(1)
                await wait_for(lambda i=i: len(patch.dropped) == i + 1, "a frame lost")
                if i in (1, 4):  # and the next one sent with an absurd timestamp
                    patch.skew_next_timestamp(3600.0 if i == 1 else 19 * 365 * 86400.0)
                    await wait_for(lambda: not patch._skew_ns, "the absurd timestamp sent")
            at = run.samples
            await wait_for(lambda: run.samples > at + 500, "more ECG")
        finally:
            await run.stop()
    assert drv.stats()["connects"] == 1  # one link: no reconnection hides anything
    k0 = min(patch.sent)
    end = max(b.end_seq for b in sink.blocks)
    lost = np.zeros(end, bool)
    edges = {a for a, _ in patch.dropped} | {b for _, b in patch.dropped}
    beside = [(a, b) for a, b in patch.skewed if a in edges or b in edges]
    for a, b in patch.dropped + beside:  # (an untrusted frame beside a loss: unplaceable)
        lost[a - k0 : b - k0] = True
    reported = np.zeros(end, int)
    for g in sink.gaps:
        reported[g.first_seq : g.end_seq] += 1
    np.testing.assert_array_equal(reported, lost)  # exactly the lost samples
    np.testing.assert_array_equal(_count(sink, end), ~lost)
    for b in sink.blocks:
        sent = np.array([patch.sent[k0 + s] for s in range(b.seq, b.end_seq)])
        np.testing.assert_allclose(b.lead("ECG"), sent, atol=1e-6)  # true numbers
    assert drv.stats()["timestamps_rejected"] == 2
    assert all(isinstance(g, Gap) and g.final for g in sink.gaps)
