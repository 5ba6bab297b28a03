"""One reconnect loop for every link: run sessions forever with capped, jittered backoff.

A *session* is one connection's life (open the port or connect the patch, stream, end).
It returns whether it delivered data. :func:`supervise` runs sessions back to back:

- a session that delivered data resets the backoff, however it ended (a link that
  streamed for an hour and then dropped is not a failure);
- a session that raised one of the expected link errors, or delivered nothing, counts
  as a failure: the delay before the next one doubles up to the cap, with jitter
  (:mod:`core.backoff`);
- anything else (a bug) propagates, so the device's supervisor can log it and restart
  the driver (see ``gateway.app``): it is never swallowed here;
- a stop (cancellation) ends it at once, also one that a library swallowed inside a
  session or turned into a link error (the task is still being cancelled): checked after
  each session and each outcome, never counted as a failure, never waited out in a backoff.

``on_outcome`` hears each session's result (a Bluetooth adapter counts failures to
decide on a reset) and may ask for an early retry by returning True.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from core.backoff import backoff_s
from core.tasks import stop_if_cancelled

__all__ = ["supervise"]


async def supervise(
    session: Callable[[], Awaitable[bool]],
    *,
    errors: tuple[type[BaseException], ...],
    delays: tuple[float, float],
    on_failure: Callable[[BaseException, int], None],
    on_outcome: Callable[[bool, BaseException | None], Awaitable[bool]] | None = None,
    rng: random.Random | None = None,
) -> None:
    """Run ``session`` until cancelled (see the module docstring).

    Parameters
    ----------
    session
        One connection; returns True if it delivered data.
    errors
        Exceptions that mean "the link failed" (retried with backoff).
    delays
        ``(first, cap)`` of the backoff, seconds.
    on_failure
        Called with each link error and the count of consecutive failures.
    on_outcome
        Awaited after each session with (delivered, error); True resets the backoff.
    """
    rng = rng or random.Random()
    failures = 0
    while True:
        stop_if_cancelled()
        error: BaseException | None = None
        try:
            delivered = await session()
        except errors as exc:
            delivered, error = False, exc
        stop_if_cancelled()  # before the backoff: a stop is neither a failure nor an outcome
        if error is not None:
            on_failure(error, failures + 1)
        failures = 0 if delivered else failures + 1
        if on_outcome is not None and await on_outcome(delivered, error):
            failures = 0
        stop_if_cancelled()
        await asyncio.sleep(backoff_s(failures, delays, rng))
