"""The driver of a stress-test cart on a serial port (the pyserial shell).

:meth:`CartDriver.run` opens the port with pyserial (through pyserial-asyncio-fast),
exclusively (a second reader is refused with a clear error instead of silently
splitting the frames), sends START, and feeds every byte read to the pure
:class:`~drivers.cart_protocol.CartDecoder` and :class:`~drivers.cart_stream.CartStream`;
blocks, gaps and events go to the sink.

- Corrupted or malformed frames are counted, reported as a ``DriverError`` and
  skipped; the stream goes on. The samples they carried come out as a gap.
- A silent line (no valid frame for ``silence_timeout_s``) or a port error (USB
  adapter unplugged) closes the port and reopens it through
  :func:`core.supervise.supervise`. The decoder and stream live as long as the
  driver: their counters count since it was created, across reopens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial
import serial_asyncio_fast

from core.block import SampleBlock
from core.counters import Counters
from core.events import (
    Connected,
    DeviceEvent,
    DeviceRestarted,
    DeviceSink,
    Disconnected,
    DriverError,
    Gap,
    StreamPosition,
)
from core.ratelog import RateLimitedLog
from core.supervise import supervise
from drivers.cart_protocol import CartDecoder, FrameType, encode_command
from drivers.cart_stream import CartStream

__all__ = ["CartDriver", "CartSettings", "DeviceUnstable"]

log = logging.getLogger(__name__)
_READ_SIZE = 4096
_UNSTABLE = (5, 600.0)  # this many restarts within this many seconds: stop listening a while


class DeviceUnstable(OSError):
    """The cart keeps sending impossible sample numbers: the port is closed and reopened
    after the longest backoff, with an alarm in the status."""


@dataclass(frozen=True, slots=True)
class CartSettings:
    """One cart: device id, serial port, line speed (baud) and silence timeout (s)."""

    id: str
    port: str
    baudrate: int = 460800
    silence_timeout_s: float = 5.0


class CartDriver:
    """One configured cart (see the module docstring).

    Parameters
    ----------
    settings
        The cart's port and timeouts.
    sink
        Receives blocks, gaps and events.
    clock
        UTC POSIX seconds now.
    reconnect_delay_s
        (first, cap) seconds between attempts to reopen the port.
    """

    def __init__(
        self,
        settings: CartSettings,
        sink: DeviceSink,
        *,
        clock: Callable[[], float] = time.time,
        reconnect_delay_s: tuple[float, float] = (0.5, 30.0),
        resume: StreamPosition | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.counters = Counters("opens open_failures silences bytes frame_errors unstable")
        self.decoder = CartDecoder()
        self.stream = CartStream(settings.id)
        if resume is not None:
            self.stream.resume(resume, clock(), time.monotonic())
        self._restarts: deque[float] = deque(maxlen=_UNSTABLE[0])
        self._clock = clock
        self._delays = reconnect_delay_s
        self._rng = random.Random()
        self._errors_seen = 0
        self._log = RateLimitedLog(log)

    @property
    def source(self) -> str:
        return self.settings.id

    def stats(self) -> dict[str, Any]:
        """Port, decoder and stream counters since the driver was created, read now."""
        return {
            **self.counters.snapshot(),
            **self.decoder.stats.snapshot(),
            **self.stream.counters.snapshot(),
        }

    async def run(self) -> None:
        """Read the cart until cancelled, reopening the port whenever it fails."""
        await supervise(
            self._session,
            errors=(OSError, serial.SerialException),  # DeviceUnstable is an OSError
            delays=self._delays,
            on_failure=self._open_failed,
            rng=self._rng,
        )

    def position(self) -> StreamPosition | None:
        """Where the stream stands (kept across gateway restarts)."""
        return self.stream.position()

    def _open_failed(self, exc: BaseException, count: int) -> None:
        self.counters.add("open_failures")
        port = self.settings.port
        detail = f"{port}: {exc}"
        if isinstance(exc, DeviceUnstable):
            detail = str(exc)
        elif "lock" in str(exc).lower():
            detail = f"{port} is open in another program (exclusive access refused): {exc}"
        self._event(
            DriverError(
                source=self.source, time=self._clock(), what="port", detail=detail, count=count
            )
        )
        self._log.log(  # not a line per retry
            "port", logging.WARNING, "%s: serial port %s (%d failures in a row)",
            self.source, detail, count,
        )  # fmt: skip

    async def _session(self) -> bool:
        cfg = self.settings
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=cfg.port, baudrate=cfg.baudrate, exclusive=True
        )
        self.counters.add("opens")
        self.decoder.resync()  # resynchronise on the next delimiter
        now = self._clock()
        self._event(Connected(source=self.source, time=now, detail=f"{cfg.port} @ {cfg.baudrate}"))
        got_data = False
        reason = "closed"
        try:
            writer.write(encode_command(FrameType.START))
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                    # stop that arrives as a read completes, and the driver would run on
                    async with asyncio.timeout(cfg.silence_timeout_s):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    self.counters.add("silences")
                    reason = f"silent for {cfg.silence_timeout_s:g} s"
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
            self._event(Disconnected(source=self.source, time=self._clock(), reason=reason))
        return got_data

    def _feed(self, data: bytes) -> None:
        now, mono = self._clock(), time.monotonic()
        self.counters.add("bytes", len(data))
        for msg in self.decoder.feed(data):
            for out in self.stream.handle(msg, now, mono):
                self._deliver(out)
                if isinstance(out, DeviceRestarted):
                    self._restarted(mono)
        errors = self.decoder.errors
        if errors > self._errors_seen:
            self.counters.add("frame_errors", errors - self._errors_seen)
            self._errors_seen = errors
            detail = self.decoder.last_error or ""
            n = self.counters["frame_errors"]
            self._event(
                DriverError(source=self.source, time=now, what="frame", detail=detail, count=n)
            )

    def _restarted(self, mono: float) -> None:
        self._restarts.append(mono)
        n, span_s = _UNSTABLE
        if len(self._restarts) == n and mono - self._restarts[0] < span_s:
            self._restarts.clear()
            self.counters.add("unstable")
            raise DeviceUnstable(f"{n} restarts in under {span_s:g} s: impossible sample numbers")

    def _deliver(self, out: SampleBlock | Gap | DeviceEvent) -> None:
        if isinstance(out, SampleBlock):
            self.sink.on_block(out)
        elif isinstance(out, Gap):
            self.sink.on_gap(out)
        else:
            self._event(out)

    def _event(self, event: DeviceEvent) -> None:
        self.sink.on_event(event)
