"""A stop is never lost: waiting for a cancelled task, and a library that swallows one.

``core.tasks`` and its users (``core.supervise``, the gateway's device supervisor): each
test cancels at an awkward moment and asks that the task end, as cancelled, at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from core.supervise import supervise
from core.tasks import cancel_and_wait

pytestmark = pytest.mark.timeout(30)

_PROMPT_S = 2.0  # every stop here takes a few loop turns; the backoffs are 10 s


async def _ends_cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task``: it must end, as cancelled, within ``_PROMPT_S``."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=_PROMPT_S)
    assert done, f"still running {_PROMPT_S:g} s after the stop: {task.get_stack()}"
    assert task.cancelled(), f"ended without the stop: {task!r}"


async def _slow_to_end() -> None:
    """A task whose cleanup takes a moment after its cancellation."""
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.05)


async def test_a_stop_of_the_waiter_is_not_taken_for_the_waited_tasks() -> None:
    """Cancelled while it waits for a task it cancelled, the waiter is cancelled too (the
    ``suppress(CancelledError): await task`` idiom swallows it and runs on)."""
    child = asyncio.create_task(_slow_to_end())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cancel_and_wait(child))
    await asyncio.sleep(0)  # waiting for the child's cleanup
    await _ends_cancelled(waiter)
    await asyncio.wait([child])
    assert child.cancelled()


async def test_what_the_waited_task_raised_is_raised() -> None:
    async def fails_on_stop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_stop())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


def _swallowing_session(turn_into: BaseException | None) -> Callable[[], Awaitable[bool]]:
    """A session in which the stop is swallowed by a library (it returns, having delivered
    nothing) or turned into ``turn_into``."""

    async def session() -> bool:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if turn_into is not None:
                raise turn_into from None
        return False

    return session


@pytest.mark.parametrize("turn_into", [None, OSError("link gone")], ids=["swallowed", "error"])
async def test_supervise_stops_at_once_on_a_stop_a_session_swallowed(
    turn_into: BaseException | None,
) -> None:
    """No failure counted, no outcome reported, no backoff waited out (10 s here)."""
    heard: list[object] = []

    async def outcome(delivered: bool, error: BaseException | None) -> bool:
        heard.append(("outcome", delivered, error))
        return False

    task = asyncio.create_task(
        supervise(
            _swallowing_session(turn_into),
            errors=(OSError,),
            delays=(10.0, 10.0),
            on_failure=lambda exc, n: heard.append(("failure", exc, n)),
            on_outcome=outcome,
        )
    )
    await asyncio.sleep(0.01)
    await _ends_cancelled(task)
    assert heard == []


async def test_supervise_stops_in_its_backoff() -> None:
    async def fails() -> bool:
        raise OSError("no port")

    task = asyncio.create_task(
        supervise(fails, errors=(OSError,), delays=(10.0, 10.0), on_failure=lambda *_: None)
    )
    await asyncio.sleep(0.01)  # in the 10 s backoff
    await _ends_cancelled(task)
