"""A patch's samples in, each exactly once: the gap ledger and the block stream (pure).

- :class:`GapLedger`: every missing range of one patch recording, from detection to
  filled (by backfill) or lost (the patch's memory no longer holds it).
- :class:`PatchStream`: decoded ECG frames in, :class:`~core.block.SampleBlock` s out
  (each sample exactly once; backfill possibly out of order) and final
  :class:`~core.events.Gap` s for what is lost; sample numbers mapped to UTC by a
  :class:`~drivers.clock.ClockTracker`.

Live frames only ever extend the recording at its head; only backfill frames fill
holes. A live frame that goes backwards is not allowed to overwrite a hole with
whatever it carries (counted as duplicate samples instead).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from core.block import SampleBlock
from core.events import Gap
from core.units import uv_to_mv
from drivers.clock import ClockTracker
from drivers.patch_gatt import FS, DeviceTime, EcgFrame

__all__ = ["GapLedger", "GapState", "LedgerEntry", "PatchStream"]


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
    fruitless: int = 0  # requests in a row that brought none of it (refused, busy, silent)


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
    first_seq: int | None = None  # the lowest sample wanted or received

    def receive(self, first: int, end: int, *, fill: bool = True) -> list[tuple[int, int]]:
        """Record samples [first, end); returns the parts that are new, in order.

        ``fill=False`` (a live frame): only what extends the head is taken; a part that
        would fall into a known hole is not (only backfill fills holes).
        """
        if self.next_seq is None:
            self.next_seq, self.first_seq = end, first
            return [(first, end)]
        old = self.next_seq
        if first >= old:
            if first > old:
                self.entries.append(LedgerEntry(old, first))
            self.next_seq = end
            return [(first, end)]
        new = self._fill(first, min(end, old)) if fill else []
        if end > old:
            self.next_seq = end
            new.append((old, end))
        return new

    def want_from(self, seq: int) -> None:
        """Samples from ``seq`` on are wanted (the recording's oldest sample, learnt after
        live frames may already have arrived): what lies before the first sample
        received becomes a pending gap."""
        if self.next_seq is None:
            self.next_seq = self.first_seq = seq
            return
        assert self.first_seq is not None
        if seq < self.first_seq:
            self.entries.insert(0, LedgerEntry(seq, self.first_seq))
            self.first_seq = seq

    def _fill(self, first: int, end: int) -> list[tuple[int, int]]:
        return self._cut(first, end, lost_too=False)

    def _cut(self, first: int, end: int, *, lost_too: bool) -> list[tuple[int, int]]:
        """Take ``[first, end)`` out of the entries (LOST ones only if ``lost_too``);
        returns the parts taken, in order."""
        got: list[tuple[int, int]] = []
        kept: list[LedgerEntry] = []
        for e in self.entries:
            a, b = max(e.first, first), min(e.end, end)
            if a >= b or (e.state == GapState.LOST and not lost_too):
                kept.append(e)
                continue
            got.append((a, b))
            if e.first < a:
                kept.append(LedgerEntry(e.first, a, e.state, e.requests, e.fruitless))
            if b < e.end:
                kept.append(LedgerEntry(b, e.end, e.state, e.requests, e.fruitless))
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

    def retry(self, first: int = 0, end: int | None = None) -> None:
        """What was requested in ``[first, end)`` (default: everything) and not filled is
        pending again (a new connection, a request that was never answered)."""
        for e in self.entries:
            inside = e.first >= first and (end is None or e.end <= end)
            if e.state == GapState.REQUESTED and inside:
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
                    kept.append(LedgerEntry(cut, e.end, e.state, e.requests, e.fruitless))
                continue
            kept.append(e)
        self.entries = kept
        return lost

    def within(self, first: int, end: int) -> list[LedgerEntry]:
        """The entries lying in ``[first, end)`` (what one request asked for)."""
        return [e for e in self.entries if e.first >= first and e.end <= end]

    def give_up(self, first: int, end: int) -> list[tuple[int, int]]:
        """Stop asking for ``[first, end)`` (the patch keeps refusing it): lost for good."""
        return self._cut(first, end, lost_too=True)

    @property
    def missing(self) -> int:
        """Samples known missing and not yet declared lost (still hoped for)."""
        return sum(e.end - e.first for e in self.entries)


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

    def __post_init__(self) -> None:
        self.clock = ClockTracker(self.fs)

    def set_time(self, t: DeviceTime) -> None:
        """A Device Time read: anchors the mapping until drift tracking takes over."""
        self.clock.anchor(t.seq, t.posix)

    def utc_of(self, seq: int) -> float:
        return self.clock.utc_of(seq)

    def feed(self, frame: EcgFrame, now: float) -> list[SampleBlock]:
        """Blocks for the samples of ``frame`` not delivered before (``now``: arrival, UTC)."""
        if not frame.backfill:  # live frames arrive just after they were recorded
            self.clock.observe(frame.end_seq - 1, now)
        else:
            self.clock.anchor(frame.end_seq - 1, now)  # only if nothing better yet
        parts = self.ledger.receive(frame.first_seq, frame.end_seq, fill=frame.backfill)
        out: list[SampleBlock] = []
        taken = 0
        for a, b in parts:
            x = frame.samples_uv[a - frame.first_seq : b - frame.first_seq]
            taken += x.size
            mv = uv_to_mv(x)
            out.append(SampleBlock(mv, self.fs, self.utc_of(a), a, (self.lead,), self.source))
        self.duplicates += frame.samples_uv.size - taken
        return out

    def gaps(self, ranges: list[tuple[int, int]], reason: str, now: float) -> list[Gap]:
        """Final gaps for ``ranges`` of sample numbers (timed ``now`` before any anchor)."""

        def utc(seq: int) -> float:
            return self.utc_of(seq) if self.clock.anchored else now

        return [Gap(self.source, a, b, utc(a), utc(b), reason, True) for a, b in ranges]

    def lost(self, oldest_held: int, now: float) -> list[Gap]:
        """Final gaps for what the patch no longer holds."""
        return self.gaps(self.ledger.expire(oldest_held), "not in patch memory", now)
