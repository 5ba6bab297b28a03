"""Half-open sample ranges ``(first, end)``: runs of a mask, and subtraction (pure)."""

from __future__ import annotations

import numpy as np

__all__ = ["runs_of", "subtract"]


def runs_of(mask: np.ndarray, offset: int) -> tuple[tuple[int, int], ...]:
    """``(first, end)`` runs where ``mask`` is True, shifted by ``offset``."""
    if not mask.any():
        return ()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return tuple(
        (int(a) + offset, int(b) + offset) for a, b in zip(edges[::2], edges[1::2], strict=True)
    )


def subtract(ranges: list[tuple[int, int]], first: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` without ``[first, end)``."""
    left: list[tuple[int, int]] = []
    for a, b in ranges:
        if end <= a or b <= first:
            left.append((a, b))
            continue
        if a < first:
            left.append((a, first))
        if end < b:
            left.append((end, b))
    return left
