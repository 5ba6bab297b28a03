"""The simulated patch answers the record access control point exactly as
docs/protocols/patch-gatt.md's table says, seen through bleak over the virtual radio.

Independent simulators written from that document are used to judge the gateway, so the
gateway's own simulator must give every documented answer, including the refusals.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from drivers import uuids
from drivers.patch_gatt import (
    RacpOp,
    RacpResponse,
    RacpStatus,
    decode_ecg_frame,
    decode_racp_response,
    encode_report_extent,
    encode_request_range,
)
from tests.support import wait_for

pytestmark = pytest.mark.timeout(60)

ABORT = bytes([RacpOp.ABORT])


def _done(status: RacpStatus, first: int, end: int) -> RacpResponse:
    return RacpResponse(RacpOp.RANGE_DONE, status, first, end)


class Central:
    """A bare bleak client on the patch: RACP answers and backfill frames, in order."""

    def __init__(self, client) -> None:
        self.client = client
        self.answers: asyncio.Queue[RacpResponse] = asyncio.Queue()
        self.backfilled: list[tuple[int, int]] = []

    async def start(self) -> None:
        await self.client.connect()
        await self.client.start_notify(
            uuids.PATCH_RACP, lambda _c, d: self.answers.put_nowait(decode_racp_response(d))
        )
        await self.client.start_notify(uuids.PATCH_BACKFILL, self._frame)

    def _frame(self, _c, data: bytearray) -> None:
        f = decode_ecg_frame(data)
        self.backfilled.append((f.first_seq, f.end_seq))

    async def ask(self, command: bytes) -> RacpResponse:
        await self.client.write_gatt_char(uuids.PATCH_RACP, command, response=True)
        async with asyncio.timeout(10):  # hang guard
            return await self.answers.get()

    def sent(self) -> int:
        return sum(b - a for a, b in self.backfilled)


async def test_every_racp_case_is_answered_as_documented() -> None:
    from bleak import BleakClient

    from sim.bumble_backend import SimBleWorld
    from sim.patch import SimPatch

    world = SimBleWorld()
    # memory of 4 s at 10x: the oldest sample moves on while the test runs
    async with SimPatch(world, speed=10.0, memory_s=4.0) as patch:
        await wait_for(lambda: patch.next_seq > 2000, "8 s of recording (memory full)")
        central = Central(BleakClient(patch.address, backend=world.backend()))
        await central.start()
        try:
            extent = await central.ask(encode_report_extent())
            assert extent.op == RacpOp.EXTENT and extent.first <= extent.end
            oldest, nxt = extent.first, extent.end
            assert nxt - oldest == patch.capacity  # the ring is full

            # all of it held
            a, b = nxt - 300, nxt - 100
            assert await central.ask(encode_request_range(a, b)) == _done(RacpStatus.SUCCESS, a, b)
            assert central.sent() == 200 and central.backfilled[0][0] == a

            # reaching past `next` (not recorded yet): the held part, then NOT_HELD
            now = patch.next_seq
            r = await central.ask(encode_request_range(now - 50, now + 10**6))
            assert r.status == RacpStatus.NOT_HELD and r.first == now - 50 and r.end >= now
            assert r.end < now + 10**6

            # wholly below `oldest` (overwritten): nothing held, NOT_HELD first, first
            assert await central.ask(encode_request_range(0, 100)) == _done(
                RacpStatus.NOT_HELD, 0, 0
            )

            # an empty or inverted range: INVALID first, first
            for first, end in ((500, 500), (900, 800)):
                empty = struct.pack("<BII", RacpOp.REQUEST_RANGE, first, end)
                assert await central.ask(empty) == _done(RacpStatus.INVALID, first, first)

            # ABORT with nothing running, an unknown opcode, a wrong length: INVALID 0, 0
            invalid = _done(RacpStatus.INVALID, 0, 0)
            assert await central.ask(ABORT) == invalid
            assert await central.ask(b"\x7f") == invalid
            assert await central.ask(encode_request_range(1, 2)[:-1]) == invalid
            assert await central.ask(encode_report_extent() + b"\x00") == invalid

            # one backfill at a time: a second request while one runs is BUSY first, first
            patch.backfill_frame_delay_s = 0.05
            start = patch.next_seq - patch.capacity // 2
            before = len(central.backfilled)
            await central.client.write_gatt_char(
                uuids.PATCH_RACP, encode_request_range(start, start + 400), response=True
            )
            await wait_for(lambda: len(central.backfilled) > before, "the first backfill frame")
            busy = await central.ask(encode_request_range(start + 1000, start + 1100))
            assert busy == _done(RacpStatus.BUSY, start + 1000, start + 1000)

            # ABORT while it runs: its RANGE_DONE, ABORTED, with the range sent so far
            aborted = await central.ask(ABORT)
            assert aborted.status == RacpStatus.ABORTED and aborted.first == start
            assert start < aborted.end < start + 400
            sent = [f for f in central.backfilled[before:]]
            assert sent[-1][1] == aborted.end  # exactly what was sent
            assert central.answers.empty()  # one indication answered both commands

            # and the next request is served again
            patch.backfill_frame_delay_s = 0.0
            r = await central.ask(encode_request_range(start, start + 10))
            assert r == _done(RacpStatus.SUCCESS, start, start + 10)
        finally:
            await central.client.disconnect()


async def test_frames_fit_the_mtu_and_contact_is_notified(monkeypatch) -> None:
    """At the default ATT MTU of 23 a frame holds at most 7 samples, live or backfilled
    (patch-gatt.md "Size and MTU"); a loss of contact is notified on Status and flagged in
    live frames until contact is back."""
    from bleak import BleakClient

    import sim.bumble_backend
    from drivers.patch_gatt import decode_status
    from sim.bumble_backend import SimBleWorld
    from sim.patch import SimPatch

    monkeypatch.setattr(sim.bumble_backend, "MTU", 23)  # a central that never exchanges
    world = SimBleWorld()
    async with SimPatch(world, speed=10.0, frame_samples=50) as patch:
        await wait_for(lambda: patch.next_seq > 500, "2 s of recording")
        central = Central(BleakClient(patch.address, backend=world.backend()))
        live, status = [], []
        await central.start()
        try:
            assert patch.frame_limit() == 7
            await central.client.start_notify(
                uuids.PATCH_ECG, lambda _c, d: live.append(decode_ecg_frame(d))
            )
            await central.client.start_notify(
                uuids.PATCH_STATUS, lambda _c, d: status.append(decode_status(d))
            )
            a = patch.next_seq - 400
            r = await central.ask(encode_request_range(a, a + 200))
            assert r == _done(RacpStatus.SUCCESS, a, a + 200)
            assert central.sent() == 200
            assert max(b - a for a, b in central.backfilled) == 7
            await wait_for(lambda: len(live) >= 5, "live frames")
            assert max(f.samples_uv.size for f in live) <= 7
            await patch.set_lead_off(True)
            await wait_for(lambda: status and status[-1].lead_off, "Status: lead off")
            n = len(live)
            await wait_for(lambda: len(live) > n + 2, "live frames while off")
            assert all(f.lead_off for f in live[n + 1 :])
            await patch.set_lead_off(False)
            await wait_for(lambda: not status[-1].lead_off, "Status: contact again")
            await patch.set_battery(41)
            await wait_for(lambda: status[-1].battery_percent == 41, "Status: battery")
        finally:
            await central.client.disconnect()
