"""What a device driver reports besides samples.

Drivers are asyncio shells around pure decoders. They hand everything they
learn to a :class:`DeviceSink`: sample blocks (see :class:`dsp.block.SampleBlock`)
and the small typed events below. A sink's methods are synchronous and never
block: the gateway's pipeline behind them is pure code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dsp.block import SampleBlock

__all__ = ["DeviceEvent", "DeviceSink", "EventKind", "Gap", "RecordingSink"]

EventKind = Literal[
    "button",  # patient pressed the symptom button (data: press_id, device_time)
    "heart_rate",  # device-reported HR (data: bpm, rr_s list, contact)
    "battery",  # data: percent
    "lead_off",  # data: leads (list[str]), off (bool)
    "connected",  # link established (data: detail)
    "disconnected",  # link lost (data: reason)
    "stage",  # stress test stage change (data: stage, name, protocol, speed_kmh, grade_pct, watts)
    "blood_pressure",  # data: systolic_mmhg, diastolic_mmhg
    "device_info",  # data: serial, firmware, model...
    "error",  # counted decoder/link error (data: what, count)
    "recording",  # a device with memory: its recording starts at seq (data: first_seq, end_seq)
    "rr_gap",  # Heart Rate service beats never heard (data: start, end, duration_s, beats_missing)
]


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A fact reported by a device or its driver.

    ``time`` is UTC POSIX seconds; ``seq`` is the sample sequence number the
    event lines up with, when the driver knows it.
    """

    source: str
    kind: EventKind
    time: float
    seq: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


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
    """Where a driver delivers what it receives. Methods must not block."""

    def on_block(self, block: SampleBlock) -> None: ...

    def on_event(self, event: DeviceEvent) -> None: ...

    def on_gap(self, gap: Gap) -> None: ...


class RecordingSink:
    """A sink that keeps everything in lists (tests, tools)."""

    def __init__(self) -> None:
        self.blocks: list[SampleBlock] = []
        self.events: list[DeviceEvent] = []
        self.gaps: list[Gap] = []

    def on_block(self, block: SampleBlock) -> None:
        self.blocks.append(block)

    def on_event(self, event: DeviceEvent) -> None:
        self.events.append(event)

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
