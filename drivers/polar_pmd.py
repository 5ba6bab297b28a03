"""Polar Measurement Data (PMD): pure encoder/decoder and ECG stream state.

From Polar's public BLE SDK documentation:

* Control point (write, indicate): commands ``op type [settings...]``; each
  setting is ``setting_type count value...`` with u16 LE values.
  Start ECG 130 Hz / 14 bit: ``02 00 00 01 82 00 01 01 0E 00``; stop ``03 00``.
  Responses arrive as indications ``F0 op type status [more] [params...]``.
  Reading the control point gives ``0F`` + a feature bit mask.
* Data (notify): ``type`` (u8, ECG 0), timestamp (u64 LE, ns since
  2000-01-01T00:00:00Z of the *last* sample in the frame), ``frame type``
  (u8, bit 7 = compressed), payload. ECG frame type 0: 3-byte LE signed
  samples in microvolts.

The state that numbers the samples lives in :mod:`drivers.polar_stream`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.units import int24_decode, int24_encode

__all__ = [
    "PmdControlResponse",
    "PmdDataFrame",
    "PmdDecodeError",
    "PmdEcgFrame",
    "PmdMeasurement",
    "PmdOp",
    "PmdSetting",
    "PmdStatus",
    "decode_ecg_frame",
    "encode_ecg_frame",
    "get_settings_command",
    "parse_control_response",
    "parse_data_frame",
    "parse_features",
    "parse_settings",
    "start_command",
    "start_ecg_command",
    "stop_command",
]

_RESPONSE_CODE = 0xF0
_FEATURES_CODE = 0x0F
_COMPRESSED = 0x80
_HEADER = struct.Struct("<BQB")  # measurement type, timestamp ns, frame type
_U16 = struct.Struct("<H")


class PmdDecodeError(ValueError):
    """A PMD control-point response or data frame that does not follow the format."""


class PmdOp(enum.IntEnum):
    """Control point operation codes."""

    GET_SETTINGS = 1
    START = 2
    STOP = 3


class PmdMeasurement(enum.IntEnum):
    """Measurement types (also the first byte of a data frame)."""

    ECG = 0
    PPG = 1
    ACC = 2
    PPI = 3
    GYRO = 5
    MAG = 6


class PmdSetting(enum.IntEnum):
    """Setting types inside start/settings messages (u16 LE values)."""

    SAMPLE_RATE = 0
    RESOLUTION = 1
    RANGE = 2


class PmdStatus(enum.IntEnum):
    """Control point response status codes."""

    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13
    DISK_FULL = 14


# --- control point ------------------------------------------------------------


def _settings_bytes(settings: Mapping[int, int]) -> bytes:
    out = bytearray()
    for setting, value in settings.items():
        out += bytes([int(setting), 1]) + _U16.pack(value)
    return bytes(out)


def start_command(measurement: int, settings: Mapping[int, int]) -> bytes:
    """A START command for ``measurement`` with one u16 value per setting."""
    return bytes([PmdOp.START, int(measurement)]) + _settings_bytes(settings)


def start_ecg_command(fs: int = 130, resolution_bits: int = 14) -> bytes:
    """START ECG; the default is the Polar H10's only mode (130 Hz, 14 bit)."""
    return start_command(
        PmdMeasurement.ECG, {PmdSetting.SAMPLE_RATE: fs, PmdSetting.RESOLUTION: resolution_bits}
    )


def stop_command(measurement: int = PmdMeasurement.ECG) -> bytes:
    """STOP streaming ``measurement``."""
    return bytes([PmdOp.STOP, int(measurement)])


def get_settings_command(measurement: int = PmdMeasurement.ECG) -> bytes:
    """Ask which settings ``measurement`` supports."""
    return bytes([PmdOp.GET_SETTINGS, int(measurement)])


@dataclass(frozen=True, slots=True)
class PmdControlResponse:
    """A decoded control point indication ``F0 op type status [more] [params]``."""

    op: int
    measurement: int
    status: PmdStatus | int
    more: bool = False
    params: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == PmdStatus.SUCCESS

    @property
    def status_name(self) -> str:
        """Readable status, e.g. ``"ALREADY_IN_STATE"`` (or ``"UNKNOWN_42"``)."""
        if isinstance(self.status, PmdStatus):
            return self.status.name
        return f"UNKNOWN_{self.status}"


