"""The conversation with a Polar-PMD chest patch, as a pure state machine (no I/O).

Per connection: subscribe to the PMD control point and data, and, where the patch has
them, Heart Rate Measurement, the symptom button and Battery Level; read the battery
and the Device Information strings; write START ECG and wait ``start_timeout_s`` for
its answer on the control point (refused or unanswered: the session failed). Then:

- ECG frames → :class:`~drivers.polar_stream.PmdEcgStream` → sample blocks with
  sequence numbers continuous across reconnections, and final gaps for what the
  timestamps say was never received (PMD has no backfill);
- Heart Rate Measurement → ``HeartRate`` events, and ``RrGapSeen`` for the beats
  never heard while the link was down (:class:`~drivers.gatt_standard.RrTracker`);
- no ECG frame for ``silence_timeout_s``: disconnect (a BlueZ notify stall);
- symptom-button presses → ``ButtonPressed`` at the sample their device time falls on. A
  press notified before the first ECG frame of a gateway run (a device that kept it while
  no gateway listened) is held until a frame relates the device's clock to the samples,
  and released unplaced (dated by its arrival) if the link ends first: a press is never
  dropped. A press notified twice (same counter and device time) is reported once.

At a stop the shell writes STOP ECG (:meth:`PolarSession.closing`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from core.block import SampleBlock
from core.counters import Counters
from core.events import (
    BatteryLevel,
    ButtonPressed,
    Connected,
    DeviceInfo,
    Disconnected,
    DriverError,
    HeartRate,
    RrGapSeen,
    StreamPosition,
)
from drivers import uuids
from drivers.ble_link import BleSettings
from drivers.gatt_session import Characteristics, Disconnect, Output, Read, Subscribe, Write
from drivers.gatt_standard import (
    ButtonPress,
    GattDecodeError,
    RrTracker,
    decode_battery_level,
    decode_button_press,
    decode_heart_rate_measurement,
)
from drivers.polar_pmd import (
    PmdDecodeError,
    PmdMeasurement,
    PmdOp,
    PmdStatus,
    parse_control_response,
    start_ecg_command,
    stop_command,
)
from drivers.polar_stream import PmdEcgStream

__all__ = ["PolarSession", "PolarSettings"]

_OK_START = (PmdStatus.SUCCESS, PmdStatus.ALREADY_IN_STATE)
_INFO = {
    uuids.MANUFACTURER_NAME: "manufacturer",
    uuids.MODEL_NUMBER: "model",
    uuids.SERIAL_NUMBER: "serial",
    uuids.FIRMWARE_REVISION: "firmware",
}
_COUNTERS = """connects reconnects disconnects watchdog_trips frames_ok frames_malformed samples
gaps samples_missed values_malformed start_refused rr_gaps rr_missing_beats
presses presses_repeated presses_unplaced"""
# values_malformed: bad HR / battery / button / control point values; rr_gaps: stretches of
# beats the Heart Rate service never delivered (link down), rr_missing_beats: their beats;
# presses_unplaced: presses reported without a sample number (no ECG frame to place them by)
_PRESSES_KEPT = 64  # (counter, device time) of the last presses, to tell a repeat
_PRESS_AHEAD_S = 10.0  # a press dated further past the newest sample is not believed


@dataclass(frozen=True, slots=True)
class PolarSettings(BleSettings):
    """A Polar-PMD patch: BLE settings plus its ECG rate (Hz) and lead name."""

    fs: float = 130.0
    lead: str = "ECG"


class PolarSession:
    """Polar PMD + Heart Rate + Battery + button conversation (see the module docstring).

    Parameters
    ----------
    settings
        The patch: id, address, ECG rate (Hz), lead name, ``silence_timeout_s``.
    start_timeout_s
        Seconds to wait for START ECG's answer.
    """

    def __init__(self, settings: PolarSettings, *, start_timeout_s: float = 5.0) -> None:
        source = self.source = settings.id
        self.address = settings.address
        self.silence_timeout_s = settings.silence_timeout_s
        self.start_timeout_s = start_timeout_s
        self.counters = Counters(_COUNTERS)
        self.stream = PmdEcgStream(
            source, fs=settings.fs, lead=settings.lead, time_scale=settings.time_scale
        )
        self._rr = RrTracker(source)
        self._info: dict[str, str] = {}
        self._info_due: set[str] = set()
        self._awaiting_start = False  # START ECG written (or queued), not yet answered
        self._start_deadline: float | None = None
        self._streaming = False
        self._last_frame = 0.0
        self._delivered = False
        self._malformed: dict[str, int] = {}  # malformed values per kind (error name)
        self._presses_held: list[tuple[ButtonPress, float]] = []  # (press, arrival time)
        self._presses_seen: deque[tuple[int, int]] = deque(maxlen=_PRESSES_KEPT)

    # --- the shell's events --------------------------------------------------------------
    def connected(
        self, chars: Characteristics, mtu: int | None, now: float, mono: float
    ) -> list[Output]:
        n = self.counters.add("connects")
        if n > 1:
            self.counters.add("reconnects")
        self._streaming, self._delivered, self._start_deadline = False, False, None
        self._awaiting_start = False
        out: list[Output] = [Connected(source=self.source, time=now, detail=self.address, mtu=mtu)]
        if uuids.PMD_CONTROL_POINT not in chars or uuids.PMD_DATA not in chars:
            return [*out, Disconnect("no Polar PMD service", failed=True)]
        out += [Subscribe(uuids.PMD_CONTROL_POINT), Subscribe(uuids.PMD_DATA)]
        # optional characteristics, used as far as their declared properties allow
        out += [
            Subscribe(u)
            for u in (uuids.HEART_RATE_MEASUREMENT, uuids.PATCH_BUTTON)
            if _can(chars, u, "notify", "indicate")
        ]
        if _can(chars, uuids.BATTERY_LEVEL, "read"):
            out.append(Read(uuids.BATTERY_LEVEL))
        if _can(chars, uuids.BATTERY_LEVEL, "notify"):
            out.append(Subscribe(uuids.BATTERY_LEVEL))
        self._info, self._info_due = {}, {u for u in _INFO if _can(chars, u, "read")}
        out += [Read(u) for u in _INFO if u in self._info_due]
        self._awaiting_start = True
        start = start_ecg_command(int(self.stream.fs))
        return [*out, Write(uuids.PMD_CONTROL_POINT, start)]

    def read_done(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]:
        if uuid == uuids.BATTERY_LEVEL:
            return self.notified(uuid, data, now, mono)
        if uuid not in self._info_due:
            return []
        self._info_due.discard(uuid)
        self._info[_INFO[uuid]] = bytes(data).decode("utf-8", errors="replace").rstrip("\x00")
        if self._info_due:
            return []
        return [DeviceInfo(source=self.source, time=now, **self._info)]

    def write_done(self, uuid: str, now: float, mono: float) -> list[Output]:
        if uuid == uuids.PMD_CONTROL_POINT and self._awaiting_start:
            self._start_deadline = mono + self.start_timeout_s
        return []

    def notified(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]:
        try:
            if uuid == uuids.PMD_DATA:
                return self._ecg(data, now, mono)
            if uuid == uuids.PMD_CONTROL_POINT:
                return self._control_point(data, now, mono)
            if uuid == uuids.HEART_RATE_MEASUREMENT:
                return self._heart_rate(data, now)
            if uuid == uuids.BATTERY_LEVEL:
                level = decode_battery_level(data)
                return [BatteryLevel(source=self.source, time=now, percent=level.percent)]
            if uuid == uuids.PATCH_BUTTON:
                return self._button(data, now)
        except (PmdDecodeError, GattDecodeError) as exc:
            return [self._bad_value(uuid, exc, now)]
        return []

    def tick(self, now: float, mono: float) -> list[Output]:
        deadline = self._start_deadline
        if deadline is not None and mono > deadline:
            self._awaiting_start, self._start_deadline = False, None
            return [Disconnect("START ECG not answered", failed=True)]
        if self._streaming and mono - self._last_frame > self.silence_timeout_s:
            self.counters.add("watchdog_trips")
            self._streaming = False
            detail = f"no ECG for {self.silence_timeout_s:g} s"
            error = DriverError(source=self.source, time=now, what="silence", detail=detail)
            return [error, Disconnect("silent stream", failed=not self._delivered)]
        return []

    def link_lost(self, reason: str, now: float, mono: float) -> list[Output]:
        self._streaming, self._start_deadline, self._awaiting_start = False, None, False
        self.counters.add("disconnects")
        out = self._rr_gap(self._rr.link_lost(), now)
        out += self._release_presses()
        return [*out, Disconnected(source=self.source, time=now, reason=reason)]

    def closing(self) -> list[Output]:
        """The driver is stopping: stop the ECG stream (best effort); presses still held
        are reported unplaced."""
        return [*self._release_presses(), Write(uuids.PMD_CONTROL_POINT, stop_command())]

    @property
    def delivered(self) -> bool:
        return self._delivered

    def position(self) -> StreamPosition | None:
        """Where the stream stands (numbering goes on after a gateway restart)."""
        return self.stream.position()

    def resume(self, pos: StreamPosition) -> None:
        """Number on from a previous gateway run (the time between becomes a gap)."""
        self.stream.resume(pos)

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters.snapshot(),
            "frames_duplicate": self.stream.duplicates,
            "timestamps_rejected": self.stream.timestamps_rejected,
            "clock_steps": self.stream.clock_steps,
            "rr_beats": self._rr.beats,
        }

    # --- notifications ---------------------------------------------------------------------
    def _ecg(self, data: bytes, now: float, mono: float) -> list[Output]:
        try:
            items = self.stream.feed(data, now)
        except PmdDecodeError as exc:
            n = self.counters.add("frames_malformed")
            return [
                DriverError(
                    source=self.source, time=now, what="pmd_frame", detail=str(exc), count=n
                )
            ]
        if not items:
            return self._place_held_presses()
        self.counters.add("frames_ok")
        self._last_frame = mono
        for item in items:
            if isinstance(item, SampleBlock):
                self.counters.add("samples", item.n)
                self._delivered = True
            else:
                self.counters.add("gaps")
                self.counters.add("samples_missed", item.n_samples)
        return [*items, *self._place_held_presses()]

    def _control_point(self, data: bytes, now: float, mono: float) -> list[Output]:
        resp = parse_control_response(data)
        ecg_started = resp.op == PmdOp.START and resp.measurement == PmdMeasurement.ECG
        if ecg_started and self._awaiting_start:
            self._awaiting_start, self._start_deadline = False, None
            if resp.status not in _OK_START:
                self.counters.add("start_refused")
                return [Disconnect(f"START ECG refused: {resp.status_name}", failed=True)]
            self._streaming, self._last_frame = True, mono
            return []
        if not resp.ok:
            detail = f"{resp.status_name} (op {resp.op})"
            return [
                DriverError(source=self.source, time=now, what="pmd_control_point", detail=detail)
            ]
        return []

    def _heart_rate(self, data: bytes, now: float) -> list[Output]:
        m = decode_heart_rate_measurement(data)
        out = self._rr_gap(self._rr.feed(m.rr_s, now), now)
        head = self.stream.next_seq
        seq = head - 1 if head > 0 else None
        hr = HeartRate(
            source=self.source, time=now, seq=seq, bpm=m.bpm, rr_s=m.rr_s, contact=m.contact
        )
        return [*out, hr]

    def _rr_gap(self, gap: RrGapSeen | None, now: float) -> list[Output]:
        if gap is None:
            return []
        self.counters.add("rr_gaps")
        self.counters.add("rr_missing_beats", gap.beats_missing)
        return [gap]

    def _button(self, data: bytes, now: float) -> list[Output]:
        press = decode_button_press(data)
        key = (press.press_id, press.device_time_ns)
        if key in self._presses_seen:  # notified again (e.g. after a reconnection)
            self.counters.add("presses_repeated")
            return []
        self._presses_seen.append(key)
        self.counters.add("presses")
        if not self.stream.has_clock:
            self._presses_held.append((press, now))  # no frame yet to place it by
            return []
        return [self._pressed(press, now)]

    def _pressed(self, press: ButtonPress, now: float) -> ButtonPressed:
        """The event of a press, at the sample its device time falls on. Before the first
        sample it has no sample number but is dated by the device clock; implausibly far
        past the newest sample it is not believed and is dated by its arrival (``now``).
        The pipeline places a press without a sample number by its date."""
        seq = self.stream.seq_of_device_time(press.device_time_ns)
        when = now
        if seq is not None and seq < 0:
            when, seq = self.stream.utc_of(seq), None
        elif seq is not None and seq > self.stream.next_seq + _PRESS_AHEAD_S * self.stream.fs:
            seq = None
        elif seq is not None:
            when = self.stream.utc_of(seq)
        return self._press_event(press, when, seq)

    def _press_event(self, press: ButtonPress, when: float, seq: int | None) -> ButtonPressed:
        if seq is None:
            self.counters.add("presses_unplaced")
        return ButtonPressed(
            source=self.source,
            time=when,
            seq=seq,
            press_id=press.press_id,
            device_time=press.device_time_posix,
        )

    def _place_held_presses(self) -> list[Output]:
        """Presses held for the first frame, placed now that one came (its caller)."""
        held, self._presses_held = self._presses_held, []
        return [self._pressed(p, t) for p, t in held]

    def _release_presses(self) -> list[Output]:
        """Presses still held (no frame came to place them): reported as they stand."""
        held, self._presses_held = self._presses_held, []
        return [self._press_event(p, t, None) for p, t in held]

    def _bad_value(self, uuid: str, exc: Exception, now: float) -> DriverError:
        """A malformed value: counted in all (``values_malformed``) and per kind (the
        event's count: "battery: ... (3 so far)" counts bad battery values only)."""
        self.counters.add("values_malformed")
        what = _VALUE_NAMES.get(uuid, uuid)
        n = self._malformed[what] = self._malformed.get(what, 0) + 1
        return DriverError(source=self.source, time=now, what=what, detail=str(exc), count=n)


def _can(chars: Characteristics, uuid: str, *properties: str) -> bool:
    """The device has ``uuid`` and declares one of ``properties`` for it."""
    declared = chars.get(uuid)
    return declared is not None and any(p in declared for p in properties)


_VALUE_NAMES = {
    uuids.PMD_CONTROL_POINT: "pmd_control_point",
    uuids.HEART_RATE_MEASUREMENT: "heart_rate",
    uuids.BATTERY_LEVEL: "battery",
    uuids.PATCH_BUTTON: "button",
}
