"""Connection supervision shared by the BLE patch drivers (the I/O shell).

- :func:`connect`: find the patch (a scan on BlueZ, which needs the D-Bus path;
  by address with an explicit backend such as the simulator) and connect through
  bleak-retry-connector's ``establish_connection``, all under the adapter-wide
  lock so a scan never overlaps another patch's connection attempt.
- :func:`supervise`: run connection sessions forever with capped, jittered
  exponential backoff between failures.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from drivers.backoff import backoff_s
from drivers.ble_adapter import BleAdapter

__all__ = ["DeviceNotFound", "connect", "really_cancelled", "supervise"]


class DeviceNotFound(BleakError):
    """The patch was not seen in a scan: away or off (not an adapter problem)."""


class _PatchConfig(Protocol):
    id: str
    address: str
    connect_timeout_s: float


async def _find_device(config: _PatchConfig, backend: type[BaseBleakClient] | None) -> BLEDevice:
    if backend is not None:
        return BLEDevice(config.address, config.id, details=None)
    device = await BleakScanner.find_device_by_address(
        config.address, timeout=config.connect_timeout_s
    )
    if device is None:
        raise DeviceNotFound(f"{config.address} not seen in a scan")
    return device


async def connect(
    config: _PatchConfig,
    backend: type[BaseBleakClient] | None,
    adapter_lock: asyncio.Lock | BleAdapter,
    lost: asyncio.Event,
) -> BleakClient:
    """A connected client; ``lost`` is set when the link drops."""
    kwargs: dict[str, Any] = {"timeout": config.connect_timeout_s}
    if backend is not None:
        kwargs["backend"] = backend
    # establish_connection retries internally and gives each attempt its own 20 s
    # (BLEAK_TIMEOUT); connect_timeout_s bounds the whole call.
    async with adapter_lock, asyncio.timeout(config.connect_timeout_s):
        return await establish_connection(
            BleakClientWithServiceCache,
            await _find_device(config, backend),
            config.id,
            disconnected_callback=lambda _c: lost.set(),
            max_attempts=2,
            **kwargs,
        )


def really_cancelled() -> bool:
    """Whether the current task is being cancelled (not just a cancelled future awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def supervise(
    session: Callable[[], Awaitable[bool]],
    on_failure: Callable[[Exception, int], None],
    delays: tuple[float, float],
    rng: random.Random,
    errors: tuple[type[Exception], ...] = (),
    adapter: BleAdapter | None = None,
) -> None:
    """Run ``session`` forever; a session that streamed nothing counts as a failure.

    Outcomes go to ``adapter`` (if given), which may reset a stuck adapter; a patch
    not seen in a scan is not held against the adapter.
    """
    failures = 0
    while True:
        absent = False
        try:
            ok = await session()
        except (BleakError, TimeoutError, OSError, *errors) as exc:
            on_failure(exc, failures + 1)
            ok, absent = False, isinstance(exc, DeviceNotFound)
        except asyncio.CancelledError:
            if really_cancelled():
                raise
            # A GATT operation whose future the BLE stack cancelled when the link dropped
            # (seen with bumble): the link is lost, the driver is not being stopped.
            on_failure(BleakError("link lost during a GATT operation"), failures + 1)
            ok = False
        failures = 0 if ok else failures + 1
        if adapter is not None:
            if ok:
                adapter.success()
            elif not absent and await adapter.failure():
                failures = 0  # a fresh adapter: retry soon
        await asyncio.sleep(backoff_s(failures, delays, rng))
