"""Pure decoders (and encoders, for the simulator) of small GATT values.

* Heart Rate Measurement (0x2A37, Bluetooth SIG Heart Rate Service).
* Battery Level (0x2A19).
* Symptom-button press of the ecg-gateway patch event service
  (:data:`drivers.uuids.PATCH_BUTTON`, a vendor characteristic, notify).
  Value, little endian, 13 bytes::

      u8   version       = 1
      u32  press counter (increments per press, wraps at 2**32)
      u64  device time of the press, ns since 2000-01-01T00:00:00Z
           (the Polar PMD epoch, so presses line up with ECG timestamps)

  Longer values are accepted (later versions may append fields); shorter
  ones, or version 0, are a decode error.

Every decoder takes bytes and returns a small frozen dataclass, or raises
:class:`GattDecodeError`. No I/O here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from core.events import RrGapSeen
from core.units import EPOCH_2000

__all__ = [
    "BUTTON_VERSION",
    "BatteryLevel",
    "ButtonPress",
    "GattDecodeError",
    "HeartRateMeasurement",
    "RrTracker",
    "decode_battery_level",
    "decode_button_press",
    "decode_heart_rate_measurement",
    "encode_battery_level",
    "encode_button_press",
    "encode_heart_rate_measurement",
]

BUTTON_VERSION = 1

_U16 = struct.Struct("<H")
_BUTTON = struct.Struct("<BIQ")

# Heart Rate Measurement flag bits (GATT Specification Supplement, 3.116)
_HR_U16 = 0x01
_HR_CONTACT_DETECTED = 0x02
_HR_CONTACT_SUPPORTED = 0x04
_HR_ENERGY = 0x08
_HR_RR = 0x10


class GattDecodeError(ValueError):
    """A GATT value that does not follow its format."""


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One Heart Rate Measurement notification.

    Attributes
    ----------
    bpm
        Heart rate, beats per minute.
    contact
        Skin contact detected; ``None`` when the sensor does not report contact.
    energy_kj
        Energy expended since the last reset, kJ; ``None`` when absent.
    rr_1024
        RR intervals in units of 1/1024 s, oldest first.
    """

    bpm: int
    contact: bool | None = None
    energy_kj: int | None = None
    rr_1024: tuple[int, ...] = ()

    @property
    def rr_s(self) -> tuple[float, ...]:
        """RR intervals in seconds."""
        return tuple(r / 1024.0 for r in self.rr_1024)


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """Battery charge, percent (0..100)."""

    percent: int


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """A symptom-button press reported by the patch.

    Attributes
    ----------
    press_id
        The patch's press counter (u32); a jump reveals missed presses.
    device_time_ns
        Device time of the press, ns since 2000-01-01T00:00:00Z.
    version
        Format version of the value.
    """

    press_id: int
    device_time_ns: int
    version: int = BUTTON_VERSION

    @property
    def device_time_posix(self) -> float:
        """Device time of the press as POSIX seconds (device clock, not host clock)."""
        return EPOCH_2000 + self.device_time_ns / 1e9


