"""Our chest-patch GATT profile with backfill: the codec (pure, no I/O).

The contract is ``docs/protocols/patch-gatt.md``. The patch records every
sample into its own memory and numbers it (``seq``, u32, 250 Hz); live frames
are notified while connected; after a reconnect the gateway asks for the
ranges it missed through the record access control point (RACP) and the patch
re-sends them as backfill frames. Nothing is lost unless the patch's memory no
longer holds it — and then the gap is exact and final.

- :func:`decode_ecg_frame` / :func:`encode_ecg_frame`: ECG and backfill frames.
- RACP commands and responses, device time, status and symptom button codecs.

The state that uses them lives in :mod:`drivers.patch_stream` (the gap ledger and the
stream of blocks) and :mod:`drivers.patch_session` (the conversation).

Malformed input raises :class:`PatchDecodeError` (a ``ValueError``); callers
count it and drop the notification.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np

from core.units import EPOCH_2000

__all__ = [
    "FS",
    "UV_PER_LSB",
    "DeviceTime",
    "EcgFrame",
    "PatchDecodeError",
    "PatchStatus",
    "RacpOp",
    "RacpResponse",
    "RacpStatus",
    "SymptomPress",
    "decode_device_time",
    "decode_ecg_frame",
    "decode_racp_command",
    "decode_racp_response",
    "decode_status",
    "decode_symptom",
    "encode_abort",
    "encode_device_time",
    "encode_ecg_frame",
    "encode_racp_response",
    "encode_report_extent",
    "encode_request_range",
    "encode_status",
    "encode_symptom",
]

FS = 250.0  # Hz
UV_PER_LSB = 2.0  # int16 samples: ±65.5 mV range
FLAG_BACKFILL = 0x01
FLAG_LEAD_OFF = 0x02
_ECG_HEAD = struct.Struct("<BIB")  # flags, first seq, n
_TIME = struct.Struct("<QI")  # µs since 2000, seq at that instant
_STATUS = struct.Struct("<BBBI")  # battery %, contact flags, storage used %, current seq
_SYMPTOM = struct.Struct("<HIQ")  # press id, seq at press, device time µs


class PatchDecodeError(ValueError):
    """A notification or response that does not follow the profile."""


# --- ECG frames -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EcgFrame:
    first_seq: int
    samples_uv: np.ndarray  # int32 µV
    backfill: bool = False
    lead_off: bool = False

    @property
    def end_seq(self) -> int:
        return self.first_seq + int(self.samples_uv.size)


def encode_ecg_frame(
    first_seq: int, samples_uv: np.ndarray, *, backfill: bool = False, lead_off: bool = False
) -> bytes:
    """Frame bytes; samples in µV are quantised to 2 µV and clipped to int16."""
    q = np.clip(np.rint(np.asarray(samples_uv, dtype=np.float64) / UV_PER_LSB), -32768, 32767)
    n = q.size
    if not 0 < n <= 255:
        raise ValueError("1 to 255 samples per frame")
    flags = (FLAG_BACKFILL if backfill else 0) | (FLAG_LEAD_OFF if lead_off else 0)
    return _ECG_HEAD.pack(flags, first_seq & 0xFFFFFFFF, n) + q.astype("<i2").tobytes()


def decode_ecg_frame(data: bytes | bytearray | memoryview) -> EcgFrame:
    data = bytes(data)
    if len(data) < _ECG_HEAD.size:
        raise PatchDecodeError(f"ECG frame of {len(data)} bytes")
    flags, first, n = _ECG_HEAD.unpack_from(data)
    body = data[_ECG_HEAD.size :]
    if n == 0 or len(body) != 2 * n:
        raise PatchDecodeError(f"ECG frame says {n} samples but carries {len(body)} bytes")
    if flags & ~(FLAG_BACKFILL | FLAG_LEAD_OFF):
        raise PatchDecodeError(f"unknown ECG frame flags 0x{flags:02x}")
    uv = np.frombuffer(body, dtype="<i2").astype(np.int32) * int(UV_PER_LSB)
    return EcgFrame(first, uv, bool(flags & FLAG_BACKFILL), bool(flags & FLAG_LEAD_OFF))


# --- record access control point ---------------------------------------------------------------
class RacpOp(enum.IntEnum):
    REPORT_EXTENT = 0x01  # -> EXTENT response
    REQUEST_RANGE = 0x02  # u32 first, u32 end -> frames on BACKFILL, then RANGE_DONE
    ABORT = 0x03  # stop a running backfill -> RANGE_DONE with ABORTED
    EXTENT = 0x81  # u32 oldest seq held, u32 next seq to be recorded
    RANGE_DONE = 0x82  # u8 status, u32 first, u32 end actually sent


class RacpStatus(enum.IntEnum):
    SUCCESS = 0
    NOT_HELD = 1  # part or all of the range is no longer in memory (only what is held was sent)
    BUSY = 2
    INVALID = 3
    ABORTED = 4


@dataclass(frozen=True, slots=True)
class RacpResponse:
    op: RacpOp
    status: RacpStatus = RacpStatus.SUCCESS
    first: int = 0
    end: int = 0


def encode_report_extent() -> bytes:
    return bytes([RacpOp.REPORT_EXTENT])


def encode_abort() -> bytes:
    return bytes([RacpOp.ABORT])


def encode_request_range(first: int, end: int) -> bytes:
    if not 0 <= first < end <= 0xFFFFFFFF:
        raise ValueError(f"bad range {first}..{end}")
    return struct.pack("<BII", RacpOp.REQUEST_RANGE, first, end)


def encode_racp_response(r: RacpResponse) -> bytes:
    if r.op == RacpOp.EXTENT:
        return struct.pack("<BII", r.op, r.first, r.end)
    return struct.pack("<BBII", r.op, r.status, r.first, r.end)


def decode_racp_response(data: bytes | bytearray | memoryview) -> RacpResponse:
    data = bytes(data)
    try:
        op = RacpOp(data[0])
        if op == RacpOp.EXTENT:
            _, first, end = struct.unpack("<BII", data)
            return RacpResponse(op, RacpStatus.SUCCESS, first, end)
        if op == RacpOp.RANGE_DONE:
            _, status, first, end = struct.unpack("<BBII", data)
            return RacpResponse(op, RacpStatus(status), first, end)
    except (IndexError, ValueError, struct.error) as exc:
        raise PatchDecodeError(f"bad RACP response {data.hex()}: {exc}") from None
    raise PatchDecodeError(f"not a RACP response: {data.hex()}")


def decode_racp_command(data: bytes | bytearray | memoryview) -> tuple[RacpOp, int, int]:
    """(op, first, end) of a command the patch receives (first = end = 0 when unused)."""
    data = bytes(data)
    try:
        op = RacpOp(data[0])
        if op == RacpOp.REQUEST_RANGE:
            _, first, end = struct.unpack("<BII", data)
            return op, first, end
        if op in (RacpOp.REPORT_EXTENT, RacpOp.ABORT) and len(data) == 1:
            return op, 0, 0
    except (IndexError, ValueError, struct.error) as exc:
        raise PatchDecodeError(f"bad RACP command {data.hex()}: {exc}") from None
    raise PatchDecodeError(f"not a RACP command: {data.hex()}")


# --- time, status, symptom ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceTime:
    """The patch clock at sample ``seq``: microseconds since 2000-01-01 UTC."""

    us_since_2000: int
    seq: int

    @property
    def posix(self) -> float:
        return EPOCH_2000 + self.us_since_2000 / 1e6


def encode_device_time(t: DeviceTime) -> bytes:
    return _TIME.pack(t.us_since_2000, t.seq)


def decode_device_time(data: bytes | bytearray | memoryview) -> DeviceTime:
    try:
        us, seq = _TIME.unpack(bytes(data))
    except struct.error as exc:
        raise PatchDecodeError(f"device time: {exc}") from None
    return DeviceTime(us, seq)


@dataclass(frozen=True, slots=True)
class PatchStatus:
    battery_percent: int
    lead_off: bool
    storage_percent: int
    seq: int


def encode_status(s: PatchStatus) -> bytes:
    return _STATUS.pack(s.battery_percent, int(s.lead_off), s.storage_percent, s.seq)


def decode_status(data: bytes | bytearray | memoryview) -> PatchStatus:
    try:
        batt, contact, storage, seq = _STATUS.unpack(bytes(data))
    except struct.error as exc:
        raise PatchDecodeError(f"status: {exc}") from None
    if batt > 100 or storage > 100 or contact & ~1:
        raise PatchDecodeError(f"status out of range: {bytes(data).hex()}")
    return PatchStatus(batt, bool(contact & 1), storage, seq)


@dataclass(frozen=True, slots=True)
class SymptomPress:
    press_id: int
    seq: int
    us_since_2000: int


def encode_symptom(p: SymptomPress) -> bytes:
    return _SYMPTOM.pack(p.press_id, p.seq, p.us_since_2000)


def decode_symptom(data: bytes | bytearray | memoryview) -> SymptomPress:
    try:
        return SymptomPress(*_SYMPTOM.unpack(bytes(data)))
    except struct.error as exc:
        raise PatchDecodeError(f"symptom press: {exc}") from None
