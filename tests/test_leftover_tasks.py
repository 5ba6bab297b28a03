"""The conftest's guard against a hung event-loop teardown, on its helpers (fast: the
guard itself waits 10 s for a stubborn task, and then 10 s more at the loop's teardown)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support import describe_task, stop_leftover_tasks


async def test_leftover_tasks_are_stopped_and_one_that_swallows_its_stop_is_named() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # swallowed: back to waiting
                await asyncio.sleep(3600)

    ordinary = asyncio.create_task(asyncio.sleep(3600), name="ordinary")
    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    assert await stop_leftover_tasks(limit_s=0.2) == [task]
    assert ordinary.cancelled() and not task.done()
    where = describe_task(task)
    assert "name='stubborn'" in where and ", in stubborn" in where and ", in sleep" in where
    release.set()
    task.cancel()
    await asyncio.wait([task])  # (it ends: nothing left for the guard)