def decode_heart_rate_measurement(data: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    """Decode a Heart Rate Measurement (0x2A37) value.

    ``bytes.fromhex("10485503")`` gives 72 bpm and one RR of 853/1024 s.
    """
    buf = bytes(data)
    if len(buf) < 2:
        raise GattDecodeError(f"heart rate measurement too short ({len(buf)} bytes)")
    flags = buf[0]
    pos = 1
    if flags & _HR_U16:
        if len(buf) < pos + 2:
            raise GattDecodeError("heart rate measurement: u16 heart rate truncated")
        (bpm,) = _U16.unpack_from(buf, pos)
        pos += 2
    else:
        bpm = buf[pos]
        pos += 1
    contact = bool(flags & _HR_CONTACT_DETECTED) if flags & _HR_CONTACT_SUPPORTED else None
    energy = None
    if flags & _HR_ENERGY:
        if len(buf) < pos + 2:
            raise GattDecodeError("heart rate measurement: energy field truncated")
        (energy,) = _U16.unpack_from(buf, pos)
        pos += 2
    rr: tuple[int, ...] = ()
    rest = buf[pos:]
    if flags & _HR_RR:
        if len(rest) % 2:
            raise GattDecodeError(f"heart rate measurement: odd RR field length {len(rest)}")
        rr = tuple(v for (v,) in _U16.iter_unpack(rest))
    elif rest:
        raise GattDecodeError(f"heart rate measurement: {len(rest)} unexpected trailing bytes")
    return HeartRateMeasurement(bpm=bpm, contact=contact, energy_kj=energy, rr_1024=rr)


def encode_heart_rate_measurement(m: HeartRateMeasurement) -> bytes:
    """Encode a Heart Rate Measurement value (u8 rate when it fits)."""
    flags = 0
    body = b""
    if m.bpm > 0xFF:
        flags |= _HR_U16
        body += _U16.pack(m.bpm)
    else:
        body += bytes([m.bpm])
    if m.contact is not None:
        flags |= _HR_CONTACT_SUPPORTED | (_HR_CONTACT_DETECTED if m.contact else 0)
    if m.energy_kj is not None:
        flags |= _HR_ENERGY
        body += _U16.pack(m.energy_kj)
    if m.rr_1024:
        flags |= _HR_RR
        body += b"".join(_U16.pack(r) for r in m.rr_1024)
    return bytes([flags]) + body


def decode_battery_level(data: bytes | bytearray | memoryview) -> BatteryLevel:
    """Decode a Battery Level (0x2A19) value: one byte, percent 0..100."""
    buf = bytes(data)
    if len(buf) != 1:
        raise GattDecodeError(f"battery level must be 1 byte, got {len(buf)}")
    if buf[0] > 100:
        raise GattDecodeError(f"battery level {buf[0]} % out of range")
    return BatteryLevel(buf[0])


def encode_battery_level(percent: int) -> bytes:
    """Encode a Battery Level value."""
    if not 0 <= percent <= 100:
        raise ValueError(f"battery level {percent} % out of range")
    return bytes([percent])


def decode_button_press(data: bytes | bytearray | memoryview) -> ButtonPress:
    """Decode a patch button value (format in the module docstring)."""
    buf = bytes(data)
    if len(buf) < _BUTTON.size:
        raise GattDecodeError(f"button value too short ({len(buf)} < {_BUTTON.size} bytes)")
    version, press_id, t_ns = _BUTTON.unpack_from(buf)
    if version < 1:
        raise GattDecodeError(f"button value version {version} unknown")
    return ButtonPress(press_id=press_id, device_time_ns=t_ns, version=version)


def encode_button_press(press: ButtonPress) -> bytes:
    """Encode a patch button value (version 1)."""
    return _BUTTON.pack(BUTTON_VERSION, press.press_id & 0xFFFFFFFF, press.device_time_ns)


class RrTracker:
    """Beat times from HRS RR intervals, and the gaps where beats were never heard (pure).

    Within a connection the beats form a chain: their times relative to each other are
    exact sums of RR intervals. Where the chain sits in time is bounded by every
    notification: its last beat happened before it arrived. The chain's offset is the
    lowest (arrival - chained time) seen, which tightens with each notification.

    A gap between two chains is therefore held until the chain after it has been
    anchored by ``settle`` notifications (or its link drops), then returned once.
    """

    def __init__(self, source: str = "", settle: int = 15) -> None:
        self.source = source
        self.settle = settle
        self._arrival = 0.0  # UTC s of the latest notification
        self._rel = 0.0  # chained time of the current chain's last beat, from its first (s)
        self._offset: float | None = None  # absolute time of the chain's first beat (s)
        self._notes = 0  # notifications in the current chain
        self._prev_end: float | None = None  # last beat of the previous chain (s)
        self._pending = False  # a gap between the previous chain and this one is unreported
        self._resync = True
        self._rr_before: list[float] = []  # last intervals of the previous chain (s)
        self._rr_recent: list[float] = []
        self.beats = 0
        self.gaps: list[RrGapSeen] = []

    def link_lost(self) -> RrGapSeen | None:
        """The connection dropped: settle any gap still held, and start a new chain next."""
        gap = self._settle()
        if self._offset is not None and not self._resync:
            self._prev_end = self._offset + self._rel
            self._rr_before = self._rr_recent[-16:]
        self._resync = True
        return gap

    def feed(self, rr_s: tuple[float, ...] | list[float], arrival: float) -> RrGapSeen | None:
        """Take one measurement's RR intervals (s) arriving at ``arrival`` (s); return a gap
        once it is settled."""
        if not rr_s:
            return None
        self._arrival = arrival
        if self._resync:
            self._rel, self._offset, self._notes = 0.0, None, 0
            self._rr_recent = []
            self._pending = self._prev_end is not None
            self._resync = False
        self._rel += float(sum(rr_s))
        bound = arrival - self._rel
        self._offset = bound if self._offset is None else min(self._offset, bound)
        self._notes += 1
        self.beats += len(rr_s)
        self._rr_recent = (self._rr_recent + list(rr_s))[-16:]
        return self._settle() if self._notes >= self.settle else None

    def _settle(self) -> RrGapSeen | None:
        if not self._pending or self._offset is None or self._prev_end is None:
            return None
        self._pending = False
        rr = self._rr_before + self._rr_recent
        span = self._offset - self._prev_end
        missing = round(span / (sum(rr) / len(rr))) if span > 0 else 0
        if missing < 1:
            return None
        gap = RrGapSeen(
            source=self.source,
            time=self._arrival,
            start=self._prev_end,
            end=self._offset,
            beats_missing=missing,
        )
        self.gaps.append(gap)
        return gap
