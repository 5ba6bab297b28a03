"""A simulated stress-test cart on a real pseudo-terminal.

:class:`SimCart` opens a pty pair (``os.openpty``, raw mode) and, in an asyncio
task, writes what a cart sends (``docs/protocols/cart-serial.md``): a HELLO, 12
leads at 500 Hz in ECG frames of 20 samples (every 40 ms), a staged exercise
protocol (Bruce stages: STAGE at each change, heart rate rising, blood pressure
at the end of each stage) and a heartbeat every second. STOP stops the ECG frames (the
acquisition and its sample counter go on, heartbeats too) and START resumes them at the
current sample, after a HELLO and the current STAGE. The gateway's serial
driver opens :attr:`SimCart.port` exactly as it would open ``/dev/ttyUSB0``.

Test hooks: :meth:`corrupt_next_frame` flips a byte of the next ECG frame on
the wire (its samples are then lost and must be reported as a gap),
:meth:`drop_frames` skips ECG frames (a gap without corruption),
:meth:`lead_off` reports electrodes off, :meth:`glitch` sends one ECG frame with an
absurd sample number (a counter glitch that passed the CRC), :meth:`restart` power-cycles
the cart (its counter starts again at 0, at the same or another sample rate), and with
``keep=True`` :attr:`recorded` holds every sample the cart produced, in production order
(:attr:`restarts_at` says where each acquisition began).

Before the host first opens the port (its first START) nobody is listening: when the pty
is full the cart's line forgets what it held (the pty's input is flushed), so a host that
opens the port late finds the latest frames, whole and in order. After START what the pty
cannot take yet waits, whole frames, in a queue of :data:`TX_BUFFER_BYTES`; beyond it
whole frames are dropped and counted in :attr:`SimCart.overflow_bytes`. The protocol has
no flow control: the queue stands in for the receive buffers of a real host's serial
driver, which at 1x last seconds, where a pty holds about 20 kB, a few hundred
milliseconds at the speeds tests run (so a host stalled for a moment on a loaded machine
would otherwise lose frames no real line would).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import termios
import time
import tty
from collections.abc import Callable

import numpy as np

from core.tasks import cancel_and_wait
from drivers.cart_protocol import (
    LEADS_12,
    CartDecoder,
    CommandMsg,
    FrameType,
    Phase,
    encode_blood_pressure,
    encode_ecg,
    encode_heartbeat,
    encode_hello,
    encode_lead_off,
    encode_stage,
)
from sim.synth import EcgSynth

__all__ = ["BRUCE", "SimCart"]

_PEAK_BPM = 185.0
_ST_PER_STAGE_MV = 0.05  # simulated lateral ST depression per stage from stage 2, mV
_ST_MAX_MV = 0.2

TX_BUFFER_BYTES = 1 << 18
"""Bytes the cart holds for a host that has opened the port but does not read yet (about
14 s of 12-lead frames at 500 Hz)."""

#: Bruce protocol stages: (speed km/h, grade %), 3 minutes each in the clinic.
BRUCE = ((2.7, 10.0), (4.0, 12.0), (5.5, 14.0), (6.8, 16.0), (8.0, 18.0), (8.9, 20.0), (9.7, 22.0))


class SimCart:
    """A virtual cart writing the serial protocol to a pseudo-terminal.

    Parameters
    ----------
    stage_s
        Length of each exercise stage, simulated seconds (180 in a real Bruce test).
    speed
        Simulated time per wall-clock time (10 = ten times faster than real time).
    frame_samples
        Samples per ECG frame (20 at 500 Hz = one frame every 40 ms).
    hr_bpm
        Resting heart rate; each stage adds 15 bpm.
    """

    def __init__(
        self,
        *,
        fs: int = 500,
        stage_s: float = 180.0,
        speed: float = 1.0,
        frame_samples: int = 20,
        hr_bpm: float = 80.0,
        seed: int = 0,
        serial: str = "SIM-CART-0001",
        firmware: str = "1.0.0",
        clock: Callable[[], float] = time.monotonic,
        keep: bool = False,
    ) -> None:
        self.fs = fs
        self.stage_s = stage_s
        self.speed = speed
        self.frame_samples = frame_samples
        self.hr_bpm = hr_bpm
        self.serial = serial
        self.firmware = firmware
        self._clock = clock
        self._synth = EcgSynth(fs, LEADS_12, hr_bpm=hr_bpm, seed=seed)
        self._master: int | None = None
        self._slave: int | None = None
        self.port = ""
        self.samples_sent = 0  # samples acquired: the cart's sample counter
        self.frames_sent = 0
        self.overflow_bytes = 0  # bytes a host that opened the port lost (buffer full)
        self.forgotten = 0  # times the line forgot what nobody read before START
        self._tx: collections.deque[bytes] = collections.deque()  # waiting for the line
        self._tx_bytes = 0
        self._host_opened = False  # a START was heard: hold what the line cannot take
        self.stage = 0
        self._stage_start = 0
        self._frame_seq = 0
        self._corrupt = 0
        self._drop = 0
        self._pending: list[bytes] = []
        self._commands = CartDecoder()
        self.commands: list[FrameType] = []
        """Every host command received, in order."""
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._t0 = 0.0  # clock time the current acquisition began
        self._glitches: list[int] = []
        self._keep = keep
        self._recorded = np.zeros((0, len(LEADS_12)), dtype=np.int32)
        self.streaming = True
        """ECG frames are sent (False after a STOP, until the next START)."""
        self.produced = 0  # samples produced since start, across restarts
        self.restarts_at: list[int] = [0]
        """Where each acquisition began, as an index into :attr:`recorded`."""

    # --- lifetime -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the pty and start writing."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-cart")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    async def __aenter__(self) -> SimCart:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test hooks ---------------------------------------------------------------------
    def corrupt_next_frame(self, count: int = 1) -> None:
        """Flip one byte in each of the next ``count`` ECG frames (CRC then fails)."""
        self._corrupt += count

    def pause(self, seconds: float) -> None:
        """Write nothing for ``seconds`` of wall time (a loose cable); the cart keeps
        counting samples, so what it would have sent is lost."""
        self._paused_until = time.monotonic() + seconds

    def drop_frames(self, count: int = 1) -> None:
        """Do not send the next ``count`` ECG frames (their samples are lost)."""
        self._drop += count

    def glitch(self, first_sample: int) -> None:
        """Send the next ECG frame's samples under ``first_sample`` instead of the counter
        (a counter glitch, or a corrupted frame whose CRC still matched); the counter goes
        on as if nothing happened."""
        self._glitches.append(first_sample)

    def restart(self, fs: int | None = None) -> None:
        """The cart is power-cycled: acquisition starts again at sample 0 (at ``fs`` Hz if
        given), announced by a HELLO."""
        if fs is not None:
            self.fs = fs
            self._synth = EcgSynth(fs, LEADS_12, hr_bpm=self.hr_bpm, seed=self.produced)
        self.samples_sent = 0
        self._stage_start = 0
        self._t0 = self._clock()
        self.restarts_at.append(self.produced)
        self._write(encode_hello(self._next_seq(), self.fs, self.serial, self.firmware))
        self._write(self._stage_frame(max(self.stage, 1)))

    @property
    def recorded(self) -> np.ndarray:
        """Every sample produced (``keep=True``), µV, (n, 12), in production order."""
        return self._recorded[: self.produced]

    def lead_off(self, leads: tuple[str, ...]) -> None:
        """Report these leads as off (empty: all back on)."""
        mask = sum(1 << LEADS_12.index(name) for name in leads)
        self._pending.append(encode_lead_off(self._next_seq(), self.samples_sent, mask))

    # --- writing ---------------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self._frame_seq
        self._frame_seq = (self._frame_seq + 1) & 0xFFFF
        return seq

    def _write(self, data: bytes) -> None:
        if self._master is None or time.monotonic() < self._paused_until:
            return
        if not self._host_opened:
            if self._put(data) < len(data) and self._slave is not None:
                termios.tcflush(self._slave, termios.TCIFLUSH)  # nobody listening
                self.forgotten += 1
                self._put(data)
            return
        if self._tx_bytes + len(data) > TX_BUFFER_BYTES:
            self.overflow_bytes += len(data)
            return
        self._tx.append(data)
        self._tx_bytes += len(data)
        self._flush()

    def _flush(self) -> None:
        """Write what waits for the line, whole frames in order, as far as it takes them."""
        while self._tx:
            head = self._tx[0]
            written = self._put(head)
            self._tx_bytes -= written
            if written < len(head):
                self._tx[0] = head[written:]
                return
            self._tx.popleft()

    def _put(self, data: bytes) -> int:
        """Bytes of ``data`` the pty took (0 when it is full or its other side is gone)."""
        if self._master is None:
            return 0
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # EIO: the other side is gone
            if exc.errno != errno.EIO:
                raise
            return 0

    def _stage_frame(self, stage: int) -> bytes:
        speed, grade = BRUCE[min(stage - 1, len(BRUCE) - 1)]
        return encode_stage(
            self._next_seq(),
            self._stage_start,
            stage,
            Phase.EXERCISE,
            speed,
            grade,
            f"Bruce {stage}",
        )

    def _next_stage(self) -> None:
        if self.stage:
            sys_, dia = min(120 + 15 * self.stage, 220), min(78 + 2 * self.stage, 95)
            self._write(encode_blood_pressure(self._next_seq(), self.samples_sent, sys_, dia))
        self.stage += 1
        self._stage_start = self.samples_sent
        # heart rate climbs 15 bpm per stage, up to a plausible peak exercise rate
        self._synth.set_heart_rate(min(self.hr_bpm + 15.0 * self.stage, _PEAK_BPM))
        # and, from stage 2, V5's ST segment sinks 0.05 mV per stage (what an
        # exercise test is looking for), so strips show ST levels that change
        depth = min(_ST_PER_STAGE_MV * max(self.stage - 1, 0), _ST_MAX_MV)
        self._synth.set_st_vector(-depth * EcgSynth.lead_dipole("V5"))
        self._write(self._stage_frame(self.stage))

    async def _run(self) -> None:
        self._write(encode_hello(self._next_seq(), self.fs, self.serial, self.firmware))
        self._next_stage()
        self._t0 = self._clock()
        while True:
            stage_samples = max(int(self.stage_s * self.fs), 1)
            beat_samples = self.fs
            period = self.frame_samples / self.fs / self.speed
            self._read_commands()  # a START heard before the next frames are written
            due = int((self._clock() - self._t0) * self.speed * self.fs)
            while self.samples_sent + self.frame_samples <= due:
                for frame in self._pending:
                    self._write(frame)
                self._pending.clear()
                self._send_ecg()
                if self.samples_sent % stage_samples < self.frame_samples:
                    self._next_stage()
                if self.samples_sent % beat_samples < self.frame_samples:
                    self._write(encode_heartbeat(self._next_seq(), self.samples_sent))
            self._flush()
            await asyncio.sleep(period)

    def _read_commands(self) -> None:
        """Answer START (HELLO and the current stage again, then ECG frames): the host just
        opened the port; STOP stops the ECG frames (cart-serial.md)."""
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        for msg in self._commands.feed(data):
            if isinstance(msg, CommandMsg):
                self.commands.append(msg.command)
                if msg.command == FrameType.STOP:
                    self.streaming = False
                elif msg.command == FrameType.START:
                    self.streaming = True
                    self._host_opened = True
                    self._write(encode_hello(self._next_seq(), self.fs, self.serial, self.firmware))
                    self._write(self._stage_frame(self.stage))

    def _store(self, uv: np.ndarray) -> None:
        end = self.produced + uv.shape[0]
        if end > self._recorded.shape[0]:
            bigger = np.zeros((max(2 * self._recorded.shape[0], end, 4096), uv.shape[1]), np.int32)
            bigger[: self.produced] = self._recorded[: self.produced]
            self._recorded = bigger
        self._recorded[self.produced : end] = np.clip(uv, -(1 << 23), (1 << 23) - 1)

    def _send_ecg(self) -> None:
        x_mv = self._synth.generate(self.frame_samples)
        uv = np.rint(x_mv.astype(np.float64) * 1000.0).astype(np.int64)
        first = self._glitches.pop(0) if self._glitches else self.samples_sent
        frame = encode_ecg(self._next_seq(), first & 0xFFFFFFFF, uv)
        if self._keep:
            self._store(uv)
        self.produced += self.frame_samples
        self.samples_sent += self.frame_samples
        if not self.streaming:  # acquired while stopped: never sent
            return
        self.frames_sent += 1
        if self._drop:
            self._drop -= 1
            return
        if self._corrupt:
            self._corrupt -= 1
            b = bytearray(frame)
            i = len(b) // 2
            b[i] = b[i] ^ 0x5A or 0x01  # never create a delimiter
            frame = bytes(b)
        self._write(frame)
