"""Units and encodings shared by every protocol: the 2000 epoch, 24-bit integers, µV → mV, UTC.

Device clocks count from 2000-01-01T00:00:00Z (Polar PMD, Bluetooth Current Time, our
patch profile and cart); samples travel as integer microvolts (int16 or int24 on the
wire) and become float32 millivolts in a :class:`~core.block.SampleBlock`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

__all__ = ["EPOCH_2000", "int24_decode", "int24_encode", "iso_utc", "uv_to_mv"]

EPOCH_2000 = 946_684_800.0
"""2000-01-01T00:00:00Z as POSIX seconds (the epoch of device clocks)."""

_INT24_MIN, _INT24_MAX = -(1 << 23), (1 << 23) - 1


def uv_to_mv(uv: np.ndarray) -> np.ndarray:
    """Integer microvolts → float32 millivolts, shape ``(n, leads)`` (1-D becomes one lead)."""
    mv = np.asarray(uv).astype(np.float32) / np.float32(1000.0)
    return mv[:, None] if mv.ndim == 1 else mv


def int24_decode(raw: bytes | memoryview, n_columns: int = 1) -> np.ndarray:
    """Little-endian signed 24-bit integers → int32 array of shape ``(n, n_columns)``.

    Raises ``ValueError`` when ``raw`` is not a whole number of rows.
    """
    if len(raw) % (3 * n_columns):
        raise ValueError(f"{len(raw)} bytes are not rows of {n_columns} x 3 bytes")
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    v = (v ^ 0x800000) - 0x800000  # sign-extend bit 23
    return v.reshape(-1, n_columns)


def int24_encode(values: np.ndarray) -> bytes:
    """Integers (any shape, row-major) → little-endian signed 24-bit bytes, clipped."""
    x = np.clip(np.asarray(values, dtype=np.int64), _INT24_MIN, _INT24_MAX)
    return x.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def iso_utc(t: float) -> str:
    """POSIX seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T02:54:35.123Z``.

    Times outside what a calendar can show (a corrupt device clock) come out as
    ``"invalid"`` rather than raising: a report must never fail on a bad timestamp.
    """
    try:
        stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return "invalid"
    return stamp.replace("+00:00", "Z")
