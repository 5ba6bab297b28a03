"""Stress-test cart serial protocol v1: framing, decoding and encoding (pure, no I/O).

The wire format is specified in ``docs/protocols/cart-serial.md``. In short::

    frame   = COBS(body) 0x00
    body    = version:u8 (=1)  type:u8  frame_seq:u16  payload  crc:u16
    crc     = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over version..payload

All integers are little-endian. ECG samples are signed 24-bit integers in
microvolts, interleaved by sample (s0 lead0..lead11, s1 lead0..., ...).

:class:`CartDecoder` takes bytes as they come from the port (any split, any
garbage) and returns decoded messages; every malformed frame is counted by
cause and skipped, and decoding resumes at the next delimiter.
:mod:`drivers.cart_stream` turns decoded messages into the gateway's types.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

import numpy as np

from core.counters import Counters
from core.units import int24_decode, int24_encode

__all__ = [
    "ERRORS",
    "LEADS_12",
    "PROTOCOL_VERSION",
    "BloodPressureMsg",
    "CartDecoder",
    "CartMessage",
    "CommandMsg",
    "EcgMsg",
    "FrameType",
    "HeartbeatMsg",
    "HelloMsg",
    "LeadOffMsg",
    "Phase",
    "StageMsg",
    "cobs_decode",
    "cobs_encode",
    "cobs_max_len",
    "crc16",
    "encode_blood_pressure",
    "encode_command",
    "encode_ecg",
    "encode_frame",
    "encode_heartbeat",
    "encode_hello",
    "encode_lead_off",
    "encode_stage",
]

PROTOCOL_VERSION = 1
LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MAX_BODY = 4096  # bytes before COBS; longer frames are discarded (counted as too_long)
_HEADER = struct.Struct("<BBH")


class FrameType(enum.IntEnum):
    HELLO = 0x01
    ECG = 0x02
    STAGE = 0x03
    BLOOD_PRESSURE = 0x04
    LEAD_OFF = 0x05
    HEARTBEAT = 0x06
    # host -> cart
    START = 0x80
    STOP = 0x81


class Phase(enum.IntEnum):
    PRETEST = 0
    EXERCISE = 1
    RECOVERY = 2


# --- framing --------------------------------------------------------------------------
def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF, no reflection, no xorout)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_max_len(n: int) -> int:
    """The longest COBS encoding of ``n`` bytes (no zero byte among them: one code byte per
    254 data bytes, and a final code byte): 4,113 for a 4,096-byte body."""
    return n + n // 254 + 1


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` without any 0x00 (delimiter not added)."""
    out = bytearray()
    for part in bytes(data).split(b"\x00"):
        while len(part) >= 254:
            out.append(0xFF)
            out += part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    return bytes(out)


class CobsError(ValueError):
    """Malformed COBS data."""


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; :class:`CobsError` on malformed input."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise CobsError("COBS block length runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside a COBS frame")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(ftype: int, frame_seq: int, payload: bytes) -> bytes:
    """One complete frame on the wire: COBS-encoded body plus the 0x00 delimiter."""
    body = _HEADER.pack(PROTOCOL_VERSION, ftype, frame_seq & 0xFFFF) + payload
    body += struct.pack("<H", crc16(body))
    return cobs_encode(body) + b"\x00"


# --- messages ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HelloMsg:
    frame_seq: int
    fs: int
    n_leads: int
    serial: str
    firmware: str
    leads: tuple[str, ...] = LEADS_12


@dataclass(frozen=True, slots=True)
class EcgMsg:
    frame_seq: int
    first_sample: int
    samples_uv: np.ndarray  # (n, n_leads) int32 µV


@dataclass(frozen=True, slots=True)
class StageMsg:
    frame_seq: int
    at_sample: int
    stage: int
    phase: Phase
    speed_kmh: float
    grade_pct: float
    name: str


@dataclass(frozen=True, slots=True)
class BloodPressureMsg:
    frame_seq: int
    at_sample: int
    systolic_mmhg: int
    diastolic_mmhg: int


@dataclass(frozen=True, slots=True)
class LeadOffMsg:
    frame_seq: int
    at_sample: int
    mask: int  # bit i set: lead i has lost contact


@dataclass(frozen=True, slots=True)
class HeartbeatMsg:
    frame_seq: int
    at_sample: int


@dataclass(frozen=True, slots=True)
class CommandMsg:
    """A host -> cart command (what the simulated cart receives)."""

    frame_seq: int
    command: FrameType


