"""Times on the wire and in pages: ISO-8601 UTC with milliseconds and a ``Z``."""

from __future__ import annotations

import datetime as dt

__all__ = ["iso", "parse_iso"]


def iso(t: float | None) -> str | None:
    """POSIX seconds → ``2026-12-01T16:19:06.469Z`` (None stays None)."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def parse_iso(text: str) -> float:
    """ISO-8601 (a naive time is UTC) → POSIX seconds; ValueError when not a time."""
    t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()
