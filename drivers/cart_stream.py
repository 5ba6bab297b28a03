"""Decoded cart messages → sample blocks, gaps and typed events (pure, no I/O).

Sample numbers: the cart's own counter, judged by a :class:`~drivers.continuity.SequenceGuard`
and mapped to the gateway's stream numbers. A counter that goes back, or jumps further
than the wall clock allows, or a HELLO announcing another sample rate, starts a new
stream (``DeviceRestarted``, and a gap for the time between): nothing already recorded is
overwritten. Times come from the first ECG frame's arrival (``now``, UTC POSIX seconds,
taken as the time of its last sample) and then advance by 1/fs per sample, so block times
stay monotonic and exact; a new stream re-anchors them.
"""

from __future__ import annotations

import math

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
    StreamPosition,
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
from drivers.continuity import Judgement, SequenceGuard, Verdict

__all__ = ["CartStream"]

CartOutput = SampleBlock | Gap | DeviceEvent
_COUNTERS = "samples blocks gaps gap_samples duplicate_samples restarts"


class CartStream:
    """Turns decoded cart messages into sample blocks, gaps and device events.

    Parameters
    ----------
    source
        Device id.
    fs
        Sample rate until a HELLO says otherwise, Hz.
    """

    def __init__(self, source: str, fs: float = 500.0) -> None:
        self.source = source
        self.fs = fs
        self.leads: tuple[str, ...] = LEADS_12
        self.counters = Counters(_COUNTERS)
        self.guard = SequenceGuard(fs)
        self._anchor: tuple[int, float] | None = None  # (stream seq, its UTC)
        self._pending_reason: str | None = None  # why the next frame may leave a gap

    # --- time and position -----------------------------------------------------------
    def utc_of(self, seq: int) -> float | None:
        """UTC POSIX seconds of stream sample ``seq`` (None before the first ECG frame)."""
        if self._anchor is None:
            return None
        seq0, t0 = self._anchor
        return t0 + (seq - seq0) / self.fs

    def position(self) -> StreamPosition | None:
        """Where the stream stands (to resume it after a gateway restart)."""
        nxt = self.guard.stream_next
        t = None if nxt is None else self.utc_of(nxt)
        if nxt is None or t is None:
            return None
        return StreamPosition(nxt, t, self.guard.offset, self.fs)

    def resume(self, pos: StreamPosition, now: float, mono: float) -> None:
        """Continue the stream of a previous gateway run (``now``: UTC, ``mono``: monotonic).
        The samples between become a gap "gateway not running" (or the cart restarted)."""
        self.fs = pos.fs or self.fs
        self.guard = SequenceGuard(self.fs)
        self.guard.resume(pos.next_seq, pos.offset, now - pos.utc, mono)
        self._anchor = (pos.next_seq, pos.utc)
        self._pending_reason = "gateway not running"

    # --- messages ------------------------------------------------------------------------
    def handle(self, msg: CartMessage, now: float, mono: float | None = None) -> list[CartOutput]:
        """Outputs for one message; ``now`` is its arrival (UTC POSIX s), ``mono`` the
        monotonic clock (defaults to ``now``)."""
        mono = now if mono is None else mono
        if isinstance(msg, EcgMsg):
            return self._ecg(msg, now, mono)
        if isinstance(msg, HelloMsg):
            return self._hello(msg, now, mono)
        at = getattr(msg, "at_sample", None)
        seq = None if at is None else at + self.guard.offset
        t = self.utc_of(seq) if seq is not None else None
        at_time = {"source": self.source, "time": now if t is None else t, "seq": seq}
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

    def _hello(self, msg: HelloMsg, now: float, mono: float) -> list[CartOutput]:
        info = {"serial": msg.serial, "firmware": msg.firmware, "fs": msg.fs}
        fs = float(msg.fs)
        if fs != self.fs:
            # the new stream's numbers go on with the clock (seq / fs = s) from where the old
            # one stood (or the new one announced by a HELLO just before), time included
            went_on = self.guard.continuation()
            guard = SequenceGuard(fs)
            if went_on is not None:
                old, since = went_on
                reason = f"sample rate changed from {self.fs:g} to {fs:g} Hz"
                guard.new_stream(math.ceil(old * fs / self.fs), since, reason)
            self.guard, self.fs = guard, fs
        self.leads = msg.leads
        return [DeviceInfo(source=self.source, time=now, **info)]

    def _ecg(self, msg: EcgMsg, now: float, mono: float) -> list[CartOutput]:
        n = msg.samples_uv.shape[0]
        if n == 0:
            return []
        out: list[CartOutput] = []
        j = self._judge(msg.first_sample, n, mono)
        if j.verdict is Verdict.RESTART:
            self.counters.add("restarts")
            prev = j.gap[0] if j.gap else None
            restarted = DeviceRestarted(
                source=self.source, time=now, seq=j.seq, previous_end_seq=prev, reason=j.reason
            )
            out.append(restarted)
        gap_start = self.utc_of(j.gap[0]) if j.gap else None
        if self._anchor is None or j.verdict is Verdict.RESTART:
            self._anchor = (j.seq + n - j.skip - 1, now)  # the frame's last sample arrives now
        if j.gap:
            out.append(self._gap(j, gap_start, now))
        x = msg.samples_uv[j.skip :]
        if j.skip:
            self.counters.add("duplicate_samples", j.skip)
        if x.shape[0] == 0:
            return out
        start = self.utc_of(j.seq)
        assert start is not None
        out.append(SampleBlock(uv_to_mv(x), self.fs, start, j.seq, self.leads, self.source))
        self.counters.add("samples", x.shape[0])
        self.counters.add("blocks")
        return out

    def _judge(self, first: int, n: int, mono: float) -> Judgement:
        j = self.guard.judge(first, n, mono)
        reason, self._pending_reason = self._pending_reason, None
        if j.verdict is Verdict.GAP:
            reason = f"{reason}; {j.reason}" if reason else "serial frames lost"
            return Judgement(j.verdict, j.seq, j.skip, j.gap, reason)
        return j

    def _gap(self, j: Judgement, start: float | None, now: float) -> Gap:
        assert j.gap is not None
        a, b = j.gap
        end = self.utc_of(b)
        self.counters.add("gaps")
        self.counters.add("gap_samples", b - a)
        return Gap(self.source, a, b, start or now, end or now, reason=j.reason, final=True)
