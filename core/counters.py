"""Named counters that a component increments and a status report reads (never copies).

A component declares its counters once, by name, and increments them where things
happen; ``stats()`` methods return :meth:`Counters.snapshot`. An unknown name is a
``KeyError`` (a typo fails in tests, it does not start a new counter).
"""

from __future__ import annotations

__all__ = ["Counters"]


class Counters:
    """Monotonic integer counters with fixed names (all start at 0)."""

    __slots__ = ("_values",)

    def __init__(self, *names: str) -> None:
        """``names``: counter names; an argument may hold several, separated by spaces."""
        self._values = dict.fromkeys((n for arg in names for n in arg.split()), 0)

    def add(self, name: str, n: int = 1) -> int:
        """Add ``n`` to ``name``; returns the new value."""
        if name not in self._values:
            raise KeyError(f"no counter named {name!r}")
        self._values[name] += n
        return self._values[name]

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        """The counters now, as a new dict."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Counters({self._values!r})"