def parse_control_response(data: bytes | bytearray | memoryview) -> PmdControlResponse:
    """Decode a control point response indication."""
    buf = bytes(data)
    if len(buf) < 4:
        raise PmdDecodeError(f"control point response too short ({len(buf)} bytes)")
    if buf[0] != _RESPONSE_CODE:
        raise PmdDecodeError(f"not a control point response (first byte 0x{buf[0]:02X})")
    op, measurement, status = buf[1], buf[2], buf[3]
    try:
        st: PmdStatus | int = PmdStatus(status)
    except ValueError:
        st = status
    more = len(buf) > 4 and buf[4] != 0
    return PmdControlResponse(op, measurement, st, more, buf[5:])


def parse_settings(params: bytes | bytearray | memoryview) -> dict[int, tuple[int, ...]]:
    """Decode the settings list of a GET_SETTINGS response (u16 values).

    Returns ``{setting_type: (value, ...)}``.
    """
    buf = bytes(params)
    out: dict[int, tuple[int, ...]] = {}
    pos = 0
    while pos < len(buf):
        if pos + 2 > len(buf):
            raise PmdDecodeError("settings: truncated setting header")
        setting, count = buf[pos], buf[pos + 1]
        pos += 2
        end = pos + 2 * count
        if end > len(buf):
            raise PmdDecodeError(f"settings: type {setting} declares {count} values, truncated")
        out[setting] = tuple(v for (v,) in _U16.iter_unpack(buf[pos:end]))
        pos = end
    return out


def parse_features(data: bytes | bytearray | memoryview) -> frozenset[int]:
    """Decode a control point read (``0F`` + bit mask) into measurement types."""
    buf = bytes(data)
    if len(buf) < 2 or buf[0] != _FEATURES_CODE:
        raise PmdDecodeError("not a PMD feature read value")
    mask = int.from_bytes(buf[1:], "little")
    return frozenset(bit for bit in range(8 * (len(buf) - 1)) if mask >> bit & 1)


# --- data frames --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PmdDataFrame:
    """A data notification split into header fields and payload."""

    measurement: int
    timestamp_ns: int
    frame_type: int
    compressed: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class PmdEcgFrame:
    """Decoded ECG frame: samples in microvolts (int32, read-only).

    ``timestamp_ns`` is the device time of the last sample, ns since 2000-01-01.
    """

    timestamp_ns: int
    samples_uv: np.ndarray

    @property
    def n(self) -> int:
        return int(self.samples_uv.shape[0])


def parse_data_frame(data: bytes | bytearray | memoryview) -> PmdDataFrame:
    """Split a data notification into its header and payload."""
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise PmdDecodeError(f"data frame too short ({len(buf)} < {_HEADER.size} bytes)")
    measurement, ts, frame_type = _HEADER.unpack_from(buf)
    return PmdDataFrame(
        measurement=measurement,
        timestamp_ns=ts,
        frame_type=frame_type & ~_COMPRESSED,
        compressed=bool(frame_type & _COMPRESSED),
        payload=buf[_HEADER.size :],
    )


def decode_ecg_frame(data: bytes | bytearray | memoryview) -> PmdEcgFrame:
    """Decode an uncompressed ECG data notification (frame type 0).

    Raises
    ------
    PmdDecodeError
        Not ECG, compressed or unknown frame type, empty payload, or a payload
        length that is not a multiple of 3.
    """
    frame = parse_data_frame(data)
    if frame.measurement != PmdMeasurement.ECG:
        raise PmdDecodeError(f"not an ECG frame (measurement type {frame.measurement})")
    if frame.compressed or frame.frame_type != 0:
        raise PmdDecodeError(
            f"unsupported ECG frame type {frame.frame_type} (compressed={frame.compressed})"
        )
    n, rest = divmod(len(frame.payload), 3)
    if rest or n == 0:
        raise PmdDecodeError(f"ECG payload of {len(frame.payload)} bytes is not n * 3, n > 0")
    uv = int24_decode(frame.payload)[:, 0]
    uv.flags.writeable = False
    return PmdEcgFrame(frame.timestamp_ns, uv)


def encode_ecg_frame(timestamp_ns: int, samples_uv: np.ndarray) -> bytes:
    """Encode an ECG data notification (frame type 0). Values are clipped to 24 bit."""
    return _HEADER.pack(PmdMeasurement.ECG, timestamp_ns, 0) + int24_encode(samples_uv)
