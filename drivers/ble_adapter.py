"""The gateway's Bluetooth adapter: one lock for all its patches, and a reset when it sticks.

BlueZ on a Raspberry Pi sometimes gets stuck: every connection attempt fails or
times out although the patches are there and advertising, until the adapter is
power-cycled. :class:`AdapterHealth` (pure) decides when that is the likely
cause: ``failures_to_reset`` consecutive failed connection sessions, across all
devices on the adapter, spread over at least ``min_span_s``, with no success in
between. A patch that is simply away (not seen in a scan) is not counted: that
is the patient, not the adapter. After a reset, ``cooldown_s`` must pass before
the next.

:class:`BleAdapter` is the shared object the BLE drivers use. It keeps apart what BlueZ
cannot do at once — a scan (discovery) and a connection attempt fail each other with
``org.bluez.Error.InProgress`` — and nothing more: :meth:`BleAdapter.scanning` is
exclusive (no connection attempt runs meanwhile, and none starts), while
:meth:`BleAdapter.connecting` is shared (connection attempts to different devices run side
by side: BlueZ and the kernel queue LE connection creation). A patch that is away
therefore holds up nobody: its scan is cut into short slices (``drivers.ble_link``) and
its connection attempt, however long it waits, blocks only scans. The adapter also
collects outcomes and runs the reset action, exclusively, when due. On Linux the action
power-cycles the adapter through BlueZ's D-Bus API (``org.bluez.Adapter1.Powered`` off,
then on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

__all__ = ["AdapterHealth", "BleAdapter", "bluez_power_cycle"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class AdapterHealth:
    """When to reset the adapter (see module docstring). Times in seconds (monotonic)."""

    failures_to_reset: int = 5
    min_span_s: float = 60.0
    cooldown_s: float = 600.0
    failures: int = 0
    first_failure: float | None = None
    last_reset: float | None = None
    resets: int = 0

    def success(self) -> None:
        """A session streamed data: the adapter works."""
        self.failures = 0
        self.first_failure = None

    def failure(self, now: float) -> bool:
        """A session failed for a reason the adapter may cause; True when a reset is due."""
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = now
        due = (
            self.failures >= self.failures_to_reset
            and now - self.first_failure >= self.min_span_s
            and (self.last_reset is None or now - self.last_reset >= self.cooldown_s)
        )
        if due:
            self.last_reset = now
            self.resets += 1
            self.failures = 0
            self.first_failure = None
        return due


class BleAdapter:
    """Scan/connect exclusion, health tracking and reset (see module docstring).

    ``lock`` is held by whoever uses the adapter exclusively (a scan slice, a reset) and,
    for an instant, by each connection attempt as it registers; ``async with adapter``
    is :meth:`scanning`.

    Parameters
    ----------
    reset
        Coroutine function that resets the adapter (None: never reset, only count).
    health
        The policy; defaults to :class:`AdapterHealth` defaults.
    """

    def __init__(
        self,
        reset: Callable[[], Awaitable[None]] | None = None,
        health: AdapterHealth | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = asyncio.Lock()
        self.health = health or AdapterHealth()
        self._reset = reset
        self._clock = clock
        self.reset_errors = 0
        self.connecting_now = 0  # connection attempts under way
        self._idle = asyncio.Event()  # set when no connection attempt is under way
        self._idle.set()

    @classmethod
    def wrap(cls, lock: asyncio.Lock | BleAdapter | None) -> BleAdapter:
        """A driver's adapter from what it was given (a bare lock: no resets)."""
        if isinstance(lock, BleAdapter):
            return lock
        adapter = cls()
        if lock is not None:
            adapter.lock = lock
        return adapter

    @contextlib.asynccontextmanager
    async def scanning(self) -> AsyncIterator[None]:
        """Exclusive use (a scan, a reset): waits for connection attempts under way to end;
        none starts until it is over."""
        async with self.lock:
            await self._idle.wait()
            yield

    @contextlib.asynccontextmanager
    async def connecting(self) -> AsyncIterator[None]:
        """A connection attempt: waits only for a scan or reset in progress, then runs
        beside other attempts."""
        async with self.lock:  # not while a scan or reset holds the adapter
            self.connecting_now += 1
            self._idle.clear()
        try:
            yield
        finally:
            self.connecting_now -= 1
            if not self.connecting_now:
                self._idle.set()

    async def __aenter__(self) -> BleAdapter:
        await self.lock.acquire()
        try:
            await self._idle.wait()
        except BaseException:
            self.lock.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()

    def success(self) -> None:
        self.health.success()

    async def failure(self) -> bool:
        """Count a failed session; reset the adapter if due. True if it was reset."""
        if self._reset is None:  # nothing to reset with: only count
            self.health.failures += 1
            return False
        if not self.health.failure(self._clock()):
            return False
        _LOGGER.warning(
            "Bluetooth adapter looks stuck (%d failed connections in a row): resetting it",
            self.health.failures_to_reset,
        )
        async with self.scanning():
            try:
                await self._reset()
            except Exception as exc:  # no BlueZ, no permission: say so, keep going
                self.reset_errors += 1
                _LOGGER.error("Bluetooth adapter reset failed: %r", exc)
                return False
        return True


async def bluez_power_cycle(adapter: str = "hci0", off_s: float = 2.0) -> None:
    """Power the BlueZ adapter off and on again over the system D-Bus (Linux only).

    Needs permission to set ``org.bluez.Adapter1.Powered`` (root, or a polkit rule for
    the gateway's user).
    """
    from dbus_fast import BusType, Variant
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        path = f"/org/bluez/{adapter}"
        node = await bus.introspect("org.bluez", path)
        props = bus.get_proxy_object("org.bluez", path, node).get_interface(
            "org.freedesktop.DBus.Properties"
        )
        await props.call_set("org.bluez.Adapter1", "Powered", Variant("b", False))  # type: ignore[attr-defined]
        await asyncio.sleep(off_s)
        await props.call_set("org.bluez.Adapter1", "Powered", Variant("b", True))  # type: ignore[attr-defined]
    finally:
        bus.disconnect()
