"""A Polar-PMD-class ECG chest device, written from ``docs/protocols/polar-pmd.md`` alone.

Clean room: nothing here comes from the gateway's drivers or the project's own simulator;
every byte layout, UUID and behaviour is the document's. The device is a bumble GATT
server on a :class:`sim.bumble_backend.SimBleWorld` (the virtual air), so the real gateway
driver can connect to it over its bleak backend.

What it does, as the document requires ("Minimal device" and the sections it sums up):

- advertises connectably (flags, the PMD service UUID, its name in the scan response) with a
  static random address whenever no gateway is connected, every 20 ms (the document sets no
  interval; bumble's default, 1 s, would add up to 1 s to every reconnection);
- PMD service: control point (write with response + indicate), data (notify); Heart Rate
  Measurement (notify), Battery Level (read + notify), Device Information (four strings,
  read), the symptom button (notify), each optional and each UUID once;
- START ECG ``02 00 00 01 82 00 01 01 0e 00`` answered ``f0 02 00 <status> 00`` by one
  indication after the Write Response; STOP ``03 00`` answered ``f0 03 00 00 00``
  (``06`` when not streaming); any other command ``f0 <op> 00 01 00`` (INVALID_OP_CODE);
- ECG frames ``00 | u64 ns since 2000 of the last sample | 00 | n x int24 µV`` at 130 Hz in
  real time, ``n`` sized by the connection's ATT MTU (``10 + 3n <= MTU - 3``), every sample
  once, sent as soon as its last sample is taken, from a sample clock that runs from power-on
  and is never stepped (timestamps of consecutive frames differ by ``n x 10⁹/130`` ns);
- stops streaming on STOP and on link loss; streams its *current* samples on the next START;
- Heart Rate Measurement with skin contact and the RR interval (1/1024 s) of every beat
  exactly once, a notification right at a beat, about once a second, a new connection
  starting with the beats after it;
- the symptom button: 13 bytes, version 1, press counter, device time of the press on the
  ECG clock; a press made while no gateway listens is kept and notified once after the next
  connection's subscription (the document allows it).

Test hooks (the misbehaviours the document discusses): :meth:`drop_frames` (lost in the
air), :meth:`disconnect` (link loss, away for a while), :meth:`restart` (power cycle: the
clock goes back), ``start_status`` (refuse START), ``answer_start`` (never answer it),
:attr:`silent` (stream nothing), :meth:`mangle_next_frame`, :attr:`mangle_all` and
:meth:`inject` (malformed values), ``max_mtu`` / ``frame_sizes`` (frame sizes), and a few
more (``timestamp_offsets``, ``clock_steps``, ATT errors, no answers) set as attributes.

Every frame made is logged in :attr:`frames` (delivered or not) so that a test can predict
the gateway's exact sample numbering; every GATT operation of the gateway in :attr:`ops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bumble.att import ATT_Error, ErrorCode
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import (
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    Characteristic,
    CharacteristicValue,
    Descriptor,
    Service,
)

from sim.bumble_backend import SimBleWorld, disconnect_bounded

__all__ = [
    "BUTTON",
    "BUTTON_SERVICE",
    "EPOCH_2000_POSIX",
    "FS",
    "PMD_CP",
    "PMD_DATA",
    "PMD_SERVICE",
    "START_ECG",
    "STOP_ECG",
    "CleanPolarDevice",
    "FrameLog",
    "PressLog",
    "sample_value_uv",
]

_LOGGER = logging.getLogger(__name__)

# --- the document's constants ---------------------------------------------------------------
PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CP = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
BUTTON_SERVICE = "c2360001-8ad6-4484-a212-d9b0c62eba76"
BUTTON = "c2360002-8ad6-4484-a212-d9b0c62eba76"
HR_SERVICE, HR_MEASUREMENT = 0x180D, 0x2A37
BATTERY_SERVICE, BATTERY_LEVEL = 0x180F, 0x2A19
DIS_SERVICE = 0x180A
MANUFACTURER, MODEL, SERIAL, FIRMWARE = 0x2A29, 0x2A24, 0x2A25, 0x2A26

START_ECG = bytes.fromhex("02 00 00 01 82 00 01 01 0e 00")
STOP_ECG = bytes.fromhex("03 00")
OP_START, OP_STOP = 0x02, 0x03
STATUS_SUCCESS, STATUS_INVALID_OP_CODE, STATUS_ALREADY_IN_STATE = 0, 1, 6

FS = 130
"""Samples per second."""
EPOCH_2000_POSIX = 946_684_800
"""2000-01-01T00:00:00Z as POSIX seconds (device time is ns since then)."""
DEFAULT_CLOCK_NS = 802_094_400_000_000_000
"""Device time of the first sample after power-on: 2025-06-01T12:00:00Z (the doc's example)."""
ADV_INTERVAL_MS = 20
RR_1024 = 768
"""The simulated heart's RR interval, 1/1024 s (0.75 s, 80 bpm)."""


def sample_ns(k: int) -> int:
    """Device-clock offset of sample ``k`` after power-on: round(k x 10⁹/130) ns."""
    return (k * 10**9 + FS // 2) // FS


def sample_value_uv(a: int) -> int:
    """The µV value of absolute sample ``a``: unique over 20 000 samples (2.5 min), small
    enough (|v| <= 10 mV) that µV/1000 in float32 gives the µV back exactly."""
    return (a * 7919 + 12345) % 20000 - 10000


def int24(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "little")


def ecg_frame(timestamp_ns: int, values_uv: list[int], frame_type: int = 0) -> bytes:
    """``00 | u64 timestamp | frame type | n x int24``."""
    return struct.pack("<BQB", 0, timestamp_ns, frame_type) + b"".join(map(int24, values_uv))


def max_samples(mtu: int) -> int:
    """Samples per frame the MTU allows: 10 + 3n <= MTU - 3."""
    return (mtu - 13) // 3


@dataclass
class FrameLog:
    """One ECG frame the device made (``kind``: ``sent``, ``dropped`` in the air, ``silent``
    (not sent), ``mangled`` (sent malformed))."""

    index: int
    boot: int
    first_a: int
    """Absolute sample number (since the device object's first power-on) of its first sample."""
    n: int
    timestamp_ns: int
    kind: str
    conn: int
    at: float
    """Wall clock (``time.time()``) when it was due (and sent, unless dropped)."""
    values: list[int] = field(repr=False, default_factory=list)

    @property
    def end_a(self) -> int:
        return self.first_a + self.n

    @property
    def delivered(self) -> bool:
        return self.kind == "sent"


@dataclass
class PressLog:
    press_id: int
    a: int
    """Absolute sample number at whose instant the press is dated."""
    device_time_ns: int
    notified_conn: int | None = None


class CleanPolarDevice:
    """The simulated device. ``await start()`` powers it on and advertises."""

    def __init__(
        self,
        world: SimBleWorld,
        *,
        name: str = "Polar H10 CR01",
        heart_rate: bool = True,
        battery: int | None = 87,
        battery_notify: bool = True,
        device_info: dict[int, str | bytes] | None = None,
        button: bool = True,
        max_mtu: int | None = None,
        max_frame_samples: int | None = None,
        frame_sizes: Callable[[int], int] | None = None,
        clock_ns: int = DEFAULT_CLOCK_NS,
        keep_presses: bool = True,
        pmd: bool = True,
        button_cccd_error: int | None = None,
    ) -> None:
        self.world = world
        self.address = world.new_address(0xC4)
        self.name = name
        self.device: Device = world.new_device(name, self.address)
        if max_mtu is not None:
            self.device.gatt_server.max_mtu = max_mtu
        self.max_frame_samples = max_frame_samples
        self.frame_sizes = frame_sizes
        self.clock_ns0 = clock_ns
        self.keep_presses = keep_presses

        # test hooks ----------------------------------------------------------------------
        self.start_status = STATUS_SUCCESS
        """Status START is answered with (0 SUCCESS, 6 ALREADY_IN_STATE, else a refusal)."""
        self.start_statuses: list[int] = []
        """When not empty: the statuses of the next STARTs, one each (then ``start_status``)."""
        self.answer_start = True
        """False: START is accepted (Write Response) but never answered."""
        self.cp_before_answer: list[bytes] = []
        """Raw control point indications sent before the answer to START (then cleared)."""
        self.first_frame_delay_s = 0.0
        """A pause after START before the stream begins (its samples are not sent)."""
        self.silent = False
        """True: frames fall due but are not sent (the samples are lost)."""
        self.mangle_all: Callable[[bytes], bytes] | None = None
        """When set, every frame is sent as ``mangle_all(its bytes)`` (malformed)."""
        self.short_answers = False
        """True: control point answers of 4 bytes (no "more" flag), the shortest allowed."""
        self.answer_before_response = False
        """True: the answer is indicated before the Write Response (the document allows it)."""
        self.cp_write_error: int | None = None
        """An ATT error code every control point write is answered with."""
        self.battery_read_error: int | None = None
        """An ATT error code every Battery Level read is answered with."""
        self.battery_read_hangs = False
        """True: a Battery Level read is never answered."""
        self.timestamp_offsets: dict[int, int] = {}
        """Frame index -> ns added to that frame's timestamp only (an absurd timestamp)."""
        self.frame_values: dict[int, list[int]] = {}
        """Frame index -> its µV values (as many as the frame has samples) instead of the
        usual ones."""
        self.clock_steps: dict[int, int] = {}
        """Frame index -> ns the clock is stepped by from that frame on (what MUST NOT be)."""
        self._drop: set[int] = set()
        self._mangle: list[Callable[[bytes], bytes]] = []

        # logs ----------------------------------------------------------------------------
        self.frames: list[FrameLog] = []
        self.ops: list[tuple[str, str]] = []
        """GATT operations of the gateway, in order: (``subscribe``|``read``|``write``, what)."""
        self.op_at: list[float] = []
        """When each of :attr:`ops` happened (``time.time()``)."""
        self.commands: list[bytes] = []
        self.cp_answers: list[bytes] = []
        self.presses: list[PressLog] = []
        self.hr_sent: list[tuple[int, list[int]]] = []
        """(connection number, RR intervals 1/1024 s) of every HR notification sent."""
        self.hr_beats: list[tuple[int, int]] = []
        """(connection number, beat index) of each beat whose interval was notified."""
        self.connections = 0
        self.boot = 0

        # state ---------------------------------------------------------------------------
        self.connection: Connection | None = None
        self.streaming = False
        self._stream_gen = 0
        self._next_a = 0
        self._press_counter = 0
        self._pending_presses: list[PressLog] = []
        self._away_until = 0.0
        self._powered = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stream_task: asyncio.Task[None] | None = None
        self._hr_task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._t_origin = self._loop.time()  # absolute sample 0 is taken now
        self._boot_a = 0
        self._clock_ns = clock_ns
        self._hr_origin = self._t_origin
        self._last_hr_beat: int | None = None

        self.battery = battery
        self.battery_bytes: bytes | None = None
        """When set, what a read of the Battery Level returns instead of the level."""
        self.device_info = (
            {MANUFACTURER: "Polar Electro Oy", MODEL: "H10", SERIAL: "CR0001", FIRMWARE: "5.0.0"}
            if device_info is None
            else device_info
        )
        self._build_gatt(
            pmd, heart_rate, battery is not None, battery_notify, button, button_cccd_error
        )
        self.device.on("connection", self._on_connection)
        self.device.on("characteristic_subscription", self._on_subscription)

    # --- GATT database ------------------------------------------------------------------------
    def _build_gatt(
        self,
        pmd: bool,
        heart_rate: bool,
        battery: bool,
        battery_notify: bool,
        button: bool,
        button_cccd_error: int | None,
    ) -> None:
        notify, indicate = Characteristic.Properties.NOTIFY, Characteristic.Properties.INDICATE
        read, write = Characteristic.Properties.READ, Characteristic.Properties.WRITE
        readable, writeable = Characteristic.READABLE, Characteristic.WRITEABLE
        self.cp = Characteristic(
            PMD_CP,
            write | indicate,
            readable | writeable,
            CharacteristicValue(write=self._on_cp_write),
        )
        self.data = Characteristic(PMD_DATA, notify, readable, b"")
        if pmd:  # (False: a device without the required service)
            self.device.add_service(Service(PMD_SERVICE, [self.cp, self.data]))
        self.hrm: Characteristic | None = None
        if heart_rate:
            self.hrm = Characteristic(UUID.from_16_bits(HR_MEASUREMENT), notify, readable, b"")
            self.device.add_service(Service(UUID.from_16_bits(HR_SERVICE), [self.hrm]))
        self.battery_char: Characteristic | None = None
        if battery:
            props = read | notify if battery_notify else read
            self.battery_char = Characteristic(
                UUID.from_16_bits(BATTERY_LEVEL),
                props,
                readable,
                CharacteristicValue(read=self._read_battery),
            )
            self.device.add_service(
                Service(UUID.from_16_bits(BATTERY_SERVICE), [self.battery_char])
            )
        if self.device_info:
            chars = [
                Characteristic(
                    UUID.from_16_bits(uuid16),
                    read,
                    readable,
                    CharacteristicValue(read=lambda _c, u=uuid16: self._read_info(u)),
                )
                for uuid16 in self.device_info
            ]
            self.device.add_service(Service(UUID.from_16_bits(DIS_SERVICE), chars))
        self.button_char: Characteristic | None = None
        if button:
            descriptors = []
            if button_cccd_error is not None:  # present, but cannot be subscribed to
                descriptors.append(
                    Descriptor(
                        GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                        readable | writeable,
                        CharacteristicValue(
                            read=lambda _c: bytes(2),
                            write=lambda _c, _v: self._refuse(button_cccd_error),
                        ),
                    )
                )
            self.button_char = Characteristic(BUTTON, notify, readable, b"", descriptors)
            self.device.add_service(Service(BUTTON_SERVICE, [self.button_char]))

    def _refuse(self, error: int) -> None:
        self._op("refuse", f"{error:#04x}")
        raise ATT_Error(error)

    def _op(self, kind: str, what: str) -> None:
        self.ops.append((kind, what))
        self.op_at.append(time.time())

    def _name_of(self, characteristic: Any) -> str:
        names = {
            id(self.cp): "pmd_cp",
            id(self.data): "pmd_data",
            id(self.hrm): "heart_rate",
            id(self.battery_char): "battery",
            id(self.button_char): "button",
        }
        return names.get(id(characteristic), str(getattr(characteristic, "uuid", "?")))

    def _read_battery(self, _connection: Connection) -> Any:
        self._op("read", "battery")
        if self.battery_read_error is not None:
            raise ATT_Error(self.battery_read_error)
        if self.battery_read_hangs:
            return asyncio.Event().wait()  # (bumble awaits it: no answer, ever)
        if self.battery_bytes is not None:
            return self.battery_bytes
        return bytes([self.battery or 0])

    def _read_info(self, uuid16: int) -> bytes:
        self._op("read", f"{uuid16:#06x}")
        value = self.device_info[uuid16]
        return value.encode() if isinstance(value, str) else value

    # --- power and advertising ---------------------------------------------------------------
    async def start(self) -> None:
        """Power on (the sample clock starts now) and advertise."""
        await self.device.power_on()
        self._powered = True
        self._boot(self._loop.time())
        await self._advertise()

    def _boot(self, now: float) -> None:
        self.boot += 1
        self._boot_a = self.abs_sample_now(now) + 1
        self._clock_ns = self.clock_ns0
        self._hr_origin = now
        self._last_hr_beat = None

    async def _advertise(self) -> None:
        if not self._powered or self.connection is not None:
            return
        adv = AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
                (
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    UUID(PMD_SERVICE).to_bytes(force_128=True),
                ),
            ]
        )
        scan = AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode())])
        # every 20 ms (the shortest connectable interval): a connection attempt waits at most
        # that long for the device (bumble's default, 1 s, would hide the gateway's delays)
        await self.device.start_advertising(
            advertising_data=bytes(adv),
            scan_response_data=bytes(scan),
            advertising_interval_min=ADV_INTERVAL_MS,
            advertising_interval_max=ADV_INTERVAL_MS,
        )

    async def _advertise_later(self) -> None:
        delay = self._away_until - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # (a stop while away: no advertising any more)
        try:
            await self._advertise()
        except Exception:  # the device may be stopping
            _LOGGER.debug("advertise failed", exc_info=True)

    async def stop(self) -> None:
        """Power off for good: end the link, stop every task."""
        self._powered = False
        self.streaming = False
        # an HCI command cancelled half-way would leave bumble's host waiting for its answer:
        # a (re)start of advertising under way is let finish, everything else is cancelled
        advertising = [t for t in self._tasks if t.get_name() == "advertise"]
        for task in list(self._tasks):
            if task not in advertising:
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(5):
                    await task
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await disconnect_bounded(self.connection)
        self.world.remove_device(self.device)

    def _spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- connection --------------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self.connections += 1
        self._op("connect", str(self.connections))
        connection.on("disconnection", lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        if self.connection is not connection:
            return
        self._op("disconnect", str(self.connections))
        self.connection = None
        self._stop_stream()  # the device MUST stop streaming when the link drops
        if self._hr_task is not None:
            self._hr_task.cancel()
            self._hr_task = None
        self._spawn(self._advertise_later(), name="advertise")

    def _subscribed(self, characteristic: Any, bit: int = 0x01) -> bool:
        """Whether the gateway enabled ``bit`` of this characteristic's CCCD on this link."""
        conn = self.connection
        if conn is None or characteristic is None:
            return False
        cccd = self.device.gatt_server.subscribers.get(conn, {}).get(characteristic.handle)
        return bool(cccd) and bool(cccd[0] & bit)

    def _on_subscription(
        self, _bearer: Any, characteristic: Any, notify: bool, indicate: bool
    ) -> None:
        what = "notify" if notify else "indicate" if indicate else "off"
        self._op("subscribe", f"{self._name_of(characteristic)}:{what}")
        if characteristic is self.button_char and notify and self._pending_presses:
            self._spawn(self._flush_presses())
        if characteristic is self.hrm and notify and self._hr_task is None:
            self._hr_task = self._spawn(self._hr_loop())

    async def disconnect(self, away_s: float = 0.0) -> None:
        """The link drops (the device ends it, as a link loss); the device does not advertise
        again for ``away_s``."""
        self._away_until = self._loop.time() + away_s
        await disconnect_bounded(self.connection)

    async def restart(self, off_s: float = 0.5) -> None:
        """Power cycle: the link drops, the device is off for ``off_s``, then boots with its
        clock reset to its power-on value (back by the whole time it has run)."""
        self._away_until = self._loop.time() + off_s
        await disconnect_bounded(self.connection)
        await asyncio.sleep(max(0.0, self._away_until - self._loop.time()))
        self._boot(self._loop.time())

    # --- the sample clock --------------------------------------------------------------------
    def abs_sample_now(self, now: float | None = None) -> int:
        """The absolute number of the latest sample taken (sample a is taken at origin + a/fs)."""
        now = self._loop.time() if now is None else now
        return int((now - self._t_origin) * FS)

    def timestamp_of(self, a: int) -> int:
        """Device time (ns since 2000) of absolute sample ``a`` in the current boot."""
        return self._clock_ns + sample_ns(a - self._boot_a)

    def device_time_posix(self, device_ns: int) -> float:
        return device_ns / 1e9 + EPOCH_2000_POSIX

    # --- the control point ---------------------------------------------------------------------
    def _on_cp_write(self, connection: Connection, value: bytes) -> Any:
        value = bytes(value)
        self.commands.append(value)
        self._op("write", value.hex(" "))
        if self.cp_write_error is not None:
            raise ATT_Error(self.cp_write_error)
        if len(value) < 2:
            raise ATT_Error(ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        op = value[0]
        if value == START_ECG:
            status = self.start_statuses.pop(0) if self.start_statuses else self.start_status
            if status in (STATUS_SUCCESS, STATUS_ALREADY_IN_STATE):
                status = STATUS_ALREADY_IN_STATE if self.streaming else status
                if not self.streaming:
                    self._start_stream(connection)
            if not self.answer_start:
                return None
            pre, self.cp_before_answer = self.cp_before_answer, []
            answers = [*pre, self._response(op, status)]
        elif value == STOP_ECG:
            status = STATUS_SUCCESS if self.streaming else STATUS_ALREADY_IN_STATE
            self._stop_stream()
            answers = [self._response(op, status)]
        else:
            answers = [self._response(op, STATUS_INVALID_OP_CODE, value[1])]
        if self.answer_before_response:  # (awaited before the Write Response goes out)
            return self._answer(connection, answers)
        self._spawn(self._answer(connection, answers))
        return None

    def _response(self, op: int, status: int, measurement: int = 0) -> bytes:
        """``f0 | op | measurement | status | more = 0`` (4 bytes if :attr:`short_answers`)."""
        return bytes([0xF0, op, measurement, status, 0])[: 4 if self.short_answers else 5]

    async def _answer(self, connection: Connection, values: list[bytes]) -> None:
        """Indications on the control point."""
        if not self.answer_before_response:
            await asyncio.sleep(0)  # after the Write Response has gone out
        for value in values:
            if connection is not self.connection:
                return
            self.cp_answers.append(value)
            try:
                await self.device.indicate_subscriber(connection, self.cp, value)
            except Exception:  # the link went down meanwhile
                _LOGGER.debug("indication failed", exc_info=True)
                return

    # --- ECG streaming -------------------------------------------------------------------------
    def _start_stream(self, connection: Connection) -> None:
        self.streaming = True
        self._stream_gen += 1
        # "its current samples": from the next sample to be taken (after an optional pause)
        delay_samples = round(self.first_frame_delay_s * FS)
        self._next_a = self.abs_sample_now() + 1 + delay_samples
        self._stream_task = self._spawn(self._stream(connection, self._stream_gen))

    def _stop_stream(self) -> None:
        self.streaming = False
        self._stream_gen += 1
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    def frame_size(self, index: int) -> int:
        mtu = self.connection.att_mtu if self.connection is not None else 23
        n = max_samples(mtu)
        if self.max_frame_samples is not None:
            n = min(n, self.max_frame_samples)
        if self.frame_sizes is not None:
            n = min(n, self.frame_sizes(index))
        return max(1, n)

    def drop_frames(self, count: int = 1, *, after: int = 0) -> list[int]:
        """The ``count`` frames after the next ``after`` ones are lost in the air (their
        samples never reach the gateway). Returns their indices in :attr:`frames`."""
        first = len(self.frames) + after
        indices = list(range(first, first + count))
        self._drop.update(indices)
        return indices

    def mangle_next_frame(self, transform: Callable[[bytes], bytes]) -> None:
        """The next frame is sent as ``transform(its bytes)`` (malformed: its samples lost)."""
        self._mangle.append(transform)

    async def _stream(self, connection: Connection, gen: int) -> None:
        while self.streaming and self._stream_gen == gen:
            index = len(self.frames)
            n = self.frame_size(index)
            first_a = self._next_a
            last_a = first_a + n - 1
            due = self._t_origin + last_a / FS  # the frame's last sample is taken then
            await asyncio.sleep(max(0.0, due - self._loop.time()))
            if not (self.streaming and self._stream_gen == gen) or self.connection is None:
                return
            self._clock_ns += self.clock_steps.get(index, 0)
            ts = self.timestamp_of(last_a) + self.timestamp_offsets.get(index, 0)
            values = self.frame_values.get(index) or [
                sample_value_uv(a) for a in range(first_a, last_a + 1)
            ]
            assert len(values) == n
            raw = ecg_frame(ts, values)
            if index in self._drop:
                kind = "dropped"
            elif self.silent:
                kind = "silent"
            elif self._mangle:
                kind, raw = "mangled", self._mangle.pop(0)(raw)
            elif self.mangle_all is not None:
                kind, raw = "mangled", self.mangle_all(raw)
            else:
                kind = "sent"
            self.frames.append(
                FrameLog(
                    index, self.boot, first_a, n, ts, kind, self.connections, time.time(), values
                )
            )
            self._next_a = last_a + 1
            if kind in ("sent", "mangled"):
                await self.device.notify_subscriber(connection, self.data, raw)

    async def inject(self, what: str, value: bytes) -> None:
        """A raw notification (indication for ``pmd_cp``) of ``value`` on ``what``
        (``pmd_data``, ``pmd_cp``, ``heart_rate``, ``battery``, ``button``)."""
        char = {
            "pmd_data": self.data,
            "pmd_cp": self.cp,
            "heart_rate": self.hrm,
            "battery": self.battery_char,
            "button": self.button_char,
        }[what]
        conn = self.connection
        if conn is None or char is None:
            raise RuntimeError(f"cannot send {what}: not connected or not present")
        if what == "pmd_cp":
            await self.device.indicate_subscriber(conn, char, value)
        else:
            await self.device.notify_subscriber(conn, char, value)

    # --- Heart Rate ----------------------------------------------------------------------------
    def beat_time(self, j: int) -> float:
        return self._hr_origin + j * RR_1024 / 1024

    async def _hr_loop(self) -> None:
        """While the gateway listens: at a beat at least 1 s after the previous notification,
        notify the RR intervals of the beats since then (on a new connection: from the first
        beat after the subscription)."""
        try:
            conn = self.connection
            j = int((self._loop.time() - self._hr_origin) * 1024 / RR_1024) + 1
            first = j  # the first beat whose interval this connection carries
            last_sent_time = -1e9
            while self.connection is conn and conn is not None:
                await asyncio.sleep(max(0.0, self.beat_time(j) - self._loop.time()))
                if self.connection is not conn:
                    return
                if self.beat_time(j) - last_sent_time >= 1.0 - 1e-6:
                    beats = list(range(first, j + 1))
                    rr = [RR_1024] * len(beats)
                    value = bytes([0x16, 80]) + b"".join(struct.pack("<H", r) for r in rr)
                    if self._subscribed(self.hrm):
                        self.hr_sent.append((self.connections, rr))
                        self.hr_beats.extend((self.connections, b) for b in beats)
                        await self.device.notify_subscriber(conn, self.hrm, value)
                        last_sent_time = self.beat_time(j)
                        first = j + 1
                j += 1
        finally:
            self._hr_task = None

    # --- Battery -------------------------------------------------------------------------------
    async def set_battery(self, percent: int) -> None:
        self.battery = percent
        if self._subscribed(self.battery_char) and self.connection is not None:
            await self.device.notify_subscriber(
                self.connection, self.battery_char, bytes([percent])
            )

    # --- the symptom button --------------------------------------------------------------------
    def press_value(self, press: PressLog, version: int = 1) -> bytes:
        return struct.pack("<BIQ", version, press.press_id, press.device_time_ns)

    async def press(self, *, at_a: int | None = None) -> PressLog:
        """The patient presses the button now (dated at the instant of the latest sample
        taken, or of absolute sample ``at_a``); notified now, or after the next connection's
        subscription when no gateway listens."""
        a = self.abs_sample_now() if at_a is None else at_a
        self._press_counter = (self._press_counter + 1) & 0xFFFFFFFF
        press = PressLog(self._press_counter, a, self.timestamp_of(a))
        self.presses.append(press)
        if self._subscribed(self.button_char):
            await self._notify_press(press)
        elif self.keep_presses:
            self._pending_presses.append(press)
        return press

    async def _notify_press(self, press: PressLog) -> None:
        assert self.connection is not None and self.button_char is not None
        press.notified_conn = self.connections
        await self.device.notify_subscriber(
            self.connection, self.button_char, self.press_value(press)
        )

    async def _flush_presses(self) -> None:
        await asyncio.sleep(0)
        while self._pending_presses and self._subscribed(self.button_char):
            await self._notify_press(self._pending_presses.pop(0))
