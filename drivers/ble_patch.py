"""asyncio driver for a BLE chest patch speaking Polar PMD (the I/O shell).

One :class:`PolarPmdDriver` per configured patch. :meth:`PolarPmdDriver.run`
connects through ``bleak_retry_connector.establish_connection``, subscribes to
PMD (control point + data), Heart Rate, Battery and the symptom button, starts
ECG and hands everything to the :class:`~drivers.events.DeviceSink`:

* ECG → :class:`~dsp.block.SampleBlock` s (mV), sequence numbers continuous
  across reconnects; samples lost while disconnected → final
  :class:`~drivers.events.Gap` (PMD has no backfill).
* ``connected`` / ``disconnected`` / ``heart_rate`` / ``battery`` /
  ``button`` / ``device_info`` / ``error`` :class:`~drivers.events.DeviceEvent` s.

Bytes are decoded by the pure modules :mod:`drivers.polar_pmd` and
:mod:`drivers.gatt_standard`; malformed notifications are counted in
:attr:`PolarPmdDriver.stats`, reported as an ``error`` event and dropped.

The link is watched: if no ECG frame arrives for ``silence_timeout_s`` (BlueZ
notify stalls are a known failure), the driver disconnects and reconnects.
Reconnects use capped, jittered exponential backoff and go on until the task
running :meth:`run` is cancelled; cancelling stops the ECG stream and
disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.exc import BleakError

from drivers import patch_uuids as uuids
from drivers.ble_adapter import BleAdapter
from drivers.ble_link import connect, really_cancelled, supervise
from drivers.events import DeviceEvent, DeviceSink
from drivers.gatt_standard import (
    GattDecodeError,
    RrGap,
    RrTracker,
    decode_battery_level,
    decode_button_press,
    decode_heart_rate_measurement,
)
from drivers.polar_pmd import (
    PmdControlResponse,
    PmdDecodeError,
    PmdEcgStream,
    PmdOp,
    PmdStatus,
    parse_control_response,
    start_ecg_command,
    stop_command,
)
from dsp.block import SampleBlock
from gateway.config import PolarPmdDevice

__all__ = ["BlePatchStats", "PmdStartError", "PolarPmdDriver"]

_LOGGER = logging.getLogger(__name__)

_CP_RESPONSE_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 2.0
_OK_START = (PmdStatus.SUCCESS, PmdStatus.ALREADY_IN_STATE)


class PmdStartError(Exception):
    """The patch refused or did not answer the START ECG command."""


@dataclass(slots=True)
class BlePatchStats:
    """Counters of one driver since it was created."""

    connects: int = 0  # links established
    reconnects: int = 0  # links established after the first
    connect_failures: int = 0
    disconnects: int = 0
    watchdog_trips: int = 0  # silent-stream disconnects
    frames_ok: int = 0
    frames_malformed: int = 0
    frames_duplicate: int = 0
    samples: int = 0
    gaps: int = 0
    samples_missed: int = 0
    values_malformed: int = 0  # bad HR / battery / button / control point values
    start_refused: int = 0
    rr_beats: int = 0  # RR intervals heard from the Heart Rate service
    rr_gaps: int = 0  # stretches of beats never heard (link down), see RrGap
    rr_missing_beats: int = 0  # estimated beats in those stretches

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PolarPmdDriver:
    """Streams ECG and events from one Polar-PMD patch into a sink.

    Parameters
    ----------
    config
        The patch's configuration (address, id, fs, lead, timeouts in s).
    sink
        Receives blocks, events and gaps (synchronous, must not block).
    backend
        bleak backend class; ``None`` for the platform default (BlueZ on a Pi).
        Tests pass :meth:`drivers.sim.bumble_backend.SimBleWorld.backend`.
    reconnect_delay_s
        ``(first, cap)`` of the exponential reconnect backoff, seconds.
    clock
        UTC wall clock, POSIX seconds (used for "now" given to the decoders).
    adapter_lock
        Shared by every driver on the same Bluetooth adapter: scanning and
        connecting take it, so a scan never overlaps another patch's connection
        attempt (BlueZ fails both when they do). None: not shared.
    """

    def __init__(
        self,
        config: PolarPmdDevice,
        sink: DeviceSink,
        *,
        backend: type[BaseBleakClient] | None = None,
        reconnect_delay_s: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.time,
        adapter_lock: asyncio.Lock | BleAdapter | None = None,
    ) -> None:
        self.config = config
        self._adapter_lock = BleAdapter.wrap(adapter_lock)
        self.sink = sink
        self.backend = backend
        self.reconnect_delay_s = reconnect_delay_s
        self.stats = BlePatchStats()
        self.connected = False
        self._clock = clock
        self._rr = RrTracker()
        self._stream = PmdEcgStream(config.id, fs=config.fs, lead=config.lead)
        self._cp_responses: asyncio.Queue[PmdControlResponse] = asyncio.Queue()
        self._last_frame = 0.0  # time.monotonic() of the last good ECG frame
        self._rng = random.Random()

    @property
    def source(self) -> str:
        return self.config.id

    # --- main loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, stream, reconnect on loss; returns only by cancellation."""
        await supervise(
            self._session,
            self._failed,
            self.reconnect_delay_s,
            self._rng,
            (PmdStartError,),
            adapter=self._adapter_lock,
        )

    def _failed(self, exc: Exception, count: int) -> None:
        self.stats.connect_failures += 1
        self._event("error", what="link", detail=repr(exc), count=count)

    async def _session(self) -> bool:
        """One connection: returns True if ECG streamed before the link was lost."""
        lost = asyncio.Event()
        client = await connect(self.config, self.backend, self._adapter_lock, lost)
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.connected = True
        self._event("connected", detail=self.config.address, mtu=client.mtu_size)
        reason = "link lost"
        streamed = False
        try:
            # a link that dies mid-setup may never report it: bound the GATT setup
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self._subscribe(client)
                await self._start_ecg(client)
            self._last_frame = time.monotonic()
            frames_before = self.stats.frames_ok
            reason = await self._watch(lost)
            streamed = self.stats.frames_ok > frames_before
        except asyncio.CancelledError:
            if not really_cancelled():  # the link dropped mid-operation: not a stop
                reason = "link lost during a GATT operation"
                raise
            reason = "stopped"
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await client.write_gatt_char(
                        uuids.PMD_CONTROL_POINT, stop_command(), response=True
                    )
            raise
        except (BleakError, TimeoutError, PmdStartError) as exc:
            reason = f"error: {exc!r}"
            raise
        finally:
            self.connected = False
            self._rr_gap(self._rr.link_lost())
            self.stats.disconnects += 1
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT_S):  # a stalled BlueZ link can hang
                    await client.disconnect()
            self._event("disconnected", reason=reason)
        return streamed

    async def _watch(self, lost: asyncio.Event) -> str:
        """Wait until the link drops or the ECG stream goes silent."""
        silence = self.config.silence_timeout_s
        while True:
            remaining = self._last_frame + silence - time.monotonic()
            if remaining <= 0:
                self.stats.watchdog_trips += 1
                self._event("error", what="silence", detail=f"no ECG for {silence} s")
                return "silent stream"
            try:
                async with asyncio.timeout(remaining):
                    await lost.wait()
                return "link lost"
            except TimeoutError:
                continue

    async def _subscribe(self, client: BleakClient) -> None:
        services = client.services
        await client.start_notify(uuids.PMD_CONTROL_POINT, self._on_control_point)
        await client.start_notify(uuids.PMD_DATA, self._on_pmd_data)
        if services.get_characteristic(uuids.HEART_RATE_MEASUREMENT) is not None:
            await client.start_notify(uuids.HEART_RATE_MEASUREMENT, self._on_heart_rate)
        if services.get_characteristic(uuids.PATCH_BUTTON) is not None:
            await client.start_notify(uuids.PATCH_BUTTON, self._on_button)
        battery = services.get_characteristic(uuids.BATTERY_LEVEL)
        if battery is not None:
            self._on_battery(battery, await client.read_gatt_char(battery))
            if "notify" in battery.properties:
                await client.start_notify(battery, self._on_battery)
        await self._read_device_info(client)

    async def _read_device_info(self, client: BleakClient) -> None:
        info: dict[str, str] = {}
        for key, uuid in (
            ("manufacturer", uuids.MANUFACTURER_NAME),
            ("model", uuids.MODEL_NUMBER),
            ("serial", uuids.SERIAL_NUMBER),
            ("firmware", uuids.FIRMWARE_REVISION),
        ):
            if client.services.get_characteristic(uuid) is None:
                continue
            raw = await client.read_gatt_char(uuid)
            info[key] = bytes(raw).decode("utf-8", errors="replace").rstrip("\x00")
        if info:
            self._event("device_info", **info)

    async def _start_ecg(self, client: BleakClient) -> None:
        while not self._cp_responses.empty():
            self._cp_responses.get_nowait()
        await client.write_gatt_char(uuids.PMD_CONTROL_POINT, start_ecg_command(), response=True)
        async with asyncio.timeout(_CP_RESPONSE_TIMEOUT_S):
            while True:
                resp = await self._cp_responses.get()
                if resp.op == PmdOp.START:
                    break
        if resp.status not in _OK_START:
            self.stats.start_refused += 1
            raise PmdStartError(f"START ECG refused: {resp.status_name}")

    # --- notification handlers (synchronous, in the event loop) --------------------
    def _on_pmd_data(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            items = self._stream.feed(data, self._clock())
        except PmdDecodeError as exc:
            self.stats.frames_malformed += 1
            self._event(
                "error", what="pmd_frame", detail=str(exc), count=self.stats.frames_malformed
            )
            return
        self.stats.frames_duplicate = self._stream.duplicates
        if not items:
            return
        self.stats.frames_ok += 1
        self._last_frame = time.monotonic()
        for item in items:
            if isinstance(item, SampleBlock):
                self.stats.samples += item.n
                self.sink.on_block(item)
            else:
                self.stats.gaps += 1
                self.stats.samples_missed += item.n_samples
                self.sink.on_gap(item)

    def _on_control_point(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            resp = parse_control_response(data)
        except PmdDecodeError as exc:
            self._bad_value("pmd_control_point", exc)
            return
        if not resp.ok:
            self._event("error", what="pmd_control_point", detail=resp.status_name, op=resp.op)
        self._cp_responses.put_nowait(resp)

    def _on_heart_rate(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            m = decode_heart_rate_measurement(data)
        except GattDecodeError as exc:
            self._bad_value("heart_rate", exc)
            return
        rr_s = list(m.rr_s)
        self._rr_gap(self._rr.feed(rr_s, self._clock()))
        self.stats.rr_beats = self._rr.beats
        self._event("heart_rate", seq=self._latest_seq(), bpm=m.bpm, rr_s=rr_s, contact=m.contact)

    def _rr_gap(self, gap: RrGap | None) -> None:
        if gap is None:
            return
        self.stats.rr_gaps += 1
        self.stats.rr_missing_beats += gap.beats_missing
        self._event(
            "rr_gap",
            start=gap.start,
            end=gap.end,
            duration_s=round(gap.duration_s, 3),
            beats_missing=gap.beats_missing,
        )

    def _on_battery(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            level = decode_battery_level(data)
        except GattDecodeError as exc:
            self._bad_value("battery", exc)
            return
        self._event("battery", percent=level.percent)

    def _on_button(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            press = decode_button_press(data)
        except GattDecodeError as exc:
            self._bad_value("button", exc)
            return
        seq = self._stream.seq_of_device_time(press.device_time_ns)
        when = self._stream.utc_of(seq) if seq is not None and seq >= 0 else self._clock()
        self._event(
            "button",
            time=when,
            seq=seq if seq is not None and seq >= 0 else None,
            press_id=press.press_id,
            device_time=press.device_time_posix,
        )

    # --- helpers ------------------------------------------------------------------------
    def _latest_seq(self) -> int | None:
        return self._stream.next_seq - 1 if self._stream.next_seq > 0 else None

    def _bad_value(self, what: str, exc: Exception) -> None:
        self.stats.values_malformed += 1
        self._event("error", what=what, detail=str(exc), count=self.stats.values_malformed)

    def _event(
        self, kind: Any, *, time: float | None = None, seq: int | None = None, **data: Any
    ) -> None:
        when = self._clock() if time is None else time
        self.sink.on_event(DeviceEvent(self.source, kind, when, seq, data))
