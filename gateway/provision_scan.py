"""Finding devices for provisioning and the doctor: a BLE scan and the serial carts.

BLE: bleak's :class:`~bleak.BleakScanner` (``backend=`` for the simulated radio in tests)
for a few seconds; each advertiser becomes a :class:`SeenPatch` with its name, address,
RSSI (dBm), the battery when it advertises one (Battery Service data, 0x180F, one byte %),
and the profile its advertised service UUIDs say: ``patch`` (our patch service, memory and
backfill), ``polar_pmd`` (Polar Measurement Data) or ``heart_rate`` (the standard Heart Rate
service only: not an ECG stream the gateway records, listed so the engineer sees it).

Serial: pyserial's ``list_ports`` with the USB vendor/product id, serial number and the
stable name the udev rule gives a cart (``/dev/ecg-cart-<serial>``, udev/99-ecg-cart.rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drivers import uuids

__all__ = [
    "CART_USB_IDS",
    "SeenCart",
    "SeenPatch",
    "classify",
    "find_carts",
    "scan_patches",
    "stable_cart_name",
]

CART_USB_IDS = {(0x0403, 0x6001), (0x0403, 0x6015), (0x10C4, 0xEA60), (0x067B, 0x2303)}
"""USB-serial bridges our carts ship with (FTDI FT232R / FT231X, CP210x, PL2303); the udev
rule names exactly these. Other ports are listed too, without a stable name."""

_PROFILE_BY_SERVICE = (
    (uuids.PATCH_SERVICE, "patch"),
    (uuids.PMD_SERVICE, "polar_pmd"),
    (uuids.HEART_RATE_SERVICE, "heart_rate"),
)


@dataclass(frozen=True)
class SeenPatch:
    """One BLE advertiser. ``rssi_dbm``: signal strength; ``battery_pct`` if advertised."""

    name: str
    address: str
    rssi_dbm: int | None
    profile: str | None
    battery_pct: int | None

    @property
    def kind(self) -> str | None:
        """The configuration's device kind for this profile (None: not recordable)."""
        return {"patch": "patch", "polar_pmd": "polar_pmd"}.get(self.profile or "")


@dataclass(frozen=True)
class SeenCart:
    """One serial port: its device, USB ids and serial number, and the stable udev name."""

    device: str
    vid: int | None
    pid: int | None
    serial: str | None
    description: str
    stable: str | None

    @property
    def known_bridge(self) -> bool:
        return (self.vid, self.pid) in CART_USB_IDS


def classify(service_uuids: list[str], name: str = "") -> str | None:
    """The profile an advertisement's service UUIDs say (our patch first), None if none."""
    found = {u.lower() for u in service_uuids}
    for uuid, profile in _PROFILE_BY_SERVICE:
        if uuid in found:
            if profile == "heart_rate" and name.lower().startswith("polar h10"):
                return "polar_pmd"  # H10s often advertise HR only; PMD is in their GATT
            return profile
    if name.lower().startswith("polar h10"):
        return "polar_pmd"
    return None


def battery_from_service_data(service_data: dict[str, bytes]) -> int | None:
    """Battery % from Battery Service data (0x180F), if advertised and plausible."""
    data = service_data.get(uuids.BATTERY_SERVICE)
    if data and len(data) >= 1 and data[0] <= 100:
        return int(data[0])
    return None


async def scan_patches(seconds: float, *, backend: Any = None,
                       adapter: str | None = None) -> list[SeenPatch]:
    """Advertisers heard within ``seconds``, strongest first (profile ones before others)."""
    from bleak import BleakScanner

    kwargs: dict[str, Any] = {"backend": backend} if backend is not None else {}
    if adapter and backend is None:
        kwargs["bluez"] = {"adapter": adapter}
    found = await BleakScanner.discover(timeout=seconds, return_adv=True, **kwargs)
    out = []
    for device, adv in found.values():
        name = adv.local_name or device.name or ""
        out.append(SeenPatch(name, device.address, adv.rssi, classify(adv.service_uuids, name),
                             battery_from_service_data(adv.service_data)))
    return sorted(out, key=lambda p: (p.profile is None, -(p.rssi_dbm or -999), p.address))


def stable_cart_name(serial: str | None) -> str | None:
    """``/dev/ecg-cart-<serial>`` as the udev rule makes it (unsafe characters → ``_``)."""
    if not serial:
        return None
    return "/dev/ecg-cart-" + re.sub(r"[^A-Za-z0-9_.-]", "_", serial)


def find_carts(ports: list[Any] | None = None) -> list[SeenCart]:
    """Serial ports (pyserial's ``list_ports.comports()`` unless given), known bridges first."""
    if ports is None:
        from serial.tools import list_ports

        ports = list(list_ports.comports())
    out = []
    for p in ports:
        vid, pid = getattr(p, "vid", None), getattr(p, "pid", None)
        serial = getattr(p, "serial_number", None)
        known = (vid, pid) in CART_USB_IDS
        out.append(SeenCart(p.device, vid, pid, serial, getattr(p, "description", "") or "",
                            stable_cart_name(serial) if known else None))
    return sorted(out, key=lambda c: (not c.known_bridge, c.device))

