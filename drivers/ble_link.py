"""Finding and connecting a BLE patch (the I/O edge shared by every BLE driver).

:func:`connect` finds the patch (a scan on BlueZ, which needs the D-Bus path; by
address with an explicit backend such as the simulator) and connects through
bleak-retry-connector's ``establish_connection``. A scan never overlaps a connection
attempt (BlueZ fails both when they do: :class:`~drivers.ble_adapter.BleAdapter`), but
nothing else is serialised: the scan for a patch that is away runs in slices of
``_SCAN_SLICE_S`` with the adapter free in between, and a connection attempt, however long
it waits for an absent patch, holds up only scans, never another patch's connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from drivers.ble_adapter import BleAdapter

__all__ = ["BleSettings", "DeviceNotFound", "connect", "really_cancelled"]


@dataclass(frozen=True, slots=True)
class BleSettings:
    """What every BLE driver needs to know about its device (times in seconds)."""

    id: str
    address: str
    connect_timeout_s: float = 20.0
    silence_timeout_s: float = 5.0
    time_scale: float = 1.0
    """How much faster than real time the device's sample clock runs: 1 for every real
    device; simulations run faster (the plausibility of sample numbers scales with it)."""


class DeviceNotFound(BleakError):
    """The patch was not seen in a scan: away or off (not an adapter problem)."""


_SCAN_SLICE_S = 2.0  # one scan slice: another patch's connection waits at most this long


async def _find_device(
    settings: BleSettings, backend: type[BaseBleakClient] | None, adapter: BleAdapter
) -> BLEDevice:
    """The device, scanned for in slices for up to ``connect_timeout_s``."""
    if backend is not None:
        return BLEDevice(settings.address, settings.id, details=None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.connect_timeout_s
    while (left := deadline - loop.time()) > 0:
        async with adapter.scanning():
            device = await BleakScanner.find_device_by_address(
                settings.address, timeout=min(_SCAN_SLICE_S, left)
            )
        if device is not None:
            return device
    raise DeviceNotFound(f"{settings.address} not seen in a scan")


async def connect(
    settings: BleSettings,
    backend: type[BaseBleakClient] | None,
    adapter: BleAdapter,
    lost: asyncio.Event,
) -> BleakClient:
    """A connected client; ``lost`` is set when the link drops."""
    kwargs: dict[str, Any] = {"timeout": settings.connect_timeout_s}
    if backend is not None:
        kwargs["backend"] = backend
    device = await _find_device(settings, backend, adapter)
    # establish_connection retries internally and gives each attempt its own 20 s
    # (BLEAK_TIMEOUT); connect_timeout_s bounds the whole call.
    async with adapter.connecting(), asyncio.timeout(settings.connect_timeout_s):
        return await establish_connection(
            BleakClientWithServiceCache,
            device,
            settings.id,
            disconnected_callback=lambda _c: lost.set(),
            max_attempts=2,
            **kwargs,
        )


def really_cancelled() -> bool:
    """Whether the current task is being cancelled (not just a cancelled future awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
