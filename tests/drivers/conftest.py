"""Fixtures for the BLE path: a virtual radio, a simulated patch, a running driver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from drivers.ble_patch import PolarPmdDriver
from drivers.events import RecordingSink
from drivers.sim.ble_patch import SimBlePatch
from drivers.sim.bumble_backend import SimBleWorld
from gateway.config import PolarPmdDevice

SPEED = 10.0
"""Simulated device clock speed: 1 s of ECG (130 samples) every 0.1 s."""


async def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = 15.0) -> None:
    """Poll ``predicate`` until true; fail (not a timing assertion: a hang guard) after limit."""
    try:
        async with asyncio.timeout(limit_s):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"gave up waiting for: {what}")


@pytest.fixture
def world() -> SimBleWorld:
    return SimBleWorld()


@pytest.fixture
async def patch(world: SimBleWorld) -> AsyncIterator[SimBlePatch]:
    async with SimBlePatch(world, speed=SPEED, hr_bpm=72.0) as p:
        yield p


class RunningDriver:
    """A driver task plus what it delivered."""

    def __init__(self, driver: PolarPmdDriver, sink: RecordingSink) -> None:
        self.driver = driver
        self.sink = sink
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.driver.run(), name="driver")

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def events(self, kind: str) -> list:
        return [e for e in self.sink.events if e.kind == kind]

    @property
    def samples(self) -> int:
        return sum(b.n for b in self.sink.blocks)


@pytest.fixture
async def driver(world: SimBleWorld, patch: SimBlePatch) -> AsyncIterator[RunningDriver]:
    config = PolarPmdDevice(
        kind="polar_pmd", id="patch-1", address=patch.address, silence_timeout_s=1.0
    )
    sink = RecordingSink()
    running = RunningDriver(
        PolarPmdDriver(config, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2)),
        sink,
    )
    running.start()
    yield running
    await running.stop()
