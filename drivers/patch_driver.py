"""asyncio driver for a chest patch speaking our profile with backfill (the I/O shell).

Per connection: read the patch clock (maps sample numbers to UTC), subscribe to
ECG, Backfill, RACP, Symptom and Status, ask the record access control point for
the memory extent (ranges the patch no longer holds become final gaps), then
keep asking for every missing range the :class:`~drivers.patch_gatt.GapLedger`
knows about, one at a time, while live ECG flows. Blocks go to the sink as they
arrive — backfilled ones out of order, each sample exactly once. Loss of the link
or a silent stream reconnects with capped, jittered backoff; requested ranges
are asked for again on the next connection.
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

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient

from drivers import patch_uuids as uuids
from drivers.ble_adapter import BleAdapter
from drivers.ble_link import connect, really_cancelled, supervise
from drivers.events import DeviceEvent, DeviceSink
from drivers.patch_gatt import (
    PatchDecodeError,
    PatchStream,
    RacpOp,
    RacpResponse,
    decode_device_time,
    decode_ecg_frame,
    decode_racp_response,
    decode_status,
    decode_symptom,
    encode_report_extent,
    encode_request_range,
)
from gateway.config import PatchDevice

__all__ = ["PatchDriver", "PatchStats"]

_LOGGER = logging.getLogger(__name__)
_RACP_TIMEOUT_S = 10.0


@dataclass(slots=True)
class PatchStats:
    connects: int = 0
    connect_failures: int = 0
    frames_live: int = 0
    frames_backfill: int = 0
    samples: int = 0
    duplicate_samples: int = 0
    ranges_requested: int = 0
    samples_lost: int = 0
    bad_notifications: int = 0
    watchdog_trips: int = 0
    clock_drift_ppm: float | None = None  # the patch clock's rate error vs NTP UTC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PatchDriver:
    """Streams and backfills one patch into a sink (see module docstring)."""

    def __init__(
        self,
        config: PatchDevice,
        sink: DeviceSink,
        *,
        backend: type[BaseBleakClient] | None = None,
        reconnect_delay_s: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.time,
        adapter_lock: asyncio.Lock | BleAdapter | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.backend = backend
        self.reconnect_delay_s = reconnect_delay_s
        self.stats = PatchStats()
        self.stream = PatchStream(config.id, lead=config.lead)
        self._clock = clock
        self._lock = BleAdapter.wrap(adapter_lock)
        self._racp: asyncio.Queue[RacpResponse] = asyncio.Queue()
        self._last_data = 0.0
        self._started = False
        self._streaming = False  # data subscriptions are up (the silence watchdog applies)
        self._rng = random.Random()

    @property
    def source(self) -> str:
        return self.config.id

    async def run(self) -> None:
        """Connect, stream, backfill, reconnect; returns only by cancellation."""
        await supervise(
            self._session, self._failed, self.reconnect_delay_s, self._rng, adapter=self._lock
        )

    def _failed(self, exc: Exception, count: int) -> None:
        self.stats.connect_failures += 1
        self._event("error", what="link", detail=repr(exc), count=count)

    async def _session(self) -> bool:
        lost = asyncio.Event()
        client = await connect(self.config, self.backend, self._lock, lost)
        self.stats.connects += 1
        self.stream.ledger.retry()
        self._event("connected", detail=self.config.address)
        reason, got_data = "link lost", False
        try:
            # a link that dies mid-setup may never report it: bound the GATT setup
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self._setup(client)
            self._last_data = time.monotonic()
            self._streaming = True
            before = self.stats.samples
            reason = await self._backfill_until_lost(client, lost)
            got_data = self.stats.samples > before
        except asyncio.CancelledError:
            reason = "stopped" if really_cancelled() else "link lost during a GATT operation"
            raise
        finally:
            self._streaming = False
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.disconnect()
            self._event("disconnected", reason=reason)
        return got_data

    async def _setup(self, client: Any) -> None:
        """Clock, RACP, extent (final gaps for what memory lost), then the data streams."""
        self.stream.set_time(decode_device_time(await client.read_gatt_char(uuids.PATCH_TIME)))
        await client.start_notify(uuids.PATCH_RACP, self._on_racp)
        extent = await self._command(client, encode_report_extent(), RacpOp.EXTENT)
        if not self._started:  # first connection of this recording: all that is held
            self.stream.start_at(extent.first)
            self._started = True
            self.sink.on_event(
                DeviceEvent(
                    self.source,
                    "recording",
                    self.stream.utc_of(extent.first),
                    extent.first,
                    {"first_seq": extent.first, "end_seq": extent.end},
                )
            )
        self._expire(extent.first)
        self.stream.ledger.receive(extent.end, extent.end)  # samples up to now are due
        # data only after the ledger knows where this connection starts
        for uuid, handler in (
            (uuids.PATCH_ECG, self._on_frame),
            (uuids.PATCH_BACKFILL, self._on_frame),
            (uuids.PATCH_SYMPTOM, self._on_symptom),
            (uuids.PATCH_STATUS, self._on_status),
        ):
            await client.start_notify(uuid, handler)

    async def _command(self, client: Any, data: bytes, want: RacpOp) -> RacpResponse:
        while not self._racp.empty():
            self._racp.get_nowait()
        await client.write_gatt_char(uuids.PATCH_RACP, data, response=True)
        deadline = time.monotonic() + _RACP_TIMEOUT_S
        while True:
            # a silent stream means a dead link even if nobody said so: stop waiting
            if self._silent() or time.monotonic() > deadline:
                raise TimeoutError(f"no RACP {want.name} response")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    r = await self._racp.get()
                    if r.op == want:
                        return r

    def _silent(self) -> bool:
        """The data streams are up but nothing came for ``silence_timeout_s``: a dead link."""
        idle = time.monotonic() - self._last_data
        return self._streaming and idle > self.config.silence_timeout_s

    async def _backfill_until_lost(self, client: Any, lost: asyncio.Event) -> str:
        while not lost.is_set():
            if self._silent():
                self.stats.watchdog_trips += 1
                return "silent stream"
            ranges = self.stream.ledger.to_request()
            for first, end in ranges:
                self.stats.ranges_requested += 1
                done = await self._command(
                    client, encode_request_range(first, end), RacpOp.RANGE_DONE
                )
                if (done.first, done.end) != (first, end):
                    extent = await self._command(client, encode_report_extent(), RacpOp.EXTENT)
                    self._expire(extent.first)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1 if ranges else 0.2):
                    await lost.wait()
        return "link lost"

    def _expire(self, oldest: int) -> None:
        for gap in self.stream.lost(oldest):
            self.stats.samples_lost += gap.n_samples
            self.sink.on_gap(gap)

    # --- notifications ----------------------------------------------------------------------
    def _on_frame(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            frame = decode_ecg_frame(data)
        except PatchDecodeError as exc:
            self._bad("ECG frame", exc)
            return
        self._last_data = time.monotonic()
        if frame.backfill:
            self.stats.frames_backfill += 1
        else:
            self.stats.frames_live += 1
        before = self.stream.duplicates
        blocks = self.stream.feed(frame, self._clock())
        if self.stream.clock.drift_ppm is not None:
            self.stats.clock_drift_ppm = round(self.stream.clock.drift_ppm, 2)
        for block in blocks:
            self.stats.samples += block.n
            self.sink.on_block(block)
        self.stats.duplicate_samples += self.stream.duplicates - before

    def _on_racp(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            self._racp.put_nowait(decode_racp_response(data))
        except PatchDecodeError as exc:
            self._bad("RACP response", exc)

    def _on_symptom(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            press = decode_symptom(data)
        except PatchDecodeError as exc:
            self._bad("symptom", exc)
            return
        t = self.stream.utc_of(press.seq)
        self.sink.on_event(
            DeviceEvent(self.source, "button", t, press.seq, {"press_id": press.press_id})
        )

    def _on_status(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            st = decode_status(data)
        except PatchDecodeError as exc:
            self._bad("status", exc)
            return
        self._event("battery", percent=st.battery_percent, lead_off=st.lead_off)

    def _bad(self, what: str, exc: Exception) -> None:
        self.stats.bad_notifications += 1
        self._event("error", what=what, detail=str(exc), count=self.stats.bad_notifications)

    def _event(self, kind: str, **data: Any) -> None:
        self.sink.on_event(DeviceEvent(self.source, kind, self._clock(), None, data))