CartMessage = (
    HelloMsg | EcgMsg | StageMsg | BloodPressureMsg | LeadOffMsg | HeartbeatMsg | CommandMsg
)

_HELLO = struct.Struct("<HBB16s8s")  # fs, n_leads, sample format, serial, firmware
_ECG_HEAD = struct.Struct("<IB")  # first sample, n samples
_STAGE = struct.Struct("<IBBHh16s")  # at, stage, phase, speed x10, grade x10, name
_BP = struct.Struct("<IHH")
_LEAD_OFF = struct.Struct("<IH")
_HEARTBEAT = struct.Struct("<I")
SAMPLE_FORMAT_INT24_UV = 1


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")


def encode_hello(frame_seq: int, fs: int, serial: str, firmware: str, n_leads: int = 12) -> bytes:
    payload = _HELLO.pack(
        fs, n_leads, SAMPLE_FORMAT_INT24_UV, serial.encode()[:16], firmware.encode()[:8]
    )
    return encode_frame(FrameType.HELLO, frame_seq, payload)


def encode_ecg(frame_seq: int, first_sample: int, samples_uv: np.ndarray) -> bytes:
    """ECG frame; ``samples_uv`` (n, leads) integers in µV (clipped to 24 bits), n <= 255."""
    x = np.clip(np.asarray(samples_uv, dtype=np.int64), -(1 << 23), (1 << 23) - 1)
    n = x.shape[0]
    if n > 255:
        raise ValueError("at most 255 samples per ECG frame")
    return encode_frame(FrameType.ECG, frame_seq, _ECG_HEAD.pack(first_sample, n) + int24_encode(x))


def encode_stage(
    frame_seq: int,
    at_sample: int,
    stage: int,
    phase: Phase,
    speed_kmh: float,
    grade_pct: float,
    name: str,
) -> bytes:
    payload = _STAGE.pack(
        at_sample,
        stage,
        int(phase),
        int(round(speed_kmh * 10)),
        int(round(grade_pct * 10)),
        name.encode()[:16],
    )
    return encode_frame(FrameType.STAGE, frame_seq, payload)


def encode_blood_pressure(frame_seq: int, at_sample: int, systolic: int, diastolic: int) -> bytes:
    return encode_frame(
        FrameType.BLOOD_PRESSURE, frame_seq, _BP.pack(at_sample, systolic, diastolic)
    )


def encode_lead_off(frame_seq: int, at_sample: int, mask: int) -> bytes:
    return encode_frame(FrameType.LEAD_OFF, frame_seq, _LEAD_OFF.pack(at_sample, mask))


def encode_heartbeat(frame_seq: int, at_sample: int) -> bytes:
    return encode_frame(FrameType.HEARTBEAT, frame_seq, _HEARTBEAT.pack(at_sample))


def encode_command(ftype: FrameType, frame_seq: int = 0) -> bytes:
    """A host -> cart command (START or STOP), no payload."""
    return encode_frame(ftype, frame_seq, b"")


# --- decoding ---------------------------------------------------------------------------
ERRORS = "cobs_errors crc_errors bad_version bad_length unknown_type too_long"
"""The decoder's counters of frames thrown away, by cause."""


