"""Blocking database work from the event loop: in a worker thread."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_db"]

T = TypeVar("T")


async def run_db(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run ``fn(*args, **kw)`` (SQLAlchemy calls) in the default thread pool."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kw))
