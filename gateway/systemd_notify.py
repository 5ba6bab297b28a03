"""Telling systemd how the gateway is doing: READY, STOPPING, STATUS and the watchdog.

The unit is ``Type=notify`` with ``WatchdogSec=30s`` and ``NotifyAccess=main``
(systemd/ecg-gateway.service): systemd counts the gateway as started when it says
``READY=1`` (the outbox is open and every device's driver runs), and restarts it when no
``WATCHDOG=1`` arrives for ``WatchdogSec``. The pings come from a task on the gateway's
own event loop (:func:`feed_watchdog`), so a loop that stops turning (a blocking call, a
deadlock, an endless callback) stops them and systemd restarts the gateway; with
``faulthandler`` on (``ecg-gateway run``), the SIGABRT systemd sends first prints where
every thread was.

The protocol (sd_notify(3)) is one datagram of ``KEY=value`` lines to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``).
That is small enough to write here rather than depend on a binding (python-systemd needs
libsystemd's headers and a compiler on the Pi; ``sdnotify`` would be a dependency for
these few lines). Without ``$NOTIFY_SOCKET`` (not under systemd, or ``Type=exec``)
everything here does nothing; nothing here ever raises, and no send blocks the loop.

How the app uses it (``gateway/app.py``, ``run_gateway``)::

    gateway = Gateway(cfg)
    async with systemd_service(ready=gateway.started, stopping=stop):
        await gateway.run(stop)

:func:`systemd_service` sends ``READY=1`` once ``ready`` is set, ``STOPPING=1`` once
``stopping`` is set (SIGTERM), and feeds the watchdog meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

__all__ = ["Notifier", "WatchdogFeeder", "feed_watchdog", "systemd_service"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams to ``address`` (None: does nothing).

    Parameters
    ----------
    address
        ``$NOTIFY_SOCKET``: a socket path, or ``@name`` for an abstract socket.
    """

    def __init__(self, address: str | None) -> None:
        self.address: str | bytes | None = None
        self.sent = 0  # datagrams sent
        self.failed = 0  # datagrams that could not be sent (counted, never raised)
        self._sock: socket.socket | None = None
        if address and address[0] in "/@":
            self.address = "\0" + address[1:] if address[0] == "@" else address
        elif address:
            log.warning("NOTIFY_SOCKET=%r is not a path or @name; not notifying", address)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for in ``$NOTIFY_SOCKET`` (a no-op one without it)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of ``KEY=value`` lines; False when not sent (no socket, an error,
        or a full receive queue: never blocks, never raises)."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("could not notify systemd (%d so far): %s", self.failed, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (startup finished), with a status line if given."""
        return self.send("READY=1", *([_status(status)] if status else []))

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down (SIGTERM received; draining the outbox)."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.send(_status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive."""
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    # a newline would start another assignment (e.g. a forged READY=1)
    return "STATUS=" + " ".join(text.splitlines())


@dataclass(slots=True)
class WatchdogFeeder:
    """When to send ``WATCHDOG=1`` (pure: times are passed in, monotonic seconds).

    Every ``interval_s``: half of systemd's ``WatchdogSec``, as sd_watchdog_enabled(3)
    advises, so one late ping is not yet a restart. ``max_late_s`` is the longest a ping
    came after it was due (how far the event loop fell behind; 0 on a healthy loop).
    """

    interval_s: float
    last_s: float | None = None
    max_late_s: float = 0.0

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> WatchdogFeeder | None:
        """The feeder for ``$WATCHDOG_USEC`` (µs) if the watchdog is on for this process
        (``$WATCHDOG_PID``, when set, is ours); None otherwise."""
        env = os.environ if environ is None else environ
        me = str(os.getpid() if pid is None else pid)
        if env.get("WATCHDOG_PID", me) != me:  # the watchdog is another process's
            return None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        return cls(usec / 2e6) if usec > 0 else None

    def due(self, now: float) -> bool:
        """Whether a ping is due at ``now``."""
        return self.last_s is None or now - self.last_s >= self.interval_s

    def fed(self, now: float) -> None:
        """A ping was sent at ``now``."""
        if self.last_s is not None:
            self.max_late_s = max(self.max_late_s, now - self.last_s - self.interval_s)
        self.last_s = now

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until the next ping is due (0: now)."""
        if self.last_s is None:
            return 0.0
        return max(0.0, self.last_s + self.interval_s - now)


async def feed_watchdog(
    notifier: Notifier,
    feeder: WatchdogFeeder | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ping systemd's watchdog whenever ``feeder`` says, from this event loop, until
    cancelled (returns at once when there is no watchdog)."""
    if feeder is None or not notifier.enabled:
        return
    while True:
        now = clock()
        if feeder.due(now):
            notifier.watchdog()
            feeder.fed(now)
        await asyncio.sleep(feeder.delay(clock()))


@contextlib.asynccontextmanager
async def systemd_service(
    *,
    ready: asyncio.Event,
    stopping: asyncio.Event,
    status: str | None = None,
    notifier: Notifier | None = None,
    feeder: WatchdogFeeder | None = None,
) -> AsyncIterator[Notifier]:
    """While inside: ``READY=1`` (with ``status``) once ``ready`` is set, ``STOPPING=1``
    once ``stopping`` is set, and the watchdog fed. Notifier and feeder default to what
    systemd's environment asks for."""
    n = Notifier.from_environ() if notifier is None else notifier
    f = WatchdogFeeder.from_environ() if feeder is None else feeder

    said: list[str] = []

    async def announce() -> None:
        await ready.wait()
        n.ready(status)
        await stopping.wait()
        n.stopping()
        said.append("STOPPING")

    tasks = [
        asyncio.create_task(feed_watchdog(n, f), name="systemd-watchdog"),
        asyncio.create_task(announce(), name="systemd-notify"),
    ]
    try:
        yield n
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stopping.is_set() and not said:  # stopped before the task could say so
            n.stopping()
        n.close()
