"""Decoded cart messages → sample blocks, gaps and typed events (pure, no I/O).

Sample sequence numbers are the cart's own sample counter. Times come from the first
ECG frame's arrival (``now``, UTC POSIX seconds, taken as the time of its last sample)
and then advance by 1/fs per sample, so block times stay monotonic and exact; the cart
restarting its counter re-anchors them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.block import SampleBlock
from core.counters import Counters
from core.events import (
    BloodPressure,
    DeviceEvent,
    DeviceInfo,
    DeviceRestarted,
    Gap,
    LeadOff,
    StageChanged,
)
from core.units import uv_to_mv
from drivers.cart_protocol import (
    LEADS_12,
    BloodPressureMsg,
    CartMessage,
    EcgMsg,
    HelloMsg,
    LeadOffMsg,
    StageMsg,
)

__all__ = ["CartStream"]

CartOutput = SampleBlock | Gap | DeviceEvent
_COUNTERS = "samples blocks gaps gap_samples duplicate_samples restarts"


@dataclass
class CartStream:
    """Turns decoded cart messages into sample blocks, gaps and device events."""

    source: str
    fs: float = 500.0
    leads: tuple[str, ...] = LEADS_12
    counters: Counters = field(
        default_factory=lambda: Counters(
            "samples blocks gaps gap_samples duplicate_samples restarts"
        )
    )
    _anchor: tuple[int, float] | None = None
    _next: int | None = None

    def utc_of(self, sample: int) -> float | None:
        """UTC POSIX seconds of cart sample ``sample`` (None before the first ECG frame)."""
        if self._anchor is None:
            return None
        seq0, t0 = self._anchor
        return t0 + (sample - seq0) / self.fs

    def handle(self, msg: CartMessage, now: float) -> list[CartOutput]:
        """Outputs for one message; ``now`` is its arrival time (UTC POSIX s)."""
        if isinstance(msg, EcgMsg):
            return self._ecg(msg, now)
        if isinstance(msg, HelloMsg):
            self.fs = float(msg.fs)
            self.leads = msg.leads
            info = {"serial": msg.serial, "firmware": msg.firmware, "fs": msg.fs}
            return [DeviceInfo(source=self.source, time=now, **info)]
        at = getattr(msg, "at_sample", None)
        t = self.utc_of(at) if at is not None else None
        at_time = {"source": self.source, "time": now if t is None else t, "seq": at}
        if isinstance(msg, StageMsg):
            stage = {"stage": msg.stage, "phase": msg.phase.name.lower(), "name": msg.name}
            motion = {"speed_kmh": msg.speed_kmh, "grade_pct": msg.grade_pct}
            return [StageChanged(**at_time, **stage, **motion)]
        if isinstance(msg, BloodPressureMsg):
            bp = {"systolic_mmhg": msg.systolic_mmhg, "diastolic_mmhg": msg.diastolic_mmhg}
            return [BloodPressure(**at_time, **bp)]
        if isinstance(msg, LeadOffMsg):
            off = tuple(self.leads[i] for i in range(len(self.leads)) if msg.mask >> i & 1)
            return [LeadOff(**at_time, leads=off)]
        return []  # heartbeat: only feeds the silence watchdog

    def _ecg(self, msg: EcgMsg, now: float) -> list[CartOutput]:
        out: list[CartOutput] = []
        first, x = msg.first_sample, msg.samples_uv
        n = x.shape[0]
        if n == 0:
            return out
        if self._next is not None and first < self._next - 10 * self.fs:
            # the cart's sample counter went back: it restarted
            self.counters.add("restarts")
            out.append(
                DeviceRestarted(
                    source=self.source,
                    time=now,
                    seq=first,
                    previous_end_seq=self._next,
                    reason="sample counter went back",
                )
            )
            self._anchor = None
            self._next = None
        if self._anchor is None:
            self._anchor = (first, now - (n - 1) / self.fs)
        if self._next is not None:
            if first > self._next:
                lost = Gap(
                    self.source,
                    self._next,
                    first,
                    self.utc_of(self._next) or now,
                    self.utc_of(first) or now,
                    reason="serial frames lost",
                    final=True,
                )
                self.counters.add("gaps")
                self.counters.add("gap_samples", lost.n_samples)
                out.append(lost)
            elif first < self._next:
                skip = min(self._next - first, n)
                self.counters.add("duplicate_samples", skip)
                x = x[skip:]
                first += skip
                n = x.shape[0]
                if n == 0:
                    return out
        self._next = first + n
        start = self.utc_of(first)
        assert start is not None
        out.append(SampleBlock(uv_to_mv(x), self.fs, start, first, self.leads, self.source))
        self.counters.add("samples", n)
        self.counters.add("blocks")
        return out
