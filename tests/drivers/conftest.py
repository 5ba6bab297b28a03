"""Fixtures for the BLE path: a virtual radio, a simulated Polar patch, a running driver.

bleak and bumble are imported inside the fixtures, so the pure decoder and session tests
in this folder collect and run without them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.events import RecordingSink
from tests.support import SPEED, RunningDriver


@pytest.fixture
def world() -> Any:
    from sim.bumble_backend import SimBleWorld

    return SimBleWorld()


@pytest.fixture
async def patch(world: Any) -> AsyncIterator[Any]:
    from sim.polar_patch import SimBlePatch

    async with SimBlePatch(world, speed=SPEED, hr_bpm=72.0) as p:
        yield p


@pytest.fixture
async def driver(world: Any, patch: Any) -> AsyncIterator[RunningDriver]:
    from drivers.ble_driver import ble_driver as polar_driver
    from drivers.polar_session import PolarSettings

    settings = PolarSettings("patch-1", patch.address, silence_timeout_s=1.0, time_scale=SPEED)
    sink = RecordingSink()
    running = RunningDriver(
        polar_driver(settings, sink, backend=world.backend(), reconnect_delay_s=(0.05, 0.2)),
        sink,
    )
    running.start()
    yield running
    await running.stop()
