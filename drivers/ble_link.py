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
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from drivers.ble_adapter import BleAdapter

__all__ = ["BleSettings", "DeviceNotFound", "connect"]


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


class _Sought:
    """The scan filter for one address; keeps the RSSI of the advertisement that matched."""

    def __init__(self, address: str) -> None:
        self.address = address.upper()
        self.rssi_dbm: int | None = None

    def __call__(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        if device.address.upper() != self.address:
            return False
        self.rssi_dbm = adv.rssi
        return True


async def _find_device(
    settings: BleSettings,
    backend: type[BaseBleakClient] | None,
    adapter: BleAdapter,
    scanner: type[BaseBleakScanner] | None = None,
) -> tuple[BLEDevice, int | None]:
    """The device and the RSSI (dBm) it advertised with, scanned for in slices for up to
    ``connect_timeout_s``. A client ``backend`` without a ``scanner`` (a simulator) is
    connected by address without a scan (RSSI unknown)."""
    if backend is not None and scanner is None:
        return BLEDevice(settings.address, settings.id, details=None), None
    sought = _Sought(settings.address)
    kwargs: dict[str, Any] = {} if scanner is None else {"backend": scanner}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.connect_timeout_s
    while (left := deadline - loop.time()) > 0:
        async with adapter.scanning():
            device = await BleakScanner.find_device_by_filter(
                sought, timeout=min(_SCAN_SLICE_S, left), **kwargs
            )
        if device is not None:
            if backend is not None:  # the simulator's client connects by address
                device = BLEDevice(settings.address, settings.id, details=None)
            return device, sought.rssi_dbm
    raise DeviceNotFound(f"{settings.address} not seen in a scan")


async def connect(
    settings: BleSettings,
    backend: type[BaseBleakClient] | None,
    adapter: BleAdapter,
    lost: asyncio.Event,
    scanner: type[BaseBleakScanner] | None = None,
) -> tuple[BleakClient, int | None]:
    """A connected client and the RSSI (dBm) its advertisement had (None: unknown);
    ``lost`` is set when the link drops. ``scanner``: a bleak scanner backend (tests)."""
    kwargs: dict[str, Any] = {"timeout": settings.connect_timeout_s}
    if backend is not None:
        kwargs["backend"] = backend
    device, rssi = await _find_device(settings, backend, adapter, scanner)
    # establish_connection retries internally and gives each attempt its own 20 s
    # (BLEAK_TIMEOUT); connect_timeout_s bounds the whole call.
    async with adapter.connecting(), asyncio.timeout(settings.connect_timeout_s):
        client = await establish_connection(
            BleakClientWithServiceCache,
            device,
            settings.id,
            disconnected_callback=lambda _c: lost.set(),
            max_attempts=2,
            **kwargs,
        )
    return client, rssi


