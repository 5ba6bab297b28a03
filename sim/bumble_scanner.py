"""A bleak *scanner* backend on the bumble virtual radio, and advertisements for the sims.

:func:`scanner_backend` returns a :class:`~bleak.backends.scanner.BaseBleakScanner` subclass
bound to a :class:`~sim.bumble_backend.SimBleWorld`, to pass as ``BleakScanner(backend=...)``
(``ecg-gateway provision`` and ``doctor`` take it in tests and the benchmark). Its scanner is
a bumble device on its own controller on the world's link; every advertising report becomes
a bleak ``AdvertisementData`` (name, service UUIDs, service data, RSSI).

The simulated patches advertise only bumble's default name; :func:`advertise` gives a sim
device what a real one advertises: its name, its service UUIDs and, optionally, its battery
as Battery Service data. Call it before the device starts advertising.
"""

from __future__ import annotations

import struct
from typing import Any

from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bumble.core import UUID, AdvertisingData

from sim.bumble_backend import SimBleWorld

__all__ = ["advertise", "scanner_backend"]


def advertise(device: Any, name: str, service_uuids: list[str], battery_pct: int | None = None
              ) -> None:
    """Set a bumble device's advertising data (name, 16/128-bit service UUIDs, battery)."""
    sig = "-0000-1000-8000-00805f9b34fb"
    short = [int(u[4:8], 16) for u in service_uuids if u.endswith(sig)]
    long_ = [UUID(u) for u in service_uuids if not u.endswith(sig)]
    items: list[tuple[int, bytes]] = [
        (AdvertisingData.FLAGS, bytes([0x06])),
        (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
    ]
    if short:
        items.append((AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                      b"".join(struct.pack("<H", u) for u in short)))
    if long_:
        items.append((AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                      b"".join(bytes(u) for u in long_)))
    if battery_pct is not None:
        items.append((AdvertisingData.SERVICE_DATA_16_BIT_UUID,
                      struct.pack("<HB", 0x180F, battery_pct)))
    device.advertising_data = bytes(AdvertisingData(items))


def _uuid_text(u: Any) -> str:
    text = u.to_hex_str("-").lower()
    if len(text) == 4:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    return text


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend on a bumble central. Use :func:`scanner_backend`."""

    world: SimBleWorld

    def __init__(self, detection_callback: Any, service_uuids: Any, scanning_mode: Any = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._device: Any = None

    async def start(self) -> None:
        self.seen_devices = {}
        world = self.world
        self._device = world.new_device("gateway-scanner", world.new_address(0xC8))
        self._device.on("advertisement", self._on_advertisement)
        await self._device.power_on()
        await self._device.start_scanning(filter_duplicates=False)

    async def stop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            await device.stop_scanning()
            self.world.remove_device(device)

    def _on_advertisement(self, adv: Any) -> None:
        data = adv.data
        uuids: list[str] = []
        for kind in (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                     AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS):
            for u in data.get(kind) or []:
                uuids.append(_uuid_text(u))
        service_data = {}
        for u, value in data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID) or []:
            service_data[_uuid_text(u)] = bytes(value)
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        name = name if isinstance(name, str) else None
        if not self.is_allowed_uuid(uuids):
            return
        address = str(adv.address).split("/")[0]
        ad = AdvertisementData(local_name=name, manufacturer_data={}, service_data=service_data,
                               service_uuids=uuids, tx_power=None, rssi=adv.rssi,
                               platform_data=(adv,))
        device = self.create_or_update_device(address, address, name, adv, ad)
        self.call_detection_callbacks(device, ad)


def scanner_backend(world: SimBleWorld) -> type[BumbleBleakScanner]:
    """A bleak scanner backend class whose scans hear this world's advertisers."""
    return type("BoundBumbleBleakScanner", (BumbleBleakScanner,), {"world": world})
