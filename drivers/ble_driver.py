"""The bleak shell that performs a BLE device session (the only BLE driver class).

A :class:`BleDriver` owns one pure session (:class:`~drivers.patch_session.PatchSession`
or :class:`~drivers.polar_session.PolarSession`) and does what it says, nothing else:

- connect (:func:`~drivers.ble_link.connect`: scans exclusive, connection attempts side by
  side, so an absent patch holds up no other), tell the session
  which characteristics the device has, then perform its commands one at a time, each
  bounded by ``connect_timeout_s`` (reads, writes, subscriptions);
- hand it every notification and a tick every ``tick_s``, and deliver what it returns
  to the sink (blocks, gaps, events) or to the command queue;
- end the connection when the link drops, a GATT operation fails, or the session says
  :class:`~drivers.gatt_session.Disconnect`; then the session hears ``link_lost``;
- reconnect forever through :func:`core.supervise.supervise`: a connection that
  delivered data is not a failure; outcomes go to the shared
  :class:`~drivers.ble_adapter.BleAdapter`, which may power-cycle a stuck adapter. A
  connection in which the device answered (a read, or any notification or indication:
  a refusal of START too) proves the adapter works, whatever the device then did: one
  device that keeps refusing cannot get the adapter of every other one power-cycled.

A bug in a session (an exception from pure code) is logged, counted and ends that
connection; it never escapes the driver, and never reaches another device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError

from core.block import SampleBlock
from core.events import (
    DeviceEvent,
    DeviceSink,
    DriverError,
    Gap,
    SignalStrength,
    StreamPosition,
)
from core.ratelog import RateLimitedLog
from core.supervise import supervise
from core.tasks import really_cancelled
from drivers.ble_adapter import BleAdapter
from drivers.ble_link import BleSettings, DeviceNotFound, connect
from drivers.gatt_session import Command, Disconnect, GattSession, Output, Read, Subscribe, Write
from drivers.patch_session import PatchSession, PatchSettings
from drivers.polar_session import PolarSession, PolarSettings

__all__ = ["BleDriver", "ble_driver"]

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 2.0  # a stalled BlueZ link can hang a disconnect


class _End(Exception):
    """The connection ends (``reason``; ``failed``: it counts against the backoff)."""

    def __init__(self, reason: str, failed: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.failed = reason, failed


class BleDriver:
    """Performs ``session`` over bleak for the device in ``settings`` (see module docstring).

    Parameters
    ----------
    backend
        bleak backend class; ``None`` for the platform's (BlueZ on a Pi). The demo and
        tests pass :meth:`sim.bumble_backend.SimBleWorld.backend`.
    adapter
        Shared by every driver on one Bluetooth adapter (lock, health, reset).
    reconnect_delay_s
        ``(first, cap)`` of the reconnect backoff, seconds.
    scanner
        bleak scanner backend for the scan before each connection (tests: the virtual
        radio's, so a simulated patch is found and its RSSI heard as on BlueZ).
    """

    def __init__(
        self,
        settings: BleSettings,
        session: GattSession,
        sink: DeviceSink,
        *,
        backend: type[BaseBleakClient] | None = None,
        adapter: BleAdapter | None = None,
        reconnect_delay_s: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.time,
        tick_s: float = 0.1,
        scanner: type[BaseBleakScanner] | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.sink = sink
        self.adapter = adapter or BleAdapter()
        self.backend = backend
        self.scanner = scanner
        self.reconnect_delay_s = reconnect_delay_s
        self._clock = clock
        self._tick_s = tick_s
        self._connect_failures = 0
        self._session_errors = 0
        self._heard = False  # the device answered in the current connection
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        self._end: asyncio.Future[_End] | None = None
        self._rng = random.Random()
        self._log = RateLimitedLog(log)  # a device that keeps breaking its session: a line a minute

    @property
    def source(self) -> str:
        return self.settings.id

    def position(self) -> StreamPosition | None:
        """Where the device's stream stands (kept across gateway restarts)."""
        return self.session.position()

    def stats(self) -> dict[str, Any]:
        """The session's counters and the link's, read now."""
        return {
            **self.session.stats(),
            "connect_failures": self._connect_failures,
            "session_errors": self._session_errors,
        }

    async def run(self) -> None:
        """Connect, stream, reconnect; returns only by cancellation."""
        await supervise(
            self._connection,
            errors=(BleakError, TimeoutError, OSError),
            delays=self.reconnect_delay_s,
            on_failure=self._failed,
            on_outcome=self._outcome,
            rng=self._rng,
        )

    def _failed(self, exc: BaseException, count: int) -> None:
        self._connect_failures += 1
        self._event(
            DriverError(
                source=self.source, time=self._clock(), what="link", detail=repr(exc), count=count
            )
        )

    async def _outcome(self, delivered: bool, error: BaseException | None) -> bool:
        if delivered or self._heard:  # the adapter carried the device's answers
            self.adapter.success()
            return False
        if isinstance(error, DeviceNotFound):  # the patient is away: not the adapter
            return False
        return await self.adapter.failure()

    # --- one connection ------------------------------------------------------------------
    async def _connection(self) -> bool:
        lost = asyncio.Event()
        self._heard = False
        client, rssi = await self._connect(lost)
        if rssi is not None:
            self._event(SignalStrength(source=self.source, time=self._clock(), dbm=rssi))
        loop = asyncio.get_running_loop()
        self._end = loop.create_future()
        self._queue = asyncio.Queue()
        chars = {
            c.uuid: frozenset(c.properties) for s in client.services for c in s.characteristics
        }
        tasks = [
            loop.create_task(self._perform(client), name=f"{self.source}:gatt"),
            loop.create_task(self._ticks(), name=f"{self.source}:tick"),
            loop.create_task(lost.wait(), name=f"{self.source}:link"),
        ]
        end = _End("link lost")
        try:
            self._feed(lambda now, mono: self.session.connected(chars, client.mtu_size, now, mono))
            await asyncio.wait([self._end, *tasks], return_when=asyncio.FIRST_COMPLETED)
            end = self._why(tasks)
        except asyncio.CancelledError:
            if not really_cancelled():  # the stack cancelled a future: the link is gone
                end = _End("link lost during a GATT operation")
            else:
                end = _End("stopped")
                await self._close(client)
                raise
        finally:
            for t in tasks:
                t.cancel()
            # bounded: a BLE stack that swallows a cancellation must not hold us here
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
            self._feed(lambda now, mono: self.session.link_lost(end.reason, now, mono))
            await self._disconnect(client)
        return self.session.delivered and not end.failed

    async def _connect(self, lost: asyncio.Event) -> tuple[BleakClient, int | None]:
        """:func:`~drivers.ble_link.connect`, telling a stop from a future the BLE stack
        cancelled, and keeping a stop the stack swallowed on the way.

        A stop that arrives as the stack's own wait ends (Python 3.11's ``asyncio.wait_for``
        returns the result and drops the cancellation) leaves the connection made and the
        task being cancelled: the link is closed and the stop goes on. Else the driver
        would stream on until the link dropped, and a gateway stopping would give up on it.
        """
        try:
            client, rssi = await connect(
                self.settings, self.backend, self.adapter, lost, self.scanner
            )
        except asyncio.CancelledError:
            if really_cancelled():
                raise
            # a future the BLE stack cancelled when the link dropped: not a stop
            raise BleakError("link lost while connecting") from None
        if really_cancelled():
            await self._disconnect(client)
            raise asyncio.CancelledError
        return client, rssi

    @staticmethod
    async def _disconnect(client: BleakClient) -> None:
        """Close the link, bounded (a stalled BlueZ link can hang a disconnect)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await client.disconnect()

    def _why(self, tasks: list[asyncio.Task[Any]]) -> _End:
        if self._end is not None and self._end.done():
            return self._end.result()
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                return exc if isinstance(exc, _End) else _End(f"error: {exc!r}")
        return _End("link lost")

    async def _close(self, client: BleakClient) -> None:
        """Stopping: what the session still holds goes to the sink (events such as presses
        it could not place yet), then its last words to the device (best effort, bounded)."""
        outputs = self.session.closing()
        for out in outputs:
            if isinstance(out, DeviceEvent):
                self._event(out)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                for cmd in outputs:
                    if isinstance(cmd, Write):
                        await client.write_gatt_char(cmd.uuid, cmd.data, response=True)

    async def _perform(self, client: BleakClient) -> None:
        """The session's commands, in order, each bounded by ``connect_timeout_s``."""
        while not really_cancelled():  # (a stack may swallow the cancellation we sent)
            cmd = await self._queue.get()
            try:
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self._do(client, cmd)
            except asyncio.CancelledError:
                if really_cancelled():
                    raise
                # a GATT operation whose future the stack cancelled when the link dropped
                raise _End("link lost during a GATT operation") from None
            except (BleakError, TimeoutError, OSError) as exc:
                raise _End(
                    f"{type(cmd).__name__} {getattr(cmd, 'uuid', '')} failed: {exc!r}"
                ) from None

    async def _do(self, client: BleakClient, cmd: Command) -> None:
        if isinstance(cmd, Read):
            data = bytes(await client.read_gatt_char(cmd.uuid))
            self._heard = True
            self._feed(lambda now, mono: self.session.read_done(cmd.uuid, data, now, mono))
        elif isinstance(cmd, Subscribe):
            await client.start_notify(cmd.uuid, self._handler(cmd.uuid))
        elif isinstance(cmd, Write):
            await client.write_gatt_char(cmd.uuid, cmd.data, response=True)
            self._feed(lambda now, mono: self.session.write_done(cmd.uuid, now, mono))

    def _handler(self, uuid: str) -> Callable[[Any, bytearray], None]:
        def on_notify(_char: Any, data: bytearray) -> None:
            raw = bytes(data)
            self._heard = True
            self._feed(lambda now, mono: self.session.notified(uuid, raw, now, mono))

        return on_notify

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._feed(self.session.tick)

    # --- outputs -------------------------------------------------------------------------------
    def _feed(self, step: Callable[[float, float], list[Output]]) -> None:
        """Run one session step and deliver what it returns; a bug ends the connection."""
        try:
            outputs = step(self._clock(), time.monotonic())
        except Exception:
            self._session_errors += 1
            self._log.log(
                "session",
                logging.ERROR,
                "%s: session failed (%d so far)",
                self.source,
                self._session_errors,
                exc_info=True,
            )
            self._finish(_End("session error", failed=True))
            return
        for out in outputs:
            if isinstance(out, SampleBlock):
                self.sink.on_block(out)
            elif isinstance(out, Gap):
                self.sink.on_gap(out)
            elif isinstance(out, DeviceEvent):
                self._event(out)
            elif isinstance(out, Disconnect):
                self._finish(_End(out.reason, out.failed))
            else:
                self._queue.put_nowait(out)

    def _finish(self, end: _End) -> None:
        if self._end is not None and not self._end.done():
            self._end.set_result(end)

    def _event(self, event: DeviceEvent) -> None:
        self.sink.on_event(event)


def ble_driver(
    settings: PatchSettings | PolarSettings,
    sink: DeviceSink,
    *,
    resume: StreamPosition | None = None,
    **kwargs: Any,
) -> BleDriver:
    """The driver of one configured BLE device: our patch profile or Polar PMD, chosen by
    the settings' type, going on from ``resume`` if given (kwargs: :class:`BleDriver`'s)."""
    session: PatchSession | PolarSession = (
        PatchSession(settings) if isinstance(settings, PatchSettings) else PolarSession(settings)
    )
    if resume is not None:
        session.resume(resume)
    return BleDriver(settings, session, sink, **kwargs)
