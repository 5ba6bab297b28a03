"""A stop ends a BLE driver promptly, whenever it comes, and leaves the patch free.

The gateway cancels each device's task to stop it and waits a bounded time; a driver
that lives on keeps its link (the patch never advertises again) and, in the test suite,
hangs the event loop's teardown. So: cancelled at any moment (connecting, in a GATT
operation, streaming, in a backoff, as a connect timeout expires) the driver ends as
cancelled within a few seconds, and the patch's link ends with it. A stop that the BLE
stack swallows on its way (Python 3.11's ``asyncio.wait_for``, inside bumble and
bleak, returns a result that came together with the cancellation) is a stop all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from core.events import RecordingSink
from drivers.ble_driver import BleDriver
from drivers.patch_session import PatchSession, PatchSettings
from sim.bumble_backend import SimBleWorld
from sim.patch import SimPatch
from tests.support import SPEED, wait_for

pytestmark = pytest.mark.timeout(90)

_STOP_S = 5.0  # "promptly": the driver's own close waits are 2 s each


def _driver(patch: SimPatch, backend: Any, connect_timeout_s: float = 20.0) -> BleDriver:
    settings = PatchSettings(
        "p1",
        patch.address,
        silence_timeout_s=1.0,
        connect_timeout_s=connect_timeout_s,
        time_scale=SPEED,
    )
    return BleDriver(
        settings, PatchSession(settings), RecordingSink(), backend=backend,
        reconnect_delay_s=(0.02, 0.1),
    )  # fmt: skip


async def _stopped(task: asyncio.Task[None], what: str) -> None:
    """Cancel ``task``; it must end, as cancelled, within ``_STOP_S``."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=_STOP_S)
    assert done, f"{what}: the driver still runs {_STOP_S:g} s after the stop"
    assert task.cancelled(), f"{what}: the driver ended without the stop: {task!r}"


def _swallowing(world: SimBleWorld) -> Any:
    """The virtual radio's bleak backend, with a connect that swallows a cancellation
    coming while it waits and connects all the same (as Python 3.11's ``wait_for`` does
    when the cancellation comes together with the answer it waited for)."""

    class Swallowing(world.backend()):  # type: ignore[misc]
        waiting = asyncio.Event()

        async def connect(self, pair: bool, **kwargs: Any) -> None:
            Swallowing.waiting.set()
            with contextlib.suppress(asyncio.CancelledError):  # (the point of it)
                await asyncio.sleep(0.2)
            await super().connect(pair, **kwargs)

    return Swallowing


async def test_a_stop_the_ble_stack_swallows_while_connecting_is_still_a_stop() -> None:
    world = SimBleWorld()
    backend = _swallowing(world)
    async with SimPatch(world, speed=SPEED) as patch:
        drv = _driver(patch, backend)
        task = asyncio.create_task(drv.run())
        await wait_for(backend.waiting.is_set, "connecting")
        await _stopped(task, "stopped while connecting")
        await wait_for(lambda: not patch.connected, "the link closed", 5)
        assert drv.stats()["connects"] == 0  # no session began on that link


@pytest.mark.parametrize("away", [False, True], ids=["present", "away"])
async def test_a_driver_stopped_at_any_moment_ends_and_frees_the_patch(away: bool) -> None:
    """Stops at moments spread over the first 0.3 s of a driver's life: connecting,
    discovering, reading the Device Time, asking the extent, streaming; with the patch
    away, in connect attempts timing out after 0.05 s and in the backoffs between them."""
    world = SimBleWorld()
    async with SimPatch(world, speed=SPEED) as patch:
        if away:
            await patch.go_away(3600.0)
        for i in range(16):
            delay = i * 0.02
            drv = _driver(patch, world.backend(), connect_timeout_s=0.05 if away else 20.0)
            task = asyncio.create_task(drv.run())
            await asyncio.sleep(delay)
            await _stopped(task, f"stopped after {delay:.2f} s")
            await wait_for(lambda: not patch.connected, f"the link closed ({delay:.2f} s)", 5)


async def test_a_driver_stopped_as_its_link_comes_up_frees_the_patch() -> None:
    """Stops 0 to 40 loop turns after the patch accepted the link, while the central still
    sets it up (MTU, discovery): the patch's end of the link ends too, so it advertises
    again and its own disconnect never waits for ever."""
    world = SimBleWorld()
    async with SimPatch(world, speed=SPEED) as patch:
        for turns in range(0, 40, 3):
            task = asyncio.create_task(_driver(patch, world.backend()).run())
            async with asyncio.timeout(_STOP_S):
                while not patch.connected:
                    await asyncio.sleep(0)
            for _ in range(turns):
                await asyncio.sleep(0)
            await _stopped(task, f"stopped {turns} turns into the link")
            await wait_for(lambda: not patch.connected, f"the link closed ({turns} turns)", 5)