class CartDecoder:
    """Sans-I/O decoder: ``feed(bytes) -> [messages]``; errors counted in :attr:`stats`.

    Parameters
    ----------
    n_leads
        Leads per ECG sample until a HELLO says otherwise.
    """

    def __init__(self, n_leads: int = 12) -> None:
        self.n_leads = n_leads
        self.stats = Counters(f"bytes_in frames_ok frames_lost bytes_discarded {ERRORS}")
        self.last_error: str | None = None
        self._buf = bytearray()
        self._synced = False  # bytes before the first delimiter may be half a frame
        self._last_frame_seq: int | None = None

    def resync(self) -> None:
        """The line was reopened: drop the partial frame and wait for the next delimiter.

        Counters carry on (they count since the decoder was created).
        """
        self._buf.clear()
        self._synced = False
        self._last_frame_seq = None

    @property
    def errors(self) -> int:
        """Frames thrown away, all causes."""
        return sum(self.stats[name] for name in ERRORS.split())

    def feed(self, data: bytes | bytearray | memoryview) -> list[CartMessage]:
        """Take bytes from the line; return the messages completed by them."""
        self.stats.add("bytes_in", len(data))
        self._buf += data
        out: list[CartMessage] = []
        while True:
            end = self._buf.find(b"\x00")
            if end < 0:
                if len(self._buf) > 2 * MAX_BODY:
                    self.stats.add("too_long")
                    self.stats.add("bytes_discarded", len(self._buf))
                    self._note("no frame delimiter in too many bytes")
                    self._buf.clear()
                return out
            chunk = bytes(self._buf[:end])
            del self._buf[: end + 1]
            # Bytes before the first delimiter may be the tail of a frame sent before we
            # started listening: decoded if whole, but not counted as errors.
            counted = self._synced
            self._synced = True
            if not chunk:
                continue  # idle delimiters
            msg = self._frame(chunk, count_errors=counted)
            if msg is not None:
                out.append(msg)

    def _note(self, text: str) -> None:
        self.last_error = text

    def _frame(self, chunk: bytes, count_errors: bool) -> CartMessage | None:
        st = self.stats

        def bad(counter: str, text: str) -> None:
            if count_errors:
                st.add(counter)
                self._note(text)
            st.add("bytes_discarded", len(chunk) + 1)

        if len(chunk) > cobs_max_len(MAX_BODY):  # no body of MAX_BODY bytes encodes longer
            bad("too_long", f"frame of {len(chunk)} bytes")
            return None
        try:
            body = cobs_decode(chunk)
        except CobsError as exc:
            bad("cobs_errors", str(exc))
            return None
        if len(body) > MAX_BODY:
            bad("too_long", f"frame body of {len(body)} bytes")
            return None
        if len(body) < _HEADER.size + 2:
            bad("bad_length", f"frame body of {len(body)} bytes")
            return None
        (crc,) = struct.unpack_from("<H", body, len(body) - 2)
        if crc16(body[:-2]) != crc:
            bad("crc_errors", "CRC mismatch")
            return None
        version, ftype, fseq = _HEADER.unpack_from(body)
        if version != PROTOCOL_VERSION:
            bad("bad_version", f"protocol version {version}")
            return None
        payload = body[_HEADER.size : -2]
        try:
            msg = self._parse(ftype, fseq, payload)
        except (struct.error, ValueError) as exc:
            bad("bad_length", f"type 0x{ftype:02x}: {exc}")
            return None
        if msg is None:
            bad("unknown_type", f"unknown frame type 0x{ftype:02x}")
            return None
        if self._last_frame_seq is not None:
            lost = (fseq - self._last_frame_seq - 1) & 0xFFFF
            if lost < 0x8000:
                st.add("frames_lost", lost)
        self._last_frame_seq = fseq
        st.add("frames_ok")
        return msg

    def _parse(self, ftype: int, fseq: int, p: bytes) -> CartMessage | None:
        if ftype == FrameType.ECG:
            first, n = _ECG_HEAD.unpack_from(p)
            raw = p[_ECG_HEAD.size :]
            if len(raw) != n * self.n_leads * 3:
                raise ValueError(f"{len(raw)} sample bytes for {n} x {self.n_leads} leads")
            return EcgMsg(fseq, first, int24_decode(raw, self.n_leads))
        if ftype == FrameType.HELLO:
            fs, n_leads, fmt, serial, fw = _HELLO.unpack(p)
            if fmt != SAMPLE_FORMAT_INT24_UV or n_leads != 12 or not 100 <= fs <= 2000:
                raise ValueError(f"unsupported stream: {fs} Hz, {n_leads} leads, format {fmt}")
            self.n_leads = n_leads
            return HelloMsg(fseq, fs, n_leads, _text(serial), _text(fw))
        if ftype == FrameType.STAGE:
            at, stage, phase, speed, grade, name = _STAGE.unpack(p)
            return StageMsg(fseq, at, stage, Phase(phase), speed / 10, grade / 10, _text(name))
        if ftype == FrameType.BLOOD_PRESSURE:
            at, sys_, dia = _BP.unpack(p)
            return BloodPressureMsg(fseq, at, sys_, dia)
        if ftype == FrameType.LEAD_OFF:
            at, mask = _LEAD_OFF.unpack(p)
            return LeadOffMsg(fseq, at, mask)
        if ftype == FrameType.HEARTBEAT:
            (at,) = _HEARTBEAT.unpack(p)
            return HeartbeatMsg(fseq, at)
        if ftype in (FrameType.START, FrameType.STOP):
            if p:
                raise ValueError("commands carry no payload")
            return CommandMsg(fseq, FrameType(ftype))
        return None
