"""What a driver reports besides samples: typed device events, gaps, and the sink.

Drivers are asyncio shells around pure decoders and sessions. They hand what they
learn to a :class:`DeviceSink`: sample blocks (:class:`core.block.SampleBlock`),
:class:`Gap` s, and the small frozen event classes below, one class per kind of fact.
Readers match on the class (``isinstance(e, ButtonPressed)``) and read typed fields;
nothing is looked up by string key.

Every event has ``source`` (the device id), ``time`` (UTC POSIX seconds) and ``seq``
(the device sample number it lines up with, when the driver knows it).

The sink contract
-----------------
Sink methods are synchronous and are called on the event loop (inside BLE
notification callbacks and serial reads). They do the gateway's durable writes
inline: a block goes into the full recording (``pwrite`` into the page cache, no
``fsync``: that runs off the loop), and a finished strip or event is committed to the
SQLite outbox (one ``fsync``, a few ms, a few times per device per minute). That
is deliberate: a strip must be durable before anything says it exists, and a
second writer thread would add a queue that a crash empties. A sink method never
raises into its driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from core.block import SampleBlock

__all__ = [
    "BatteryLevel",
    "BloodPressure",
    "ButtonPressed",
    "Connected",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceRestarted",
    "DeviceSink",
    "Disconnected",
    "DriverError",
    "Gap",
    "HeartRate",
    "LeadOff",
    "RecordingSink",
    "RecordingStarted",
    "RrGapSeen",
    "SignalStrength",
    "StageChanged",
    "StreamPosition",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEvent:
    """A fact reported by a device or its driver (the base of every event class)."""

    kind: ClassVar[str] = "event"
    source: str
    time: float
    seq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonPressed(DeviceEvent):
    """The patient pressed the symptom button (CPT 93012: post-symptom recording)."""

    kind: ClassVar[str] = "button"
    press_id: int | None = None
    device_time: float | None = None
    """The device's own time of the press, UTC POSIX s, when it sends one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartRate(DeviceEvent):
    """A device-measured heart rate (Heart Rate service): bpm, RR intervals in s."""

    kind: ClassVar[str] = "heart_rate"
    bpm: int
    rr_s: tuple[float, ...] = ()
    contact: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryLevel(DeviceEvent):
    """Battery charge, percent; patches with memory add contact and storage use."""

    kind: ClassVar[str] = "battery"
    percent: int
    lead_off: bool | None = None
    storage_percent: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadOff(DeviceEvent):
    """Electrodes that lost skin contact (empty: all in contact again)."""

    kind: ClassVar[str] = "lead_off"
    leads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(DeviceEvent):
    """The link to the device is up (``detail``: address or port; ``mtu`` for BLE)."""

    kind: ClassVar[str] = "connected"
    detail: str = ""
    mtu: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalStrength(DeviceEvent):
    """The device's received signal strength, ``dbm`` (dBm), from the advertisement heard in
    the scan just before a connection: BlueZ reports no RSSI for a connected device, so this
    is the link's strength when it was made (about -90 dBm and below: expect drops)."""

    kind: ClassVar[str] = "rssi"
    dbm: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected(DeviceEvent):
    """The link to the device is down, and why."""

    kind: ClassVar[str] = "disconnected"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageChanged(DeviceEvent):
    """A stress test's next stage began (the previous one ended at ``seq``)."""

    kind: ClassVar[str] = "stage"
    stage: int
    phase: str = ""
    name: str = ""
    speed_kmh: float | None = None
    grade_pct: float | None = None
    watts: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BloodPressure(DeviceEvent):
    """A blood pressure measured by the cart, mmHg."""

    kind: ClassVar[str] = "blood_pressure"
    systolic_mmhg: int
    diastolic_mmhg: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo(DeviceEvent):
    """What the device says it is (any field may be empty)."""

    kind: ClassVar[str] = "device_info"
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    fs: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverError(DeviceEvent):
    """A counted problem: a malformed frame, a refused command, a link failure.

    ``what`` names the kind of problem (``link``, ``frame``, ``pmd_frame``...), ``count``
    how many of that kind so far.
    """

    kind: ClassVar[str] = "error"
    what: str
    detail: str = ""
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(DeviceEvent):
    """A device with memory: its recording holds samples ``[first_seq, end_seq)``."""

    kind: ClassVar[str] = "recording"
    first_seq: int
    end_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RrGapSeen(DeviceEvent):
    """Heart Rate service beats never heard (the link was down), UTC POSIX s."""

    kind: ClassVar[str] = "rr_gap"
    start: float
    end: float
    beats_missing: int

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRestarted(DeviceEvent):
    """The device started a new stream (its sample counter went back, a new HELLO, a new
    session): the previous stream ended at ``previous_end_seq``."""

    kind: ClassVar[str] = "restarted"
    previous_end_seq: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    """Samples ``[first_seq, end_seq)`` from ``source`` that did not arrive.

    ``start``/``end`` are UTC POSIX seconds of the missing span. ``final`` is
    True once the driver knows they will never be backfilled.
    """

    source: str
    first_seq: int
    end_seq: int
    start: float
    end: float
    reason: str = ""
    final: bool = True

    @property
    def n_samples(self) -> int:
        return self.end_seq - self.first_seq


class DeviceSink(Protocol):
    """Where a driver delivers what it receives (see the module docstring)."""

    def on_block(self, block: SampleBlock) -> None: ...

    def on_event(self, event: DeviceEvent) -> None: ...

    def on_gap(self, gap: Gap) -> None: ...


@dataclass
class RecordingSink:
    """A sink that keeps everything in lists (tests, tools)."""

    blocks: list[SampleBlock] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def on_block(self, block: SampleBlock) -> None:
        self.blocks.append(block)

    def on_event(self, event: DeviceEvent) -> None:
        self.events.append(event)

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def of(self, cls: type[DeviceEvent]) -> list:
        """The events of one class, in arrival order."""
        return [e for e in self.events if isinstance(e, cls)]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a device's stream stood: the next stream sample number expected, its UTC time
    (POSIX s), the offset from the device's own numbering (stream = device + offset) and
    the sample rate (Hz). Kept across gateway restarts so the hole between is reported and
    nothing is numbered twice."""

    next_seq: int
    utc: float
    offset: int = 0
    fs: float = 0.0
    holes: tuple[tuple[int, int], ...] = ()
    """Stream ranges before ``next_seq`` still missing (a device with memory backfills them)."""
