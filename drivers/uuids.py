"""GATT UUIDs of the BLE chest patch, in one place.

Standard Bluetooth SIG services use their 16-bit numbers expanded on the SIG
base UUID. Polar PMD UUIDs come from Polar's public BLE SDK documentation.

The "ecg-gateway patch event" service is our own vendor service (random
128-bit base ``c236xxxx-8ad6-4484-a212-d9b0c62eba76``; the 16-bit field
``xxxx`` numbers its members). Issue #4 extends it into the full patch profile
(backfill); new characteristics take the next free numbers here.

All strings are lower case, the form bleak reports.
"""

from __future__ import annotations

__all__ = [
    "BATTERY_LEVEL",
    "BATTERY_SERVICE",
    "DEVICE_INFORMATION_SERVICE",
    "FIRMWARE_REVISION",
    "HEART_RATE_MEASUREMENT",
    "HEART_RATE_SERVICE",
    "MANUFACTURER_NAME",
    "MODEL_NUMBER",
    "PATCH_BACKFILL",
    "PATCH_BUTTON",
    "PATCH_ECG",
    "PATCH_EVENT_SERVICE",
    "PATCH_RACP",
    "PATCH_SERVICE",
    "PATCH_STATUS",
    "PATCH_SYMPTOM",
    "PATCH_TIME",
    "PMD_CONTROL_POINT",
    "PMD_DATA",
    "PMD_SERVICE",
    "SERIAL_NUMBER",
    "sig_uuid",
]


def sig_uuid(short: int) -> str:
    """The 128-bit form of a 16-bit Bluetooth SIG UUID, e.g. ``0x180D``."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


# Bluetooth SIG (Assigned Numbers)
HEART_RATE_SERVICE = sig_uuid(0x180D)
HEART_RATE_MEASUREMENT = sig_uuid(0x2A37)
BATTERY_SERVICE = sig_uuid(0x180F)
BATTERY_LEVEL = sig_uuid(0x2A19)
DEVICE_INFORMATION_SERVICE = sig_uuid(0x180A)
MODEL_NUMBER = sig_uuid(0x2A24)
SERIAL_NUMBER = sig_uuid(0x2A25)
FIRMWARE_REVISION = sig_uuid(0x2A26)
MANUFACTURER_NAME = sig_uuid(0x2A29)

# Polar Measurement Data (PMD) service
PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_POINT = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"  # read, write, indicate
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"  # notify

# ecg-gateway patch event service (vendor, ours)
_PATCH_BASE = "c236{:04x}-8ad6-4484-a212-d9b0c62eba76"
PATCH_EVENT_SERVICE = _PATCH_BASE.format(0x0001)
PATCH_BUTTON = _PATCH_BASE.format(0x0002)  # notify, see gatt_standard.ButtonPress

# ecg-gateway patch profile with backfill (docs/protocols/patch-gatt.md)
PATCH_SERVICE = _PATCH_BASE.format(0x0010)
PATCH_ECG = _PATCH_BASE.format(0x0011)  # notify: live ECG frames
PATCH_BACKFILL = _PATCH_BASE.format(0x0012)  # notify: ECG frames re-sent from memory
PATCH_RACP = _PATCH_BASE.format(0x0013)  # write + indicate: record access control point
PATCH_TIME = _PATCH_BASE.format(0x0014)  # read, write: device time at a sample number
PATCH_STATUS = _PATCH_BASE.format(0x0015)  # read, notify: battery, contact, storage
PATCH_SYMPTOM = _PATCH_BASE.format(0x0016)  # notify: symptom button with its sample number
