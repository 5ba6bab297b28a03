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
:class:`CartStream` turns decoded messages into the gateway's types: sample
blocks with continuous sequence numbers, :class:`~drivers.events.Gap` s for
samples lost on the line, and stage / blood pressure / lead-off events.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass, field

import numpy as np

from drivers.events import DeviceEvent, Gap
from dsp.block import SampleBlock

__all__ = [
    "LEADS_12",
    "PROTOCOL_VERSION",
    "BloodPressureMsg",
    "CartDecoder",
    "CartMessage",
    "CartStream",
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
MAX_BODY = 4096  # bytes; longer runs without a delimiter are discarded as noise
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
    raw = x.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return encode_frame(FrameType.ECG, frame_seq, _ECG_HEAD.pack(first_sample, n) + raw)


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


def _int24(raw: bytes, n: int, n_leads: int) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    v = np.where(v & 0x800000, v - 0x1000000, v)
    return v.reshape(n, n_leads)


# --- decoding ---------------------------------------------------------------------------
@dataclass
class DecoderStats:
    """Counters of a :class:`CartDecoder` (frames by outcome, bytes)."""

    bytes_in: int = 0
    frames_ok: int = 0
    cobs_errors: int = 0
    crc_errors: int = 0
    bad_version: int = 0
    bad_length: int = 0
    unknown_type: int = 0
    too_long: int = 0
    frames_lost: int = 0  # jumps in frame_seq
    bytes_discarded: int = 0

    @property
    def errors(self) -> int:
        return (
            self.cobs_errors
            + self.crc_errors
            + self.bad_version
            + self.bad_length
            + self.unknown_type
            + self.too_long
        )


class CartDecoder:
    """Sans-I/O decoder: ``feed(bytes) -> [messages]``; errors counted in :attr:`stats`.

    Parameters
    ----------
    n_leads
        Leads per ECG sample until a HELLO says otherwise.
    """

    def __init__(self, n_leads: int = 12) -> None:
        self.n_leads = n_leads
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self._buf = bytearray()
        self._synced = False  # bytes before the first delimiter may be half a frame
        self._last_frame_seq: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[CartMessage]:
        """Take bytes from the line; return the messages completed by them."""
        self.stats.bytes_in += len(data)
        self._buf += data
        out: list[CartMessage] = []
        while True:
            end = self._buf.find(b"\x00")
            if end < 0:
                if len(self._buf) > 2 * MAX_BODY:
                    self.stats.too_long += 1
                    self.stats.bytes_discarded += len(self._buf)
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
                setattr(st, counter, getattr(st, counter) + 1)
                self._note(text)
            st.bytes_discarded += len(chunk) + 1

        if len(chunk) > MAX_BODY + 16:
            bad("too_long", f"frame of {len(chunk)} bytes")
            return None
        try:
            body = cobs_decode(chunk)
        except CobsError as exc:
            bad("cobs_errors", str(exc))
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
                st.frames_lost += lost
        self._last_frame_seq = fseq
        st.frames_ok += 1
        return msg

    def _parse(self, ftype: int, fseq: int, p: bytes) -> CartMessage | None:
        if ftype == FrameType.ECG:
            first, n = _ECG_HEAD.unpack_from(p)
            raw = p[_ECG_HEAD.size :]
            if len(raw) != n * self.n_leads * 3:
                raise ValueError(f"{len(raw)} sample bytes for {n} x {self.n_leads} leads")
            return EcgMsg(fseq, first, _int24(raw, n, self.n_leads))
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


# --- stream -----------------------------------------------------------------------------
@dataclass
class StreamStats:
    samples: int = 0
    blocks: int = 0
    gaps: int = 0
    gap_samples: int = 0
    duplicate_samples: int = 0
    restarts: int = 0


@dataclass
class CartStream:
    """Turns decoded cart messages into sample blocks, gaps and device events.

    Sample sequence numbers are the cart's own sample counter. Times come from
    the first ECG frame's arrival (``now``, UTC POSIX seconds, taken as the time of
    its last sample) and then advance by 1/fs per sample, so block times stay
    monotonic and exact; the cart restarting its counter re-anchors them.
    """

    source: str
    fs: float = 500.0
    leads: tuple[str, ...] = LEADS_12
    stats: StreamStats = field(default_factory=StreamStats)
    _anchor: tuple[int, float] | None = None
    _next: int | None = None

    def utc_of(self, sample: int) -> float | None:
        """UTC POSIX seconds of cart sample ``sample`` (None before the first ECG frame)."""
        if self._anchor is None:
            return None
        seq0, t0 = self._anchor
        return t0 + (sample - seq0) / self.fs

    def handle(self, msg: CartMessage, now: float) -> list[SampleBlock | Gap | DeviceEvent]:
        """Outputs for one message; ``now`` is its arrival time (UTC POSIX s)."""
        if isinstance(msg, EcgMsg):
            return self._ecg(msg, now)
        if isinstance(msg, HelloMsg):
            self.fs = float(msg.fs)
            self.leads = msg.leads
            data = {"serial": msg.serial, "firmware": msg.firmware, "fs": msg.fs}
            return [DeviceEvent(self.source, "device_info", now, None, data)]
        at = getattr(msg, "at_sample", None)
        t = self.utc_of(at) if at is not None else None
        when = now if t is None else t
        if isinstance(msg, StageMsg):
            data = {
                "stage": msg.stage,
                "phase": msg.phase.name.lower(),
                "name": msg.name,
                "speed_kmh": msg.speed_kmh,
                "grade_pct": msg.grade_pct,
            }
            return [DeviceEvent(self.source, "stage", when, at, data)]
        if isinstance(msg, BloodPressureMsg):
            data = {"systolic_mmhg": msg.systolic_mmhg, "diastolic_mmhg": msg.diastolic_mmhg}
            return [DeviceEvent(self.source, "blood_pressure", when, at, data)]
        if isinstance(msg, LeadOffMsg):
            off = [self.leads[i] for i in range(len(self.leads)) if msg.mask >> i & 1]
            return [DeviceEvent(self.source, "lead_off", when, at, {"leads": off})]
        return []  # heartbeat: only feeds the silence watchdog

    def _ecg(self, msg: EcgMsg, now: float) -> list[SampleBlock | Gap | DeviceEvent]:
        out: list[SampleBlock | Gap | DeviceEvent] = []
        first, x = msg.first_sample, msg.samples_uv
        n = x.shape[0]
        if n == 0:
            return out
        if self._next is not None and first < self._next - 10 * self.fs:
            # the cart's sample counter went back: it restarted
            self.stats.restarts += 1
            out.append(DeviceEvent(self.source, "restarted", now, first, {"previous": self._next}))
            self._anchor = None
            self._next = None
        if self._anchor is None:
            self._anchor = (first, now - (n - 1) / self.fs)
        if self._next is not None:
            if first > self._next:
                lost = Gap(
                    self.source,
                    self._next,
                    first,
                    self.utc_of(self._next) or now,
                    self.utc_of(first) or now,
                    reason="serial frames lost",
                    final=True,
                )
                self.stats.gaps += 1
                self.stats.gap_samples += lost.n_samples
                out.append(lost)
            elif first < self._next:
                skip = min(self._next - first, n)
                self.stats.duplicate_samples += skip
                x = x[skip:]
                first += skip
                n = x.shape[0]
                if n == 0:
                    return out
        self._next = first + n
        start = self.utc_of(first)
        assert start is not None
        mv = x.astype(np.float32) / np.float32(1000.0)
        out.append(SampleBlock(mv, self.fs, start, first, self.leads, self.source))
        self.stats.samples += n
        self.stats.blocks += 1
        return out
