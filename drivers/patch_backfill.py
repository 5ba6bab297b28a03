"""The record access control point (RACP) conversation with a patch, as a pure state machine.

:class:`BackfillRequests` asks a patch of our profile for the extent of its memory and
for every range the recording's gap ledger misses, one command at a time, and decides
what each answer (or its absence) means for the conversation. No I/O: it returns the
commands to write (:class:`~drivers.gatt_session.Write`) and the events to deliver
(error events, final gaps); times are passed in (``now``: UTC s, ``mono``: monotonic s).

The rules it implements (``docs/protocols/patch-gatt.md``, "Record access control point"
and "What the gateway does"):

- REPORT_EXTENT first on every link; after an impossible extent, or none within
  ``timeout_s``, it is asked again ``retry_s`` later;
- every missing range is requested, one at a time, each answer matched to the request
  it answers (a RANGE_DONE outside the requested range, or an answer of the wrong kind,
  is counted as ``racp_unexpected`` and ignored: the wait goes on);
- SUCCESS with the whole range: the next range at once; NOT_HELD or a partial answer:
  the extent again; ABORTED and INVALID: the range again after ``retry_s``; a range
  whose requests bring none of it ``max_requests`` times in a row (INVALID, ABORTED, no
  answer) is given up as a final gap;
- BUSY (the patch still runs another backfill, e.g. one of the previous link) is no
  refusal: the running backfill is ABORTed and the range asked again after a backoff
  (``retry_s`` doubling up to ``_BUSY_BACKOFF_CAP_S``); only a patch that has answered
  BUSY to every request for ``busy_give_up_s`` (across links) gets its ranges given up;
- each backfill frame that brings new samples of the requested range extends the wait
  for its RANGE_DONE by ``timeout_s``; no answer and no such frame within ``timeout_s``:
  counted (``racp_timeouts``), and a REQUEST_RANGE is ABORTed (the patch may be stuck in
  it) before it is asked again on the same link; an ABORT after a timeout that goes
  unanswered counts as a fruitless request;
- the link lost: the wait ends at once and requested ranges become pending again.

The split with :class:`~drivers.patch_session.PatchSession`: this class owns the
conversation (what is in flight, what to ask next and when, retries, ABORTs, give-ups).
What an EXTENT *means* for the recording is the session's (whether it is possible given
the live data; the first one starts the recording, which releases the live blocks held
until then; what the patch no longer holds becomes final gaps; samples up to its end are
due): the session passes its handler with each answer (:meth:`BackfillRequests.answer`),
so this class keeps no reference to the session. It works on the recording's
:class:`~drivers.patch_stream.PatchStream` (replaced when the patch restarts its
recording: :meth:`BackfillRequests.restarted`) and counts in the session's
:class:`~core.counters.Counters` (``ranges_requested``, ``racp_busy``, ``racp_aborts``,
``racp_timeouts``, ``racp_unexpected``, ``samples_lost``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.block import SampleBlock
from core.counters import Counters
from core.events import DriverError
from drivers import uuids
from drivers.gatt_session import Output, Write
from drivers.patch_gatt import (
    RacpOp,
    RacpResponse,
    RacpStatus,
    encode_abort,
    encode_report_extent,
    encode_request_range,
)
from drivers.patch_stream import PatchStream

__all__ = ["BackfillPolicy", "BackfillRequests", "ExtentHandler"]

# After BUSY: retry_s, doubling, at most this (s). No jitter: one gateway asks one patch.
_BUSY_BACKOFF_CAP_S = 60.0

# The session's handler of an EXTENT answer: (oldest, next, now UTC s) → its outputs, or
# None when the extent is impossible (then it is asked again).
ExtentHandler = Callable[[int, int, float], list[Output] | None]


@dataclass(frozen=True, slots=True)
class BackfillPolicy:
    """How the RACP conversation waits, retries and gives up."""

    timeout_s: float  # s without an answer (or a backfill frame bringing some) before asking again
    retry_s: float  # s before retrying after ABORTED, INVALID or a timeout; BUSY's first backoff
    max_requests: int  # requests in a row bringing none of a range: it is given up
    busy_give_up_s: float  # s of BUSY to every request before the ranges asked are given up


@dataclass(slots=True)
class _Wait:
    """The one RACP command in flight and what would answer it."""

    op: RacpOp  # the response expected: EXTENT or RANGE_DONE
    first: int = 0
    end: int = 0
    deadline: float | None = None  # monotonic s; set when the write completed
    got: int = 0  # samples of [first, end) that arrived (new) while waiting
    aborting: bool = False  # ABORT sent: the request went unanswered, or was answered BUSY
    busy: bool = False  # the ABORT follows a BUSY: it stops another backfill (any range)


class BackfillRequests:
    """The RACP conversation of one patch (see the module docstring).

    Parameters
    ----------
    source
        The patch's id (the ``source`` of the error events and gaps).
    stream
        The recording's stream: its gap ledger says what to request.
    counters
        The session's counters (this class adds to the RACP ones and ``samples_lost``).
    policy
        How it waits, retries and gives up (:class:`BackfillPolicy`).
    """

    def __init__(
        self, source: str, stream: PatchStream, counters: Counters, policy: BackfillPolicy
    ) -> None:
        self.source = source
        self.stream = stream
        self.counters = counters
        self.policy = policy
        self._wait: _Wait | None = None  # the command in flight
        self._need_extent = False  # the next command is REPORT_EXTENT
        self._retry_at = 0.0  # monotonic s: no new command before this
        self._queue: deque[tuple[int, int]] = deque()  # ranges to request on this link
        self._busy = 0  # requests answered BUSY in a row (across links)
        self._busy_since = 0.0  # monotonic s of the first of them

    # --- the link and the recording --------------------------------------------------------
    def connected(self) -> None:
        """A new link: nothing in flight; ranges requested before are pending again."""
        self._wait, self._need_extent, self._retry_at = None, False, 0.0
        self._forget_requests()

    def link_lost(self) -> None:
        """The link is gone: the wait ends now; requested ranges are pending again."""
        self._wait = None
        self._forget_requests()

    def restarted(self, stream: PatchStream) -> None:
        """The patch restarted its recording; ``stream`` is the new one: nothing is in
        flight, and its extent is the next thing asked (at once)."""
        self.stream = stream
        self._queue.clear()
        self._wait, self._need_extent, self._retry_at = None, True, 0.0

    def _forget_requests(self) -> None:
        self._queue.clear()
        self.stream.ledger.retry()

    # --- the session's events --------------------------------------------------------------
    def ask_extent(self) -> list[Output]:
        """REPORT_EXTENT (the first command of a link): the write to send."""
        self._need_extent = False
        self._wait = _Wait(RacpOp.EXTENT)
        return [Write(uuids.PATCH_RACP, encode_report_extent())]

    def written(self, mono: float) -> None:
        """A RACP command was written at ``mono`` (s): its answer is due within
        ``timeout_s``."""
        if self._wait is not None and self._wait.deadline is None:
            self._wait.deadline = mono + self.policy.timeout_s

    def backfilled(self, blocks: Sequence[SampleBlock], mono: float) -> None:
        """New backfill samples arrived at ``mono`` (s): those of the requested range show
        the backfill is under way, so its RANGE_DONE is due ``timeout_s`` from now."""
        w = self._wait
        if w is None or w.op != RacpOp.RANGE_DONE:
            return
        asked = sum(max(0, min(b.end_seq, w.end) - max(b.seq, w.first)) for b in blocks)
        if asked:
            w.got += asked
            if w.deadline is not None:
                w.deadline = mono + self.policy.timeout_s

    def answer(
        self, r: RacpResponse, now: float, mono: float, on_extent: ExtentHandler
    ) -> list[Output]:
        """A RACP response arrived (``now``: UTC s, ``mono``: monotonic s): matched to the
        command in flight; an EXTENT is handed to ``on_extent`` (the session's)."""
        w = self._wait
        if w is None or r.op != w.op:
            return [self._unexpected(r, now)]
        if r.op == RacpOp.EXTENT:
            self._wait = None
            return self._extent(r, now, mono, on_extent)
        nothing_ran = w.aborting and r.status == RacpStatus.INVALID and (r.first, r.end) == (0, 0)
        stopped = w.busy and r.status == RacpStatus.ABORTED  # the other backfill: any range
        if not (nothing_ran or stopped) and not (w.first <= r.first <= r.end <= w.end):
            return [self._unexpected(r, now)]
        self._wait = None
        return self._range_done(w, r, now, mono)

    def tick(self, now: float, mono: float) -> list[Output]:
        """Time passed (``now``: UTC s, ``mono``: monotonic s), the link up: timeouts, then
        the next command when none is in flight and no retry delay runs."""
        out: list[Output] = []
        w = self._wait
        if w is not None and w.deadline is not None and mono > w.deadline:
            out += self._timed_out(w, now, mono)
        if self._wait is None and mono >= self._retry_at:
            out += self.ask_extent() if self._need_extent else self._request_next()
        return out

    # --- answers -----------------------------------------------------------------------------
    def _request_next(self) -> list[Output]:
        if not self._queue:
            self._queue.extend(self.stream.ledger.to_request())
        if not self._queue:
            return []
        first, end = self._queue.popleft()
        self.counters.add("ranges_requested")
        self._wait = _Wait(RacpOp.RANGE_DONE, first, end)
        return [Write(uuids.PATCH_RACP, encode_request_range(first, end))]

    def _extent(
        self, r: RacpResponse, now: float, mono: float, on_extent: ExtentHandler
    ) -> list[Output]:
        out = on_extent(r.first, r.end, now)
        if out is None:
            self.counters.add("racp_unexpected")
            self._retry_at, self._need_extent = mono + self.policy.retry_s, True
            return [self._error(f"impossible extent {r.first}..{r.end}", now)]
        return out + self._request_next()

    def _range_done(self, w: _Wait, r: RacpResponse, now: float, mono: float) -> list[Output]:
        ledger = self.stream.ledger
        ledger.retry(w.first, w.end)  # what the answer did not bring is asked again
        if w.busy:  # the ABORT after a BUSY is answered: ask again when the backoff ends
            return []
        if r.status == RacpStatus.BUSY:
            return self._busy_answer(w, now, mono)
        self._busy = 0  # the patch took a request: no longer busy
        if r.status == RacpStatus.SUCCESS and (r.first, r.end) == (w.first, w.end):
            return self._request_next()
        if r.status in (RacpStatus.NOT_HELD, RacpStatus.SUCCESS):  # partial: what is held?
            return self.ask_extent()
        # ABORTED, INVALID, or an ABORT that found nothing running: later
        self._retry_at = mono + self.policy.retry_s
        if w.aborting and r.status == RacpStatus.INVALID:
            why = "no answer"  # our ABORT found nothing running: the request went unanswered
        else:
            why = "refused (INVALID)" if r.status == RacpStatus.INVALID else r.status.name
        return self._fruitless(w, why, now)

    def _busy_answer(self, w: _Wait, now: float, mono: float) -> list[Output]:
        """BUSY: the patch runs another backfill (one the previous link asked for, say). It
        is ABORTed and the range asked again after a backoff; the range is given up only
        when every request of the last ``busy_give_up_s`` was answered BUSY."""
        self.counters.add("racp_busy")
        if not self._busy:
            self._busy_since = mono
        self._busy += 1
        busy_s = mono - self._busy_since
        if busy_s >= self.policy.busy_give_up_s:
            self._retry_at = mono + _BUSY_BACKOFF_CAP_S
            why = f"BUSY to every request for {busy_s:.0f} s"
            return self._give_up(w, f"patch did not backfill it ({why})", now)
        delay = min(self.policy.retry_s * 2 ** min(self._busy - 1, 16), _BUSY_BACKOFF_CAP_S)
        self._retry_at = mono + delay
        self.counters.add("racp_aborts")
        self._wait = _Wait(RacpOp.RANGE_DONE, w.first, w.end, aborting=True, busy=True)
        detail = f"range {w.first}..{w.end}: BUSY ({self._busy} in a row): ABORT, retry {delay:g} s"
        abort = Write(uuids.PATCH_RACP, encode_abort())
        return [self._error(detail, now, "racp_busy"), abort]

    def _fruitless(self, w: _Wait, why: str, now: float) -> list[Output]:
        """A request for ``[w.first, w.end)`` ended without all of it: if it brought none
        of it, count that against its entries; ``max_requests`` in a row: give them up."""
        ledger = self.stream.ledger
        entries = ledger.within(w.first, w.end)
        for e in entries:
            e.fruitless = 0 if w.got else e.fruitless + 1
        if w.got or not any(e.fruitless >= self.policy.max_requests for e in entries):
            return [self._error(f"range {w.first}..{w.end}: {why}", now)]
        reason = "patch refused backfill" if why.startswith("refused") else (
            f"patch did not backfill it ({why})")  # fmt: skip
        return self._give_up(w, reason, now)

    def _give_up(self, w: _Wait, reason: str, now: float) -> list[Output]:
        """``[w.first, w.end)`` is no longer asked for: final gaps with ``reason``."""
        gaps = self.stream.gaps(self.stream.ledger.give_up(w.first, w.end), reason, now)
        self.counters.add("samples_lost", sum(g.n_samples for g in gaps))
        return list(gaps)

    def _timed_out(self, w: _Wait, now: float, mono: float) -> list[Output]:
        self.counters.add("racp_timeouts")
        self._wait = None
        self._retry_at = max(self._retry_at, mono + self.policy.retry_s)
        what = "ABORT" if w.aborting else w.op.name
        out = [self._error(f"no answer to {what} within {self.policy.timeout_s:g} s", now,
                           "racp_timeouts")]  # fmt: skip
        if w.op == RacpOp.EXTENT:
            self._need_extent = True
            return out
        if not w.aborting:  # the patch may be stuck in that backfill: stop it first
            self.counters.add("racp_aborts")
            self._wait = _Wait(RacpOp.RANGE_DONE, w.first, w.end, got=w.got, aborting=True)
            return [*out, Write(uuids.PATCH_RACP, encode_abort())]
        self.stream.ledger.retry(w.first, w.end)
        if w.busy:  # the patch ignores ABORT while busy: the BUSY bound decides
            return out
        return out + self._fruitless(w, "no answer", now)

    # --- errors ------------------------------------------------------------------------------
    def _unexpected(self, r: RacpResponse, now: float) -> DriverError:
        self.counters.add("racp_unexpected")
        return self._error(f"unexpected {r.op.name} {r.first}..{r.end}", now)

    def _error(self, detail: str, now: float, counter: str = "racp_unexpected") -> DriverError:
        """An error event about the RACP conversation; its ``count`` is ``counter``'s."""
        return DriverError(
            source=self.source, time=now, what="racp", detail=detail, count=self.counters[counter]
        )
