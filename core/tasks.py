"""Stopping asyncio tasks without losing the stop.

A task is stopped by cancelling it, and a stop must never be lost on the way: a task that
lives on after it keeps its device's link, and hangs whoever waits for it (the gateway's
shutdown gives up on it; a test suite's event-loop teardown waits for ever). Two ways a
stop gets lost, and their guards:

- ``with suppress(CancelledError): await task`` after ``task.cancel()`` also swallows a
  cancellation of the *waiting* task (Python gives it as that same CancelledError), whose
  cleanup then runs on into waits that nobody cancels any more:
  :func:`cancel_and_wait` waits for the task's end without taking its cancellation for
  the caller's;
- a library may swallow a cancellation on its way up (Python 3.11's ``asyncio.wait_for``
  returns a result that came together with it) or turn it into an error: the task is
  still being cancelled (``Task.cancelling()``), which :func:`stop_if_cancelled` checks
  after such a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "really_cancelled", "stop_if_cancelled"]


def really_cancelled() -> bool:
    """Whether the current task is being cancelled (not just a cancelled future awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled() -> None:
    """Raise CancelledError if the current task is being cancelled: a stop that a library
    swallowed on its way up (or turned into an error) is a stop all the same."""
    if really_cancelled():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for its end; raise what it raised, other than its
    cancellation. A cancellation of the caller meanwhile goes on up (``task``, cancelled
    already, is left to end)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc
