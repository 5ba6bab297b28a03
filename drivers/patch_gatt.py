"""Our chest-patch GATT profile with backfill: codec, gap ledger and stream (pure, no I/O).

The contract is ``docs/protocols/patch-gatt.md``. The patch records every
sample into its own memory and numbers it (``seq``, u32, 250 Hz); live frames
are notified while connected; after a reconnect the gateway asks for the
ranges it missed through the record access control point (RACP) and the patch
re-sends them as backfill frames. Nothing is lost unless the patch's memory no
longer holds it — and then the gap is exact and final.

- :func:`decode_ecg_frame` / :func:`encode_ecg_frame`: ECG and backfill frames.
- RACP commands and responses, device time, status and symptom button codecs.
- :class:`GapLedger`: every missing range, from detection to filled or lost.
- :class:`PatchStream`: frames in, :class:`~dsp.block.SampleBlock` s (each
  sample exactly once, backfill possibly out of order) and final
  :class:`~drivers.events.Gap` s out.

Malformed input raises :class:`PatchDecodeError` (a ``ValueError``); callers
count it and drop the notification.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import numpy as np

from drivers.clock import ClockTracker
from drivers.events import Gap
from dsp.block import SampleBlock

__all__ = [
    "EPOCH_2000",
    "FS",
    "UV_PER_LSB",
    "DeviceTime",
    "EcgFrame",
    "GapLedger",
    "PatchDecodeError",
    "PatchStatus",
    "PatchStream",
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
EPOCH_2000 = 946_684_800.0  # 2000-01-01T00:00:00Z as POSIX seconds
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


# --- gap ledger ---------------------------------------------------------------------------------
class GapState(enum.Enum):
    PENDING = "pending"  # known missing, not asked for yet (or asked and not answered)
    REQUESTED = "requested"
    LOST = "lost"  # the patch no longer holds it: final


@dataclass
class LedgerEntry:
    first: int
    end: int
    state: GapState = GapState.PENDING
    requests: int = 0


@dataclass
class GapLedger:
    """Missing sample ranges of one patch, from detection to filled or lost.

    ``received`` ranges are merged as they arrive; a range between the highest
    sample seen and a new frame's first sample becomes a PENDING gap. Filled
    parts leave the ledger; :meth:`expire` turns parts older than the patch's
    oldest held sample into LOST (final) gaps.
    """

    entries: list[LedgerEntry] = field(default_factory=list)
    next_seq: int | None = None  # one past the highest sample received

    def receive(self, first: int, end: int) -> list[tuple[int, int]]:
        """Record samples [first, end); returns the parts that are new, in order."""
        if self.next_seq is None:
            self.next_seq = end
            return [(first, end)]
        old = self.next_seq
        if first >= old:
            if first > old:
                self.entries.append(LedgerEntry(old, first))
            self.next_seq = end
            return [(first, end)]
        new = self._fill(first, min(end, old))  # only what fills a known gap is new
        if end > old:
            self.next_seq = end
            new.append((old, end))
        return new

    def _fill(self, first: int, end: int) -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        kept: list[LedgerEntry] = []
        for e in self.entries:
            a, b = max(e.first, first), min(e.end, end)
            if a >= b or e.state == GapState.LOST:
                kept.append(e)
                continue
            got.append((a, b))
            if e.first < a:
                kept.append(LedgerEntry(e.first, a, e.state, e.requests))
            if b < e.end:
                kept.append(LedgerEntry(b, e.end, e.state, e.requests))
        self.entries = sorted(kept, key=lambda e: e.first)
        return sorted(got)

    def to_request(self) -> list[tuple[int, int]]:
        """Ranges to ask the patch for (pending ones), marked requested."""
        out = []
        for e in self.entries:
            if e.state == GapState.PENDING:
                e.state = GapState.REQUESTED
                e.requests += 1
                out.append((e.first, e.end))
        return out

    def retry(self) -> None:
        """A new connection: what was requested and not filled is pending again."""
        for e in self.entries:
            if e.state == GapState.REQUESTED:
                e.state = GapState.PENDING

    def expire(self, oldest_held: int) -> list[tuple[int, int]]:
        """The patch holds nothing before ``oldest_held``: those parts are lost for good."""
        lost: list[tuple[int, int]] = []
        kept: list[LedgerEntry] = []
        for e in self.entries:
            if e.state != GapState.LOST and e.first < oldest_held:
                cut = min(e.end, oldest_held)
                lost.append((e.first, cut))
                if cut < e.end:
                    kept.append(LedgerEntry(cut, e.end, e.state, e.requests))
                continue
            kept.append(e)
        self.entries = kept
        return lost

    @property
    def missing(self) -> int:
        return sum(e.end - e.first for e in self.entries)


# --- stream ---------------------------------------------------------------------------------------
@dataclass
class PatchStream:
    """ECG frames (live and backfill) in; blocks (each sample once) and final gaps out.

    Times: a :class:`~drivers.clock.ClockTracker` maps sample numbers to UTC. The
    first :meth:`set_time` (the patch's Device Time) anchors it; the arrival times of
    live frames then measure the patch clock's drift against the host's NTP clock, and
    the mapping slews to them, so block times stay monotonic across reconnections.
    """

    source: str
    lead: str = "ECG"
    fs: float = FS
    ledger: GapLedger = field(default_factory=GapLedger)
    duplicates: int = 0
    clock: ClockTracker = field(init=False)

    def start_at(self, seq: int) -> None:
        """Samples from ``seq`` on are wanted (e.g. the patch's oldest held sample at the
        first connection of a study): anything before the first frame becomes a gap."""
        if self.ledger.next_seq is None:
            self.ledger.next_seq = seq

    def __post_init__(self) -> None:
        self.clock = ClockTracker(self.fs)

    def set_time(self, t: DeviceTime) -> None:
        """A Device Time read: anchors the mapping until drift tracking takes over."""
        self.clock.anchor(t.seq, t.posix)

    def utc_of(self, seq: int) -> float:
        return self.clock.utc_of(seq)

    def feed(self, frame: EcgFrame, now: float) -> list[SampleBlock]:
        """Blocks for the samples of ``frame`` not delivered before."""
        if not frame.backfill:  # live frames arrive just after they were recorded
            self.clock.observe(frame.end_seq - 1, now)
        else:
            self.clock.anchor(frame.end_seq - 1, now)  # only if nothing better yet
        parts = self.ledger.receive(frame.first_seq, frame.end_seq)
        out: list[SampleBlock] = []
        taken = 0
        for a, b in parts:
            x = frame.samples_uv[a - frame.first_seq : b - frame.first_seq]
            taken += x.size
            mv = (x.astype(np.float32) / np.float32(1000.0))[:, None]
            out.append(SampleBlock(mv, self.fs, self.utc_of(a), a, (self.lead,), self.source))
        self.duplicates += frame.samples_uv.size - taken
        return out

    def lost(self, oldest_held: int) -> list[Gap]:
        """Final gaps for what the patch no longer holds."""
        return [
            Gap(self.source, a, b, self.utc_of(a), self.utc_of(b), "not in patch memory", True)
            for a, b in self.ledger.expire(oldest_held)
            if self.clock.anchored
        ]
