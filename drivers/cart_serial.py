"""asyncio driver for a stress-test cart on a serial port (the I/O shell).

:meth:`CartSerialDriver.run` opens the port with pyserial (through
pyserial-asyncio-fast), sends START, and feeds every byte read to the pure
:class:`~drivers.cart_protocol.CartDecoder` and
:class:`~drivers.cart_protocol.CartStream`; blocks, gaps and events go to the
:class:`~drivers.events.DeviceSink`.

- Corrupted or malformed frames are counted (:attr:`CartSerialDriver.stats`),
  reported as an ``error`` event and skipped; the stream goes on. The samples
  they carried come out as a :class:`~drivers.events.Gap`.
- A silent line (no valid frame for ``silence_timeout_s``) or a port error (USB
  adapter unplugged) closes the port and reopens it with capped, jittered
  exponential backoff until the task is cancelled.
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

import serial
import serial_asyncio_fast

from drivers.backoff import backoff_s
from drivers.cart_protocol import CartDecoder, CartStream, FrameType, encode_command
from drivers.events import DeviceEvent, DeviceSink, Gap
from dsp.block import SampleBlock
from gateway.config import CartSerialDevice

__all__ = ["CartSerialDriver", "CartSerialStats"]

_LOGGER = logging.getLogger(__name__)
_READ_SIZE = 4096


@dataclass(slots=True)
class CartSerialStats:
    """Counters of one driver since it was created."""

    opens: int = 0
    open_failures: int = 0
    silences: int = 0
    bytes: int = 0
    frames_ok: int = 0
    frame_errors: int = 0
    crc_errors: int = 0
    frames_lost: int = 0
    samples: int = 0
    gaps: int = 0
    gap_samples: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class CartSerialDriver:
    """One configured cart.

    Parameters
    ----------
    dev
        The device's configuration (port, baud rate, silence timeout).
    sink
        Receives blocks, gaps and events; its methods must not block.
    clock
        UTC POSIX seconds now.
    reconnect_delay_s
        (first, max) seconds between attempts to reopen the port.
    """

    def __init__(
        self,
        dev: CartSerialDevice,
        sink: DeviceSink,
        *,
        clock: Callable[[], float] = time.time,
        reconnect_delay_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.dev = dev
        self.sink = sink
        self.stats = CartSerialStats()
        self._clock = clock
        self._delays = reconnect_delay_s
        self._rng = random.Random()
        self.decoder = CartDecoder()
        self.stream = CartStream(dev.id)
        self._errors_seen = 0

    @property
    def source(self) -> str:
        return self.dev.id

    async def run(self) -> None:
        """Read the cart until cancelled, reopening the port whenever it fails."""
        failures = 0
        while True:
            try:
                got_data = await self._session()
            except (OSError, serial.SerialException) as exc:
                self.stats.open_failures += 1
                self._event("error", {"what": "port", "detail": str(exc)})
                _LOGGER.warning("%s: serial port %s: %s", self.source, self.dev.port, exc)
                got_data = False
            failures = 0 if got_data else failures + 1
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return backoff_s(failures, self._delays, self._rng)

    async def _session(self) -> bool:
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=self.dev.port, baudrate=self.dev.baudrate
        )
        self.stats.opens += 1
        self.decoder = CartDecoder()  # resynchronise on the next delimiter
        self._event("connected", {"port": self.dev.port, "baudrate": self.dev.baudrate})
        got_data = False
        reason = "closed"
        try:
            writer.write(encode_command(FrameType.START))
            while True:
                try:
                    data = await asyncio.wait_for(
                        reader.read(_READ_SIZE), timeout=self.dev.silence_timeout_s
                    )
                except TimeoutError:
                    self.stats.silences += 1
                    reason = f"silent for {self.dev.silence_timeout_s:g} s"
                    break
                if not data:
                    reason = "end of file"
                    break
                got_data = True
                self._feed(data)
        finally:
            with contextlib.suppress(Exception):
                writer.write(encode_command(FrameType.STOP))
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):  # a port whose other end is gone can hang
                    await writer.wait_closed()
            self._event("disconnected", {"reason": reason})
        return got_data

    def _feed(self, data: bytes) -> None:
        now = self._clock()
        self.stats.bytes += len(data)
        for msg in self.decoder.feed(data):
            for out in self.stream.handle(msg, now):
                self._deliver(out)
        d = self.decoder.stats
        self.stats.frames_ok = d.frames_ok
        self.stats.crc_errors = d.crc_errors
        self.stats.frames_lost = d.frames_lost
        if d.errors > self._errors_seen:
            self.stats.frame_errors += d.errors - self._errors_seen
            self._errors_seen = d.errors
            self._event(
                "error",
                {
                    "what": "frame",
                    "detail": self.decoder.last_error,
                    "frame_errors": self.stats.frame_errors,
                    "crc_errors": d.crc_errors,
                },
            )

    def _deliver(self, out: SampleBlock | Gap | DeviceEvent) -> None:
        if isinstance(out, SampleBlock):
            self.stats.samples += out.n
            self.sink.on_block(out)
        elif isinstance(out, Gap):
            self.stats.gaps += 1
            self.stats.gap_samples += out.n_samples
            self.sink.on_gap(out)
        else:
            self.sink.on_event(out)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.sink.on_event(DeviceEvent(self.source, kind, self._clock(), None, data))
