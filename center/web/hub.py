"""Change notification for the console's server-sent events.

Two sources: this process's ingest and escalation call :meth:`ChangeHub.poke` at once; a
poll of the database (every ``poll_s``) sees what *other* processes sharing the database
wrote (new items, audit rows, gateway statuses). Each SSE client waits for the version to
change and then re-reads what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa

from center.store import schema as t

__all__ = ["ChangeHub"]

log = logging.getLogger(__name__)


class ChangeHub:
    """A version number that grows on every change, and waiters for it."""

    def __init__(self, engine: sa.Engine, poll_s: float = 0.5) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.version = 0
        self._cond = asyncio.Condition()
        self._fingerprint: tuple | None = None

    def poke(self) -> None:
        """Something changed (call on the event loop)."""
        self.version += 1
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait(self, seen: int, timeout_s: float) -> int:
        """Wait until the version is past ``seen`` (or the timeout); the version."""
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(lambda: self.version > seen),
                                       timeout_s)
        return self.version

    def _read_fingerprint(self) -> tuple:
        with self.engine.connect() as conn:
            return tuple(conn.execute(sa.select(
                sa.select(sa.func.max(t.events.c.id)).scalar_subquery(),
                sa.select(sa.func.max(t.audit.c.id)).scalar_subquery(),
                sa.select(sa.func.max(t.gateways.c.last_seen_at)).scalar_subquery(),
            )).one())

    async def run(self) -> None:
        """Poll the database for changes made by other processes (cancel to stop)."""
        while True:
            try:
                fp = await asyncio.to_thread(self._read_fingerprint)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("change poll failed: %s", type(exc).__name__)
            else:
                if self._fingerprint is not None and fp != self._fingerprint:
                    self.poke()
                self._fingerprint = fp
            await asyncio.sleep(self.poll_s)
