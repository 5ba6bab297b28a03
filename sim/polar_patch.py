"""A simulated BLE chest patch: a bumble GATT server on a :class:`SimBleWorld`.

It looks like a Polar H10 with our symptom button added:

* Polar PMD (control point read/write/indicate, data notify). After a START
  ECG command it streams synthetic ECG (:class:`sim.synth.EcgSynth`)
  as PMD frames of ``samples_per_frame`` samples (73 like an H10; fewer when the
  connection's ATT MTU cannot carry them), paced by a
  simulated device clock that runs ``speed`` times faster than the wall clock.
  Streaming stops on STOP or when the link drops; a new START resumes at the
  device clock's current time, so the samples missed meanwhile show as a jump
  in PMD timestamps (PMD has no backfill).
* Heart Rate (0x180D): a measurement notification about once per (simulated)
  second while streaming.
* Battery (0x180F): readable and notified when :meth:`SimBlePatch.set_battery`
  changes it.
* Device Information (0x180A): manufacturer, model, serial, firmware.
* ecg-gateway patch event service: :meth:`SimBlePatch.press_button` notifies a
  :class:`drivers.gatt_standard.ButtonPress`; a press made while no gateway listens is
  kept and notified when one subscribes again.

Test hooks: :meth:`disconnect` drops the link (the patch re-advertises),
:meth:`stall` silently stops the ECG stream (the link stays up),
:meth:`corrupt_next_frame` sends one malformed PMD notification before the
next frame (the frame itself still follows, so no samples are lost),
:meth:`drop_frames` loses frames in the air, :meth:`skew_next_timestamp` sends one
absurd timestamp, :attr:`frame_sizes` varies the samples per frame, and
:attr:`sent` records every ECG sample the patch sent, indexed by its sample
number on the device clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

import numpy as np
from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from core.units import EPOCH_2000
from drivers import uuids
from drivers.gatt_standard import (
    ButtonPress,
    HeartRateMeasurement,
    encode_battery_level,
    encode_button_press,
    encode_heart_rate_measurement,
)
from drivers.polar_pmd import (
    PmdMeasurement,
    PmdOp,
    PmdSetting,
    PmdStatus,
    encode_ecg_frame,
)
from sim.bumble_backend import SimBleWorld, disconnect_bounded, notify_kept
from sim.synth import EcgSynth

__all__ = ["SimBlePatch"]

_LOGGER = logging.getLogger(__name__)

FS = 130
_FEATURES = bytes([0x0F, 1 << PmdMeasurement.ECG, 0x00])
_ECG_SETTINGS = bytes([PmdSetting.SAMPLE_RATE, 1, FS, 0, PmdSetting.RESOLUTION, 1, 14, 0])


class SimBlePatch:
    """A virtual chest patch. ``await start()`` then connect to :attr:`address`.

    Parameters
    ----------
    world
        The virtual radio space shared with the gateway's bleak backend.
    speed
        Simulated device clock rate relative to the wall clock (10 = 10x faster).
    samples_per_frame
        ECG samples per PMD notification (H10: 73 at MTU 232+).
    hr_bpm
        Heart rate of the synthetic ECG and of the HR notifications.
    battery_percent
        Initial battery level.
    clock
        Wall clock (POSIX seconds) that sets the device clock at start.
    """

    def __init__(
        self,
        world: SimBleWorld,
        *,
        name: str = "Polar H10 SIM",
        speed: float = 1.0,
        samples_per_frame: int = 73,
        hr_bpm: float = 72.0,
        battery_percent: int = 87,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.world = world
        self.name = name
        self.speed = float(speed)
        self.samples_per_frame = samples_per_frame
        self.hr_bpm = hr_bpm
        self.address = world.new_address(0xF0)
        self.press_count = 0
        self._unsent: list[ButtonPress] = []  # presses no gateway has been notified of
        self.frames_sent = 0
        self.rr_sent: list[tuple[float, float]] = []
        """Every RR interval sent by the Heart Rate service: (beat time s, RR s)."""
        self._hr_t: float | None = None
        self.commands: list[bytes] = []
        """Every control point write received, in order."""
        self.sent: dict[int, float] = {}
        """Every ECG sample sent: device sample number -> value in mV (as quantized, µV/1000)."""
        self._battery = battery_percent
        self.synth = EcgSynth(FS, ["ECG"], hr_bpm=hr_bpm, seed=seed)
        """The ECG generator; its R-peak times feed the Heart Rate service."""
        self._clock = clock
        self._t0_wall = 0.0
        self._t0_device_ns = 0
        self._next_sample = 0  # synth position, device sample number
        self._corrupt_pending = 0
        self._drop_pending = 0
        self._skew_ns: list[int] = []
        self.frame_sizes: list[int] | None = None
        """Samples per frame, cycled (an H10 sends 5 to 73 when the link is busy); None:
        ``samples_per_frame`` always."""
        self._size_i = 0
        self.dropped: list[tuple[int, int]] = []
        """Device sample ranges of frames generated but never notified (:meth:`drop_frames`)."""
        self.skewed: list[tuple[int, int]] = []
        """Device sample ranges of frames sent with an absurd timestamp."""
        self._stopping = False
        self._connection: Connection | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.device: Device = world.new_device(name, self.address)
        self._build_gatt()

    # --- GATT database ----------------------------------------------------------
    def _build_gatt(self) -> None:
        props = Characteristic.Properties
        self._cp = Characteristic(
            UUID(uuids.PMD_CONTROL_POINT),
            props.READ | props.WRITE | props.INDICATE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=lambda _c: _FEATURES, write=self._on_cp_write),
        )
        self._data = Characteristic(
            UUID(uuids.PMD_DATA), props.NOTIFY, Characteristic.READABLE, b""
        )
        self._hrm = Characteristic(
            UUID.from_16_bits(0x2A37), props.NOTIFY, Characteristic.READABLE, b""
        )
        self._battery_char = Characteristic(
            UUID.from_16_bits(0x2A19),
            props.READ | props.NOTIFY,
            Characteristic.READABLE,
            CharacteristicValue(read=lambda _c: encode_battery_level(self._battery)),
        )
        self._button = Characteristic(
            UUID(uuids.PATCH_BUTTON), props.NOTIFY, Characteristic.READABLE, b""
        )
        self._button.on(self._button.EVENT_SUBSCRIPTION, self._on_button_subscription)

        def text(short: int, value: str) -> Characteristic:
            return Characteristic(
                UUID.from_16_bits(short), props.READ, Characteristic.READABLE, value.encode()
            )

        self.device.add_services(
            [
                Service(UUID(uuids.PMD_SERVICE), [self._cp, self._data]),
                Service(UUID.from_16_bits(0x180D), [self._hrm]),
                Service(UUID.from_16_bits(0x180F), [self._battery_char]),
                Service(
                    UUID.from_16_bits(0x180A),
                    [
                        text(0x2A29, "ecg-gateway simulator"),
                        text(0x2A24, "SIM-PATCH"),
                        text(0x2A25, self.address.replace(":", "")),
                        text(0x2A26, "1.0.0"),
                    ],
                ),
                Service(UUID(uuids.PATCH_EVENT_SERVICE), [self._button]),
            ]
        )

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Power on and advertise (connectable)."""
        self._t0_wall = time.monotonic()
        self._t0_device_ns = round((self._clock() - EPOCH_2000) * 1e9)
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)
        await self.device.power_on()
        await self._advertise()

    async def _advertise(self) -> None:
        if not self._stopping:
            await self.device.start_advertising(advertising_interval_min=20.0)

    async def stop(self) -> None:
        """Stop streaming, drop any link and leave the air."""
        self._stopping = True
        self._stop_stream()
        await self.disconnect()
        if self._tasks:  # let pending indications / re-advertising finish (bumble's HCI
            await asyncio.wait(self._tasks, timeout=1.0)  # host dislikes cancelled commands)
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        self.world.remove_device(self.device)

    async def __aenter__(self) -> SimBlePatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def streaming(self) -> bool:
        return self._stream_task is not None and not self._stream_task.done()

    def device_time_ns(self) -> int:
        """The simulated device clock, ns since 2000-01-01."""
        elapsed = (time.monotonic() - self._t0_wall) * self.speed
        return self._t0_device_ns + round(elapsed * 1e9)

    def _device_sample_now(self) -> int:
        return (self.device_time_ns() - self._t0_device_ns) * FS // 1_000_000_000

    def _sample_time_ns(self, k: int) -> int:
        return self._t0_device_ns + k * 1_000_000_000 // FS

    # --- test hooks -----------------------------------------------------------------
    async def disconnect(self) -> None:
        """Drop the link from the patch side (the patch keeps advertising)."""
        await disconnect_bounded(self._connection)

    def stall(self) -> None:
        """Stop sending ECG without telling anyone (a notify stall); the link stays up."""
        self._stop_stream()

    def drop_frames(self, count: int = 1) -> None:
        """Do not notify the next ``count`` ECG frames (lost in the air: no backfill)."""
        self._drop_pending += count

    def skew_next_timestamp(self, seconds: float) -> None:
        """Send the next ECG frame with its timestamp off by ``seconds`` (one absurd value;
        its samples are real and in place)."""
        self._skew_ns.append(int(seconds * 1e9))

    def corrupt_next_frame(self, count: int = 1) -> None:
        """Send ``count`` malformed PMD notifications before the next ECG frame."""
        self._corrupt_pending += count

    async def press_button(self) -> ButtonPress:
        """A symptom-button press: notified now, or kept and notified once a gateway
        subscribes again (polar-pmd.md allows it); returns the press."""
        self.press_count += 1
        press = ButtonPress(press_id=self.press_count, device_time_ns=self.device_time_ns())
        self._unsent.append(press)
        await self._notify_presses()
        return press

    def _on_button_subscription(self, _bearer: object, notify: bool, _indicate: bool) -> None:
        if notify:
            self._spawn(self._notify_presses())

    async def _notify_presses(self) -> None:
        """Every kept press, oldest first, to a subscribed gateway (kept until then)."""
        await notify_kept(
            self.device, self._connection, self._button, self._unsent, encode_button_press
        )

    async def set_battery(self, percent: int) -> None:
        """Change the battery level and notify subscribers."""
        self._battery = percent
        await self.device.notify_subscribers(self._battery_char, encode_battery_level(percent))

    # --- link events ----------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        self._stop_stream()
        self._spawn(self._advertise())  # connectable again, like a real patch

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.debug("sim patch task failed: %r", task.exception())

    # --- PMD control point ----------------------------------------------------------
    def _on_cp_write(self, _connection: Connection, value: bytes) -> None:
        self.commands.append(bytes(value))
        status, params = self._handle_command(bytes(value))
        op = value[0] if value else 0
        mtype = value[1] if len(value) > 1 else 0
        response = bytes([0xF0, op, mtype, status, 0]) + params
        # Indicate after the write response, as the real device does.
        self._spawn(self.device.indicate_subscribers(self._cp, response))

    def _handle_command(self, cmd: bytes) -> tuple[int, bytes]:
        if len(cmd) < 2:
            return PmdStatus.INVALID_LENGTH, b""
        op, mtype = cmd[0], cmd[1]
        if op not in tuple(PmdOp):
            return PmdStatus.INVALID_OP_CODE, b""
        if mtype != PmdMeasurement.ECG:
            return PmdStatus.NOT_SUPPORTED, b""
        if op == PmdOp.GET_SETTINGS:
            return PmdStatus.SUCCESS, _ECG_SETTINGS
        if op == PmdOp.STOP:
            if not self.streaming:
                return PmdStatus.ALREADY_IN_STATE, b""
            self._stop_stream()
            return PmdStatus.SUCCESS, b""
        # START: accept exactly 130 Hz / 14 bit like an H10
        if cmd[2:] != _ECG_SETTINGS:
            return PmdStatus.INVALID_PARAMETER, b""
        if self.streaming:
            return PmdStatus.ALREADY_IN_STATE, b""
        self._stream_task = asyncio.get_running_loop().create_task(self._stream())
        return PmdStatus.SUCCESS, b""

    def _stop_stream(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    # --- streaming ------------------------------------------------------------------
    async def _stream(self) -> None:
        n = self.samples_per_frame
        # The heart kept beating while nobody listened: skip to "now".
        now_k = self._device_sample_now()
        if now_k > self._next_sample:
            self.synth.generate(now_k - self._next_sample)
            self._next_sample = now_k
        next_hr_k = self._next_sample
        self._hr_t = self._next_sample / FS  # RR of beats nobody heard are not sent later
        frame_wall = n / FS / self.speed
        try:
            while True:
                while self._device_sample_now() - self._next_sample >= n:
                    await self._send_frame(self._frame_size(n))
                    if self._next_sample >= next_hr_k:
                        await self._send_hr()
                        next_hr_k += FS
                await asyncio.sleep(frame_wall / 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # link went away mid-send
            _LOGGER.debug("sim patch stream ended: %r", exc)

    def _frame_size(self, n: int) -> int:
        """Samples in the next frame: the configured size, at most what the connection's
        ATT MTU carries (a notification holds MTU - 3 bytes; a frame 10 + 3 n)."""
        if self.frame_sizes:
            self._size_i += 1
            n = self.frame_sizes[(self._size_i - 1) % len(self.frame_sizes)]
        mtu = self._connection.att_mtu if self._connection is not None else 23
        return max(1, min(n, (mtu - 3 - 10) // 3))

    async def _send_frame(self, n: int) -> None:
        k0 = self._next_sample
        mv = self.synth.generate(n)[:, 0]
        uv = np.round(np.asarray(mv, dtype=np.float64) * 1000.0).astype(np.int32)
        skew = self._skew_ns.pop(0) if self._skew_ns else 0
        if skew:
            self.skewed.append((k0, k0 + n))
        frame = encode_ecg_frame(self._sample_time_ns(k0 + n - 1) + skew, uv)
        self._next_sample += n
        if self._drop_pending:
            self._drop_pending -= 1
            self.dropped.append((k0, k0 + n))
            self.frames_sent += 1
            return
        while self._corrupt_pending:
            self._corrupt_pending -= 1
            await self.device.notify_subscribers(self._data, frame[:-1])  # 3n-1 payload bytes
        await self.device.notify_subscribers(self._data, frame)
        self.frames_sent += 1
        self.sent.update(zip(range(k0, k0 + n), (uv / 1000.0).tolist(), strict=True))

    async def _send_hr(self) -> None:
        """A Heart Rate Measurement with the RR intervals of the beats since the last one
        sent (beats while nobody listened are never sent: what an HRS-only sensor loses)."""
        t_now = self._next_sample / FS
        beats = self.synth.r_times_between(0.0 if self._hr_t is None else self._hr_t, t_now)
        everything = self.synth.r_times_between(0.0, t_now)
        prev = {b: a for a, b in itertools.pairwise(everything)}
        intervals = [(b, b - prev[b]) for b in beats if b in prev]
        self.rr_sent.extend(intervals)
        rr_1024 = tuple(round(rr * 1024) for _, rr in intervals)
        self._hr_t = t_now
        m = HeartRateMeasurement(bpm=round(self.hr_bpm), contact=True, rr_1024=rr_1024)
        await self.device.notify_subscribers(self._hrm, encode_heart_rate_measurement(m))
