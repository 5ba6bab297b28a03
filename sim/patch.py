"""A simulated chest patch speaking our profile with backfill (docs/protocols/patch-gatt.md).

A bumble GATT server on the same virtual radio as :mod:`sim.polar_patch`.
It records continuously into a memory of ``memory_s`` seconds whether or not
anyone is connected, notifies live ECG frames while connected, and answers the
record access control point exactly as the profile's table says: REPORT_EXTENT,
REQUEST_RANGE with frames on the Backfill characteristic followed by RANGE_DONE
(NOT_HELD for what it no longer holds or has not recorded yet, BUSY while another
backfill runs, INVALID for an empty range or a malformed command), and ABORT.
Frames are sized by the connection's ATT MTU (at most ``frame_samples`` live and 100
backfilled samples; 7 before an MTU exchange), and Status is notified when the contact
or the battery changes.

Test hooks: :meth:`disconnect` (drop the link from the patch side),
:meth:`press_button`, :meth:`set_lead_off`, :meth:`set_battery`, ``recorded`` (every
sample recorded, µV, by seq), ``racp_commands`` (every command received),
``backfill_frame_delay_s``; and for a misbehaving patch: ``device_time_bytes``,
``on_racp`` with :meth:`answer`, :meth:`send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from core.units import EPOCH_2000
from drivers import uuids
from drivers.patch_gatt import (
    FS,
    UV_PER_LSB,
    DeviceTime,
    PatchDecodeError,
    PatchStatus,
    RacpOp,
    RacpResponse,
    RacpStatus,
    SymptomPress,
    decode_racp_command,
    encode_device_time,
    encode_ecg_frame,
    encode_racp_response,
    encode_status,
    encode_symptom,
)
from sim.bumble_backend import SimBleWorld, disconnect_bounded, notify_kept
from sim.synth import EcgSynth

__all__ = ["SimPatch"]

_LOGGER = logging.getLogger(__name__)
_BACKFILL_SAMPLES = 100  # per backfill frame at most (6 + 200 bytes): fits an MTU of 247
_FRAME_HEADER = 6  # bytes before an ECG frame's samples (patch-gatt.md)
_ATT_OVERHEAD = 3  # a notification carries at most ATT_MTU - 3 bytes
_READVERTISE_S = 1.0  # wall-clock seconds without a connection before advertising is re-armed


class SimPatch:
    """A virtual patch with memory. ``async with SimPatch(world) as p: ... p.address``.

    Parameters
    ----------
    speed
        Simulated time per wall-clock time.
    memory_s
        Seconds of ECG the patch memory holds (a ring).
    frame_samples
        Samples per notification (50 = 200 ms at 250 Hz).
    source
        Where the ECG comes from, an object with ``generate(n) -> (n, 1)`` mV at 250 Hz
        (e.g. :class:`~sim.replay.RecordReplay`); default a synthetic ECG.
    backfill_frame_delay_s
        Wall-clock seconds between backfill frames (0: as fast as the link takes them); a
        slow backfill, as over a busy link, outlasts the gateway's RACP wait.
    """

    def __init__(
        self,
        world: SimBleWorld,
        *,
        name: str = "ECG Patch SIM",
        speed: float = 1.0,
        hr_bpm: float = 70.0,
        seed: int = 0,
        memory_s: float = 3600.0,
        frame_samples: int = 50,
        source: object | None = None,
        backfill_frame_delay_s: float = 0.0,
    ) -> None:
        self.world = world
        self.speed = speed
        self.frame_samples = frame_samples
        self.address = world.new_address(0xE0)
        self.device: Device = world.new_device(name, self.address)
        # the signal: synthetic, or a recording replayed (anything with generate(n))
        self._synth = source or EcgSynth(FS, ("ECG",), hr_bpm=hr_bpm, seed=seed)
        self.capacity = int(memory_s * FS)
        self._recorded = np.zeros(int(FS * 60), dtype=np.int32)  # grows by doubling
        self._away_until = 0.0  # wall-clock monotonic time the patch is back in range
        self.next_seq = 0
        self.press_count = 0
        self._unsent: list[SymptomPress] = []  # presses no gateway has been notified of
        self.frames_live = 0
        self.frames_backfill = 0
        self._live_from = 0
        self._t0 = 0.0
        self._us0 = 0
        self._connection: Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._link_tasks: set[asyncio.Task[None]] = set()
        self._advertised_at = 0.0
        self._recorder: asyncio.Task[None] | None = None
        self._streamer: asyncio.Task[None] | None = None
        self._running: tuple[int, int] | None = None  # the backfill being sent
        self._abort = False
        self.backfill_frame_delay_s = backfill_frame_delay_s
        self.racp_commands: list[bytes] = []
        """Every RACP command written to the patch, in order."""
        self.device_time_bytes: bytes | None = None
        """Test hook: what a Device Time read returns instead of the clock (any bytes)."""
        self.on_racp: Callable[[bytes], bool] | None = None
        """Test hook: sees each RACP command first; True means it handled it (answered with
        :meth:`answer`, or chose not to), and the patch does nothing more."""
        self._stopping = False
        self.lead_off = False
        """Electrode contact lost (:meth:`set_lead_off`): Status and live frames say so."""
        self.battery_percent = 80
        self._build_gatt()

    # --- GATT ---------------------------------------------------------------------------
    def _build_gatt(self) -> None:
        p = Characteristic.Properties
        rd = Characteristic.READABLE

        def notify(uuid: str) -> Characteristic:
            return Characteristic(UUID(uuid), p.NOTIFY, rd, b"")

        self._ecg = notify(uuids.PATCH_ECG)
        self._backfill = notify(uuids.PATCH_BACKFILL)
        self._symptom = notify(uuids.PATCH_SYMPTOM)
        self._symptom.on(self._symptom.EVENT_SUBSCRIPTION, self._on_symptom_subscription)
        self._racp = Characteristic(
            UUID(uuids.PATCH_RACP),
            p.WRITE | p.INDICATE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_racp),
        )
        self._time = Characteristic(
            UUID(uuids.PATCH_TIME),
            p.READ,
            rd,
            CharacteristicValue(read=lambda _c: self._time_value()),
        )
        self._status = Characteristic(
            UUID(uuids.PATCH_STATUS),
            p.READ | p.NOTIFY,
            rd,
            CharacteristicValue(read=lambda _c: encode_status(self.status())),
        )
        chars = [self._ecg, self._backfill, self._racp, self._time, self._status, self._symptom]
        self.device.add_services(
            [
                Service(UUID(uuids.PATCH_SERVICE), chars),
                Service(
                    UUID.from_16_bits(0x180A),
                    [
                        Characteristic(UUID.from_16_bits(0x2A25), p.READ, rd, b"SIMPATCH0001"),
                        Characteristic(UUID.from_16_bits(0x2A26), p.READ, rd, b"1.0.0"),
                    ],
                ),
            ]
        )

    # --- clock and memory ----------------------------------------------------------------
    def _seq_now(self) -> int:
        return int((time.monotonic() - self._t0) * self.speed * FS)

    def device_time(self) -> DeviceTime:
        seq = self.next_seq
        return DeviceTime(self._us0 + int(seq * 1e6 / FS), seq)

    def _time_value(self) -> bytes:
        return self.device_time_bytes or encode_device_time(self.device_time())

    def status(self) -> PatchStatus:
        used = min(100, int(100 * min(self.next_seq, self.capacity) / self.capacity))
        return PatchStatus(self.battery_percent, self.lead_off, used, self.next_seq)

    def frame_limit(self) -> int:
        """Most samples a frame may carry on the current link: the ATT MTU in force decides
        (7 at the default 23, 119 at 247), as patch-gatt.md requires of a patch."""
        mtu = self._connection.att_mtu if self._connection is not None else 23
        return max(1, (mtu - _ATT_OVERHEAD - _FRAME_HEADER) // 2)

    async def set_lead_off(self, off: bool) -> None:
        """The electrodes lose (True) or regain contact: Status is notified at once and
        live frames carry the lead-off flag while it lasts."""
        self.lead_off = off
        await self._notify_status()

    async def set_battery(self, percent: int) -> None:
        """The battery charge changes: Status is notified."""
        self.battery_percent = percent
        await self._notify_status()

    async def _notify_status(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # the link went away: read on reconnect
                await self.device.notify_subscribers(self._status, encode_status(self.status()))

    @property
    def started_utc(self) -> float:
        """UTC (POSIX s) of sample 0 by the patch's own clock (its Device Time)."""
        return self._us0 / 1e6 + EPOCH_2000

    @property
    def oldest(self) -> int:
        return max(0, self.next_seq - self.capacity)

    async def _record(self) -> None:
        while True:
            due = self._seq_now()
            if due > self.next_seq:
                mv = self._synth.generate(due - self.next_seq)[:, 0]
                uv = (np.rint(mv.astype(np.float64) * 1000 / UV_PER_LSB) * UV_PER_LSB).astype(
                    np.int32
                )
                if due > self._recorded.size:
                    bigger = np.zeros(max(2 * self._recorded.size, due), dtype=np.int32)
                    bigger[: self.next_seq] = self._recorded[: self.next_seq]
                    self._recorded = bigger
                self._recorded[self.next_seq : due] = uv
                self.next_seq = due
            now = time.monotonic()
            if now < self._away_until:
                pass  # out of range: nobody can connect
            elif self._connection is None and now - self._advertised_at > _READVERTISE_S:
                # re-arm advertising while alone: a link torn down mid-setup can leave the
                # virtual controller's advertiser stopped (real patches re-arm too)
                self._advertised_at = now
                self._spawn(self._readvertise())
            await asyncio.sleep(self.frame_samples / FS / self.speed / 2)

    async def _readvertise(self) -> None:
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await self._advertise()

    # --- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        self._t0 = time.monotonic()
        self._us0 = int((time.time() - EPOCH_2000) * 1e6)
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)
        await self.device.power_on()
        self._recorder = asyncio.get_running_loop().create_task(self._record())
        await self._advertise()

    async def _advertise(self) -> None:
        self._advertised_at = time.monotonic()
        while not self._stopping and self._connection is None:
            if time.monotonic() < self._away_until:
                return  # out of range: the recorder re-arms advertising on return
            try:
                await self.device.start_advertising(advertising_interval_min=20.0)
                return
            except Exception as exc:  # the controller still tearing the last link down
                _LOGGER.warning("sim patch: advertising failed (%r); retrying", exc)
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stopping = True
        for t in (self._recorder, self._streamer):
            if t is not None:
                t.cancel()
        await self.disconnect()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        self.world.remove_device(self.device)

    async def __aenter__(self) -> SimPatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- hooks ------------------------------------------------------------------------------
    @property
    def recorded(self) -> np.ndarray:
        """Every sample recorded so far, µV, indexed by sample number (int32)."""
        return self._recorded[: self.next_seq]

    def set_speed(self, speed: float) -> None:
        """Change the simulated time rate from now on (sample numbers continue)."""
        now = time.monotonic()
        seq_now = (now - self._t0) * self.speed * FS
        self.speed = speed
        self._t0 = now - seq_now / (speed * FS)

    async def go_away(self, seconds: float) -> None:
        """The patient walks out of range for ``seconds`` of simulated time: the link drops,
        nobody can connect, the patch keeps recording; then it advertises again."""
        self._away_until = time.monotonic() + seconds / self.speed
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await self.disconnect()

    @property
    def connected(self) -> bool:
        """Whether a central is connected (the link is up)."""
        return self._connection is not None

    async def disconnect(self) -> None:
        await disconnect_bounded(self._connection)

    async def press_button(self) -> SymptomPress:
        """The patient presses the patch: notified now if a gateway listens, else kept and
        notified when one subscribes to Symptom (docs/protocols/patch-gatt.md)."""
        self.press_count += 1
        press = SymptomPress(self.press_count, self.next_seq, self.device_time().us_since_2000)
        self._unsent.append(press)
        await self._notify_presses()
        return press

    def _on_symptom_subscription(self, _bearer: object, notify: bool, _indicate: bool) -> None:
        if notify:
            self._spawn_on_link(self._notify_presses())

    async def _notify_presses(self) -> None:
        """Every kept press, oldest first, to a subscribed gateway (kept until then)."""
        await notify_kept(
            self.device, self._connection, self._symptom, self._unsent, encode_symptom
        )

    # --- link ---------------------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._live_from = self.next_seq  # live frames start now; the past is backfill
        self._streamer = asyncio.get_running_loop().create_task(self._stream())

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        if self._streamer is not None:
            self._streamer.cancel()
            self._streamer = None
        for task in self._link_tasks:  # backfills and indications of the dead link
            task.cancel()
        # a link loss ends the running backfill (patch-gatt.md), also one whose task was
        # cancelled before it ever ran (its finally never runs): else BUSY for ever
        self._running = None
        self._spawn(self._advertise())

    def _spawn_on_link(self, coro: object) -> None:
        """A task that lives only as long as the current connection."""
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._link_tasks.add(task)
        task.add_done_callback(self._link_tasks.discard)

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stream(self) -> None:
        try:
            while True:
                n = min(self.frame_samples, self.frame_limit())
                while self.next_seq - self._live_from >= n:
                    a = self._live_from
                    frame = encode_ecg_frame(a, self.recorded[a : a + n], lead_off=self.lead_off)
                    await self.device.notify_subscribers(self._ecg, frame)
                    self._live_from += n
                    self.frames_live += 1
                await asyncio.sleep(n / FS / self.speed / 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the link went away mid-send
            _LOGGER.debug("sim patch stream ended: %r", exc)

    # --- record access control point -------------------------------------------------------
    # Every answer as docs/protocols/patch-gatt.md's table says: one backfill at a time
    # (BUSY), an empty or inverted range INVALID, ABORT stops the running backfill (its
    # RANGE_DONE is ABORTED) or is INVALID 0, 0 when none runs, unknown or malformed
    # commands INVALID 0, 0, what is not held NOT_HELD with the range actually sent.
    def _on_racp(self, _connection: Connection, value: bytes) -> None:
        self.racp_commands.append(bytes(value))
        if self.on_racp is not None and self.on_racp(bytes(value)):
            return
        try:
            op, first, end = decode_racp_command(bytes(value))
        except PatchDecodeError:
            self._indicate(RacpResponse(RacpOp.RANGE_DONE, RacpStatus.INVALID, 0, 0))
            return
        if op == RacpOp.REPORT_EXTENT:
            extent = RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, self.oldest, self.next_seq)
            self._indicate(extent)
        elif op == RacpOp.ABORT:
            if self._running is None:
                self._indicate(RacpResponse(RacpOp.RANGE_DONE, RacpStatus.INVALID, 0, 0))
            else:
                self._abort = True  # the running backfill answers for both commands
        elif first >= end:
            self._indicate(RacpResponse(RacpOp.RANGE_DONE, RacpStatus.INVALID, first, first))
        elif self._running is not None:
            self._indicate(RacpResponse(RacpOp.RANGE_DONE, RacpStatus.BUSY, first, first))
        else:
            self._running, self._abort = (first, end), False
            self._spawn_on_link(self._send_range(first, end))

    def answer(self, r: RacpResponse) -> None:
        """Test hook: indicate any RACP answer now."""
        self._indicate(r)

    async def send(self, uuid: str, data: bytes) -> None:
        """Test hook: notify any bytes on the ECG, Backfill, Symptom or Status
        characteristic (``uuid``), as a misbehaving patch would."""
        chars = {uuids.PATCH_ECG: self._ecg, uuids.PATCH_BACKFILL: self._backfill,
                 uuids.PATCH_SYMPTOM: self._symptom, uuids.PATCH_STATUS: self._status}  # fmt: skip
        await self.device.notify_subscribers(chars[uuid], data)

    def _indicate(self, r: RacpResponse) -> None:
        self._spawn_on_link(self.device.indicate_subscribers(self._racp, encode_racp_response(r)))

    async def _send_range(self, first: int, end: int) -> None:
        a, b = max(first, self.oldest), min(end, self.next_seq)
        sent = a  # samples [a, sent) sent so far
        try:
            while sent < b and not self._abort:
                k = min(sent + min(_BACKFILL_SAMPLES, self.frame_limit()), b)
                frame = encode_ecg_frame(sent, self.recorded[sent:k], backfill=True)
                await self.device.notify_subscribers(self._backfill, frame)
                self.frames_backfill += 1
                sent = k
                if self.backfill_frame_delay_s:
                    await asyncio.sleep(self.backfill_frame_delay_s)
            if self._abort:
                status = RacpStatus.ABORTED
            elif (a, b) == (first, end):
                status = RacpStatus.SUCCESS
            else:
                status = RacpStatus.NOT_HELD
            done = (a, sent) if sent > a else (first, first)  # nothing sent: first, first
            self._running = None  # the answer may be followed by the next request at once
            answer = RacpResponse(RacpOp.RANGE_DONE, status, *done)
            await self.device.indicate_subscribers(self._racp, encode_racp_response(answer))
        except Exception as exc:  # disconnected mid-backfill: abort silently
            _LOGGER.debug("sim patch backfill ended: %r", exc)
        finally:
            self._running = None
