"""Device sample numbers judged against the wall clock, and mapped to one stream (pure).

A device numbers its samples; nothing it sends may be trusted blindly. A frame's first
sample number may move forward only as far as the time since the last frame allows
(``(elapsed + SLACK_S) × fs × (1 + RATE_TOLERANCE)``); it may go back only to repeat what
was delivered in the last ``BACK_S`` seconds. Anything else — a counter that restarts at
0, a firmware glitch jumping by 2^31, a corrupted frame that passed its CRC — is a
**device restart**: the
old stream ends, a gap with that reason covers the wall time between, and a new stream
begins. Nothing already recorded is ever overwritten, because the gateway's sample
numbers (the *stream* numbers every block, gap, recording and strip uses) are the
device's plus an offset chosen at each restart so that they keep running forward with
the wall clock: ``seq / fs`` stays "seconds since the stream began", restart or not.

The same judgement resumes a stream after the gateway was not running
(:meth:`SequenceGuard.resume`): the samples in between become a gap with the reason
"gateway not running" (a device with memory then backfills it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Judgement", "SequenceGuard", "Verdict"]

#: Extra seconds of samples a jump may cover beyond the wall time (buffering in the device
#: and the serial or BLE stack).
SLACK_S = 10.0
#: Relative error of the device's clock against the gateway's tolerated.
RATE_TOLERANCE = 0.02
#: How far back, seconds of samples, a frame may repeat what was delivered; further back is
#: a restart.
BACK_S = 2.0


class Verdict(enum.Enum):
    NEXT = "next"  # contiguous with what came before (or the first frame)
    GAP = "gap"  # samples missing before this frame, as many as the wall clock allows
    REPEAT = "repeat"  # part or all of the frame was delivered already
    RESTART = "restart"  # impossible: a new stream begins


@dataclass(frozen=True, slots=True)
class Judgement:
    """What to do with a frame of device samples ``[first, first + n)``.

    ``seq`` is the stream number of the frame's first sample *to deliver* (after
    ``skip`` repeated samples); ``gap`` the stream range missing before it, if any.
    """

    verdict: Verdict
    seq: int
    skip: int = 0
    gap: tuple[int, int] | None = None
    reason: str = ""


class SequenceGuard:
    """Judges and maps one device's sample numbers (see the module docstring).

    ``fs`` is the nominal sample rate, Hz; the tolerances are the module's constants.
    """

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self.offset = 0  # stream seq = device seq + offset
        self.device_next: int | None = None  # device number of the next sample expected
        self._at: float | None = None  # monotonic s when device_next was set
        self._new_stream: tuple[int, float, str] | None = None  # (stream next, mono, why)
        self.restarts = 0

    @property
    def stream_next(self) -> int | None:
        """Stream number of the next sample expected."""
        return None if self.device_next is None else self.device_next + self.offset

    def continuation(self) -> tuple[int, float] | None:
        """Where numbering goes on: the stream number the next sample gets and the monotonic
        time that number was reached (a new stream already announced included); None
        before any sample."""
        if self._new_stream is not None:
            return self._new_stream[0], self._new_stream[1]
        if self.device_next is None or self._at is None:
            return None
        return self.device_next + self.offset, self._at

    def resume(self, stream_next: int, offset: int, seconds_ago: float, mono: float) -> None:
        """Continue a stream that reached ``stream_next`` (device numbers + ``offset``)
        ``seconds_ago`` seconds before ``mono`` (a gateway restart)."""
        self.offset = offset
        self.device_next = stream_next - offset
        self._at = mono - max(seconds_ago, 0.0)

    def new_stream(self, stream_next: int, mono: float, reason: str) -> None:
        """The next frame begins a new stream (e.g. at a new sample rate) that continues
        the stream numbers from ``stream_next`` (as of monotonic ``mono``)."""
        self._new_stream = (stream_next, mono, reason)
        self.device_next = None

    def judge(self, first: int, n: int, mono: float) -> Judgement:
        """Judge device samples ``[first, first + n)`` arriving at monotonic ``mono``."""
        if self._new_stream is not None:
            stream_next, at, reason = self._new_stream
            self._new_stream = None
            self.offset, self.device_next, self._at = stream_next, 0, at
            return self._restart(first, n, mono, reason)
        nxt, at = self.device_next, self._at
        if nxt is None or at is None:
            return self._accept(Judgement(Verdict.NEXT, first + self.offset), first, n, mono)
        if first == nxt:
            return self._accept(Judgement(Verdict.NEXT, first + self.offset), first, n, mono)
        allowed = (mono - at + SLACK_S) * self.fs * (1 + RATE_TOLERANCE)
        if nxt < first <= nxt + allowed:
            gap = (nxt + self.offset, first + self.offset)
            j = Judgement(Verdict.GAP, first + self.offset, gap=gap, reason="samples lost")
            return self._accept(j, first, n, mono)
        if nxt - BACK_S * self.fs <= first < nxt:  # a repeated frame, or its head
            skip = min(nxt - first, n)
            j = Judgement(Verdict.REPEAT, first + skip + self.offset, skip=skip)
            return self._accept(j, first, n, mono)
        return self._restart(first, n, mono, "device restarted (its sample counter jumped)")

    def _restart(self, first: int, n: int, mono: float, reason: str) -> Judgement:
        self.restarts += 1
        old = self.stream_next
        if old is None or self._at is None:
            return self._accept(Judgement(Verdict.NEXT, first + self.offset), first, n, mono)
        elapsed = max(0, round((mono - self._at) * self.fs))
        self.offset = old + elapsed - first
        gap = (old, old + elapsed) if elapsed else None
        j = Judgement(Verdict.RESTART, first + self.offset, gap=gap, reason=reason)
        return self._accept(j, first, n, mono)

    def _accept(self, j: Judgement, first: int, n: int, mono: float) -> Judgement:
        end = first + n
        if self.device_next is None or end > self.device_next or j.verdict is Verdict.RESTART:
            self.device_next = end
            self._at = mono
        return j
