"""The conversation with a patch of our profile, as a pure state machine (no I/O).

One :class:`PatchSession` lives as long as its driver (across connections): it owns
the recording's :class:`~drivers.patch_stream.PatchStream` and gap ledger, and
orchestrates two conversations: the data side (here) and the record access control
point (RACP), :class:`~drivers.patch_backfill.BackfillRequests`, which asks the patch for
the extent of its memory and for every missing range. Per connection
(``docs/protocols/patch-gatt.md``):

1. read Device Time (anchors sample numbers to UTC; a value that does not decode or
   lies more than ``max_clock_error_s`` from the gateway's clock is counted and
   ignored: the first live frame's arrival anchors the clock instead);
2. subscribe to RACP, then to ECG, Backfill, Symptom and Status: **live data flows
   from here on, whatever the record access control point does**;
3. ask REPORT_EXTENT. The first answer of a recording tells where the recording
   starts (live blocks that arrived before it are held until then, at most
   ``racp_timeout_s``, so analysis starts at the oldest sample); every answer turns
   what the patch no longer holds into final gaps (judged and applied here, in
   :meth:`PatchSession._extent`; an impossible extent is asked again);
4. request every missing range, one at a time, and handle each answer, its absence
   (``racp_timeout_s``), BUSY, retries (``racp_retry_s``) and give-ups
   (``max_requests``, ``busy_give_up_s``): :mod:`drivers.patch_backfill` (its module
   docstring has the rules); backfill frames that bring samples of the requested range
   tell it the backfill is under way; the link lost: every wait ends at once and
   requested ranges become pending again;
5. a live sample number impossible for the time since the head moved, consistently
   for ``_RESTART_FRAMES`` frames: the patch restarted its recording (the old stream
   ends, what it owed is lost, the new one is numbered on after it and its extent asked),
   unless no recording begun since could reach their numbers and they run behind the
   head or were possible before its last move (an earlier frame numbered wrongly had
   moved the head: reported; the stream goes on by the patch's counter and the hole is
   backfilled), or the head is a previous gateway run's and they lie past it (the same
   recording going on: after a reboot the clocks cannot judge the time between);
6. no ECG for ``silence_timeout_s``: disconnect (a BlueZ notify stall).

Symptom presses are de-duplicated by their press id, sample number and time together (a
patch re-sends presses made while the link was down, all three unchanged; a patch that
starts a new recording may number its presses from 1 again, and those are new presses);
a press whose sample number is impossible is kept, timed by the patch's clock when that
is plausible; a notification with no usable sample number (0xFFFFFFFF) and no plausible
time is not a press (counted as bad).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from core.block import SampleBlock
from core.counters import Counters
from core.events import (
    BatteryLevel,
    ButtonPressed,
    Connected,
    DeviceEvent,
    DeviceRestarted,
    Disconnected,
    DriverError,
    Gap,
    LeadOff,
    RecordingStarted,
    StreamPosition,
)
from core.units import EPOCH_2000
from drivers import uuids
from drivers.ble_link import BleSettings
from drivers.gatt_session import Characteristics, Disconnect, Output, Read, Subscribe
from drivers.patch_backfill import BackfillPolicy, BackfillRequests
from drivers.patch_gatt import (
    FS,
    EcgFrame,
    PatchDecodeError,
    SymptomPress,
    decode_device_time,
    decode_ecg_frame,
    decode_racp_response,
    decode_status,
    decode_symptom,
)
from drivers.patch_stream import LedgerEntry, PatchStream

__all__ = ["PatchSession", "PatchSettings"]

_REQUIRED = (uuids.PATCH_TIME, uuids.PATCH_RACP, uuids.PATCH_ECG, uuids.PATCH_BACKFILL)
_OPTIONAL = (uuids.PATCH_SYMPTOM, uuids.PATCH_STATUS)
_PRESS_MEMORY = 256  # presses (id, sample, time) remembered for de-duplication
_AHEAD_S = 60.0  # a sample number this far beyond the head is impossible (s of samples)
_SLACK_S = 10.0  # a live frame may run ahead of the wall clock by this much (buffering)
_BACK_S = 2.0  # a live frame may repeat this much of what came (seconds of samples)
_RESTART_FRAMES = 3  # consecutive, consistent impossible live frames: the patch restarted
_WORN_MAX_S = 31 * 86400.0  # a recording is never longer (patches are worn up to 21 days)
_NO_SEQ = 0xFFFFFFFF  # never a sample number (a recording ends before it): "none", erased flash
_COUNTERS = """connects frames_live frames_backfill samples duplicate_samples ranges_requested
restarts impossible_frames head_glitches racp_busy
samples_lost bad_notifications watchdog_trips racp_timeouts racp_unexpected racp_aborts
clock_rejected presses presses_repeated"""


@dataclass(frozen=True, slots=True)
class PatchSettings(BleSettings):
    """A patch of our profile: BLE settings plus its channel's lead name."""

    lead: str = "ECG"


class PatchSession:
    """Our patch profile's conversation (see the module docstring).

    Parameters
    ----------
    settings
        The patch: id, address, lead name, ``silence_timeout_s`` (no ECG for that long:
        disconnect).
    racp_timeout_s, racp_retry_s, max_requests, busy_give_up_s
        The RACP conversation's :class:`~drivers.patch_backfill.BackfillPolicy`
        (``timeout_s``, ``retry_s``, ``max_requests``, ``busy_give_up_s``);
        ``racp_timeout_s`` also bounds how long live blocks are held for the first EXTENT.
    max_clock_error_s
        Device Time further than this from the gateway's clock is ignored.
    """

    def __init__(
        self,
        settings: PatchSettings,
        *,
        racp_timeout_s: float = 10.0,
        racp_retry_s: float = 5.0,
        max_requests: int = 3,
        busy_give_up_s: float = 1800.0,
        max_clock_error_s: float = 3600.0,
    ) -> None:
        self.source = settings.id
        self.address = settings.address
        self.stream = PatchStream(settings.id, lead=settings.lead)
        self.counters = Counters(_COUNTERS)
        self.silence_timeout_s = settings.silence_timeout_s
        self.time_scale = settings.time_scale
        policy = BackfillPolicy(racp_timeout_s, racp_retry_s, max_requests, busy_give_up_s)
        self.backfill = BackfillRequests(settings.id, self.stream, self.counters, policy)
        self.max_clock_error_s = max_clock_error_s
        self._started = False  # the recording's first sample is known (first EXTENT)
        self._held: list[SampleBlock] | None = []  # live blocks waiting for the first EXTENT
        self._hold_until: float | None = None
        self._link = False
        self._subscribed = False
        self._last_data = 0.0
        self._delivered = False
        self._presses: deque[SymptomPress] = deque(maxlen=_PRESS_MEMORY)
        self._lead_off = False  # the electrode's contact as last reported (in contact)
        self._optional: list[str] = []
        self._offset = 0  # stream seq = patch seq + offset (changes when the patch restarts)
        self._floor: int | None = None  # nothing before this patch seq is wanted (resumed)
        self._head_at = 0.0  # monotonic s when the head last moved
        self._moved_from: tuple[int, float] | None = None  # the head and _head_at before that
        self._resumed = False  # the head is a previous run's, no live frame has moved it yet
        self._resumed_utc = 0.0  # ... and its time (UTC s)
        self._suspects: list[EcgFrame] = []  # consecutive impossible live frames

    # --- the shell's events --------------------------------------------------------------
    def connected(
        self, chars: Characteristics, mtu: int | None, now: float, mono: float
    ) -> list[Output]:
        """The link is up with these characteristics: read the clock first."""
        self.counters.add("connects")
        self._link, self._subscribed, self._delivered = True, False, False
        self.backfill.connected()
        missing = [u for u in _REQUIRED if u not in chars]
        out: list[Output] = [Connected(source=self.source, time=now, detail=self.address, mtu=mtu)]
        if missing:
            return [*out, Disconnect(f"not our patch profile (missing {missing})", failed=True)]
        self._optional = [u for u in _OPTIONAL if u in chars]
        return [*out, Read(uuids.PATCH_TIME)]

    def read_done(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]:
        """Device Time read: anchor the clock, then subscribe and ask the extent."""
        if uuid != uuids.PATCH_TIME:
            return []
        out: list[Output] = self._set_time(data, now)
        subscribe = [uuids.PATCH_RACP, uuids.PATCH_ECG, uuids.PATCH_BACKFILL, *self._optional]
        out += [Subscribe(u) for u in subscribe]
        return self._shift(out + self.backfill.ask_extent())

    def write_done(self, uuid: str, now: float, mono: float) -> list[Output]:
        """A RACP command was written: its answer is due within ``racp_timeout_s``."""
        if not self._subscribed:  # the first write follows every subscription
            self._subscribed, self._last_data = True, mono
            if self._held is not None:
                self._hold_until = mono + self.backfill.policy.timeout_s
        if uuid == uuids.PATCH_RACP:
            self.backfill.written(mono)
        return []

    def notified(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]:
        """A notification or indication arrived (decoded here; bad ones counted)."""
        if uuid in (uuids.PATCH_ECG, uuids.PATCH_BACKFILL):
            try:
                frame = decode_ecg_frame(data)
            except PatchDecodeError as exc:
                return [self._bad(uuid, str(exc), now)]
            return self._judged(frame, now, mono)
        return self._shift(self._notified(uuid, data, now, mono))

    def _notified(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]:
        try:
            if uuid == uuids.PATCH_RACP:
                return self.backfill.answer(decode_racp_response(data), now, mono, self._extent)
            if uuid == uuids.PATCH_SYMPTOM:
                return self._symptom(data, now)
            if uuid == uuids.PATCH_STATUS:
                st = decode_status(data)
                battery = BatteryLevel(
                    source=self.source,
                    time=now,
                    percent=st.battery_percent,
                    lead_off=st.lead_off,
                    storage_percent=st.storage_percent,
                )
                return [battery, *self._contact(st.lead_off, now, None)]
        except PatchDecodeError as exc:
            return [self._bad(uuid, str(exc), now)]
        return []

    def _contact(self, off: bool, now: float, seq: int | None) -> list[Output]:
        """A LeadOff event when the electrode's contact changed (Status, or the lead-off
        flag of a live frame): what strips and events report as ``lead_off``."""
        if off == self._lead_off:
            return []
        self._lead_off = off
        leads = (self.stream.lead,) if off else ()
        return [LeadOff(source=self.source, time=now, seq=seq, leads=leads)]

    def tick(self, now: float, mono: float) -> list[Output]:
        """Time passed: watchdogs, RACP timeouts and retries."""
        return self._shift(self._tick(now, mono))

    def _tick(self, now: float, mono: float) -> list[Output]:
        if not self._link:
            return []
        if self._subscribed and mono - self._last_data > self.silence_timeout_s:
            self.counters.add("watchdog_trips")
            return [Disconnect("silent stream", failed=not self._delivered)]
        out: list[Output] = []
        if self._held is not None and self._hold_until is not None and mono > self._hold_until:
            out += self._release_held()  # no EXTENT yet: analysis starts at the live data
        return out + self.backfill.tick(now, mono)

    def link_lost(self, reason: str, now: float, mono: float) -> list[Output]:
        """The link is gone: every wait ends now; requested ranges are pending again."""
        self._link = self._subscribed = False
        self.backfill.link_lost()
        held = self._release_held() if self._held else []  # bounded: one link's worth
        return [*self._shift(held), Disconnected(source=self.source, time=now, reason=reason)]

    def closing(self) -> list[Output]:
        """The driver is stopping: nothing to tell the patch (it keeps recording)."""
        return []

    @property
    def delivered(self) -> bool:
        return self._delivered

    def position(self) -> StreamPosition | None:
        """Where the recording stands: its next sample and the holes still owed by the
        patch (stream numbers), to resume after a gateway restart."""
        ledger = self.stream.ledger
        nxt = ledger.next_seq
        if nxt is None:
            return None
        if self.stream.clock.anchored:
            utc = self.stream.utc_of(nxt)
        elif self._resumed:  # nothing heard since a previous run's position: still that
            utc = self._resumed_utc
        else:
            return None
        off = self._offset
        holes = tuple((e.first + off, e.end + off) for e in ledger.entries)
        return StreamPosition(nxt + off, utc, off, FS, holes)

    def resume(self, pos: StreamPosition) -> None:
        """Go on from a previous gateway run: samples from ``pos.next_seq`` on (and the
        holes it still owed) are asked of the patch; what it no longer holds becomes a
        final gap."""
        self._offset = pos.offset
        ledger = self.stream.ledger
        self._floor = min([pos.next_seq, *(a for a, _ in pos.holes)]) - pos.offset
        ledger.want_from(pos.next_seq - pos.offset)
        for a, b in pos.holes:
            ledger.entries.append(LedgerEntry(a - pos.offset, b - pos.offset))
        ledger.entries.sort(key=lambda e: e.first)
        ledger.first_seq = min([ledger.first_seq or 0, *(e.first for e in ledger.entries)])
        self._resumed, self._resumed_utc = True, pos.utc

    def stats(self) -> dict[str, Any]:
        """Counters since the driver started, plus the live state that matters."""
        drift = self.stream.clock.drift_ppm
        return {
            **self.counters.snapshot(),
            "pending_samples": self.stream.ledger.missing,
            "clock_drift_ppm": None if drift is None else round(drift, 2),
        }

    # --- data ------------------------------------------------------------------------------
    def _set_time(self, data: bytes, now: float) -> list[Output]:
        try:
            t = decode_device_time(data)
        except PatchDecodeError as exc:
            self.counters.add("clock_rejected")
            return [self._error("device_time", str(exc), now, "clock_rejected")]
        if abs(t.posix - now) > self.max_clock_error_s:
            self.counters.add("clock_rejected")
            detail = f"device time {t.us_since_2000} us is {t.posix - now:.0f} s off; ignored"
            return [self._error("device_time", detail, now, "clock_rejected")]
        self.stream.set_time(t)
        return []

    def _judged(self, frame: EcgFrame, now: float, mono: float) -> list[Output]:
        """A frame judged before it touches the stream (see :meth:`_plausible`)."""
        self._last_data = mono
        if self._plausible(frame, mono):
            self._suspects.clear()
            out = self._frame(frame, now, mono)
            if not frame.backfill:  # the electrode's contact now (a backfill's is history)
                out = self._contact(frame.lead_off, now, frame.first_seq) + out
            return self._shift(out)
        what = "backfill frame" if frame.backfill else "ECG frame"
        detail = f"impossible samples {frame.first_seq}..{frame.end_seq}"
        if frame.backfill or not self._suspects_agree(frame):
            return [self._bad(uuids.PATCH_BACKFILL if frame.backfill else uuids.PATCH_ECG,
                              f"{what}: {detail}", now)]  # fmt: skip
        if len(self._suspects) < _RESTART_FRAMES:
            return []  # held: a glitch, or a restart the next frames will confirm
        frames, self._suspects = self._suspects, []
        if self._recording_goes_on(frames[0]):
            return self._shift([o for f in frames for o in self._frame(f, now, mono)])
        if self._after_a_false_move(frames[0], mono):
            return self._shift(self._head_moved_falsely(frames, now, mono))
        return self._restart(frames, now, mono)

    def _plausible(self, frame: EcgFrame, mono: float) -> bool:
        """Live samples may extend the head only as far as the time since it moved allows,
        or repeat the last ``_BACK_S``; backfill never lies beyond the head."""
        head = self.stream.ledger.next_seq
        if head is None:
            return True
        if frame.backfill:
            return frame.end_seq <= head
        return _within(frame.first_seq, head, self._head_at, mono, self.time_scale)

    def _recording_goes_on(self, frame: EcgFrame) -> bool:
        """Consistent frames past the head of a previous gateway run, before any live frame
        moved it: the time since cannot judge them (after a reboot the monotonic clock
        starts again, and a Pi without a real-time clock may not know the date yet), and a
        counter that never goes back within a recording says this is the same one going on
        (within the longest a recording lasts)."""
        head = self.stream.ledger.next_seq
        if not self._resumed or head is None:
            return False
        return head <= frame.first_seq <= head + _WORN_MAX_S * FS

    def _after_a_false_move(self, frame: EcgFrame, mono: float) -> bool:
        """Impossible frames numbered beyond anything a recording begun since the head last
        moved could hold (so not a restart), that lie behind the head or would have been
        possible before its last move: that move was a frame numbered wrongly (yet within
        what the clock allowed), and the patch's counter is still the one it was."""
        head = self.stream.ledger.next_seq
        if head is None or frame.first_seq <= _reach(self._head_at, mono, self.time_scale):
            return False
        if frame.first_seq < head:
            return True
        before = self._moved_from
        return before is not None and _within(frame.first_seq, *before, mono, self.time_scale)

    def _head_moved_falsely(self, frames: list[EcgFrame], now: float, mono: float) -> list[Output]:
        """Go on with the patch's own numbering: the frames are taken as live frames of the
        stream (behind the head nothing of them is delivered twice and the hole they lie in
        is backfilled; past it they extend it as usual); reported, since the frame that
        moved the head was delivered under numbers the patch did not give its samples."""
        self.counters.add("head_glitches")
        head = self.stream.ledger.next_seq or 0
        detail = (f"ECG frames from sample {frames[0].first_seq} go on by the patch's counter,"
                  f" {frames[0].first_seq - head:+d} samples from the stream's head: a frame"
                  " numbered wrongly had moved it (its samples stand where the patch did not"
                  " put them)")  # fmt: skip
        out: list[Output] = [self._error("ECG frame", detail, now, "head_glitches")]
        for f in frames:
            out += self._frame(f, now, mono)
        return out

    def _suspects_agree(self, frame: EcgFrame) -> bool:
        """Keep ``frame`` among consecutive impossible ones; False if it starts a new run."""
        fits = bool(self._suspects) and self._suspects[-1].end_seq == frame.first_seq
        if not fits:
            self._suspects = []
        self._suspects.append(frame)
        self.counters.add("impossible_frames")
        return fits or len(self._suspects) == 1

    def _frame(self, frame: EcgFrame, now: float, mono: float) -> list[Output]:
        self.counters.add("frames_backfill" if frame.backfill else "frames_live")
        head = self.stream.ledger.next_seq
        before = self.stream.duplicates
        blocks = self.stream.feed(frame, now)
        if head is None or (self.stream.ledger.next_seq or 0) > head:
            self._moved_from = None if head is None else (head, self._head_at)
            self._head_at = mono
            self._resumed = False
        self.counters.add("duplicate_samples", self.stream.duplicates - before)
        if frame.backfill:
            self.backfill.backfilled(blocks, mono)
        n = sum(b.n for b in blocks)
        if n:
            self.counters.add("samples", n)
            self._delivered = True
        if self._held is not None:
            self._held += blocks
            return []
        return list(blocks)

    def _restart(self, frames: list[EcgFrame], now: float, mono: float) -> list[Output]:
        """The patch restarted its recording (its counter went back, or jumped further than
        the clock allows, frame after frame): the old stream ends; what it still owed is
        lost; the new one is numbered on after it. Its sample 0 is placed where the wall
        time says it was recorded (never before the old stream's end): the time between is
        a gap, and the new recording's samples before its first live frame are owed from
        the start (its extent then says which the patch still holds) and backfilled like
        any hole."""
        self.counters.add("restarts")
        ledger, off = self.stream.ledger, self._offset
        old_end = (ledger.next_seq or 0) + off
        reason = "patch restarted its recording"
        owed = [(e.first + off, e.end + off) for e in ledger.entries]
        elapsed = max(0, round((mono - self._head_at) * FS * self.time_scale))
        new_zero = max(old_end, old_end + elapsed - frames[0].first_seq)
        if new_zero > old_end:
            owed.append((old_end, new_zero))
        out: list[Output] = list(self._shift(self.stream.gaps(owed, reason, now), 0))
        out.append(DeviceRestarted(source=self.source, time=now, previous_end_seq=old_end,
                                   reason=reason))  # fmt: skip
        self.counters.add("samples_lost", sum(b - a for a, b in owed))
        self._offset = new_zero
        self._floor = None
        self._moved_from = None
        self.stream = PatchStream(self.source, lead=self.stream.lead)
        self.stream.ledger.want_from(0)  # a recording begins at 0: owed until its extent
        self._started, self._held = False, None
        self.backfill.restarted(self.stream)
        for f in frames:
            out += self._shift(self._frame(f, now, mono))
        return out

    def _shift(self, outputs: list[Output], offset: int | None = None) -> list[Output]:
        """Device sample numbers → stream numbers (they differ after a patch restart)."""
        off = self._offset if offset is None else offset
        if not off:
            return outputs
        return [_shifted(o, off) for o in outputs]

    def _release_held(self) -> list[Output]:
        held = self._held or []
        self._held = None if self._started else []
        return list(held)

    def _extent(self, oldest: int, nxt: int, now: float) -> list[Output] | None:
        """The patch holds samples ``[oldest, nxt)`` (its EXTENT answer, handed over by
        :meth:`~drivers.patch_backfill.BackfillRequests.answer`; ``now``: UTC s): None if
        that is impossible (``oldest > nxt``, or ``nxt`` more than ``_AHEAD_S`` of samples
        past the head). The first of a recording starts it; what the patch no longer holds
        becomes final gaps; samples up to ``nxt`` are due."""
        ledger = self.stream.ledger
        head = ledger.next_seq
        if oldest > nxt or (head is not None and nxt > head + int(_AHEAD_S * FS)):
            return None
        out: list[Output] = []
        held: list[Output] = []
        if not self._started:
            started = self._start(oldest, nxt, now)
            oldest = started.first_seq
            out, held = [started], self._release_held()
        lost = self.stream.lost(oldest, now)
        self.counters.add("samples_lost", sum(g.n_samples for g in lost))
        # the losses before the blocks they free: analysis then knows them lost before
        # it moves past them (no periodic strip queued over hours that will never come)
        out += lost + held
        if head is not None:  # samples up to now are due (no live data: nothing to judge by)
            ledger.receive(nxt, nxt)
        return out

    def _start(self, oldest: int, nxt: int, now: float) -> RecordingStarted:
        """The recording's first EXTENT: it starts at ``oldest`` (not before the floor of a
        resumed recording); samples from there on are wanted."""
        self._started = True
        oldest = max(oldest, self._floor) if self._floor is not None else oldest
        self.stream.ledger.want_from(oldest)
        t = self.stream.utc_of(oldest) if self.stream.clock.anchored else now
        return RecordingStarted(
            source=self.source, time=t, seq=oldest, first_seq=oldest, end_seq=nxt
        )

    def _symptom(self, data: bytes, now: float) -> list[Output]:
        press = decode_symptom(data)
        head = self.stream.ledger.next_seq
        possible = head is not None and press.seq <= head + int(_AHEAD_S * FS)
        seq = press.seq if possible and self.stream.clock.anchored else None
        device_time: float | None = EPOCH_2000 + press.us_since_2000 / 1e6
        if abs(device_time - now) > self.max_clock_error_s:
            device_time = None
        if press.seq == _NO_SEQ or (seq is None and device_time is None):
            # an unset sample number (erased memory), or neither sample nor time: not a press
            detail = f"symptom notification at sample {press.seq}, time {press.us_since_2000} us"
            return [self._bad(uuids.PATCH_SYMPTOM, f"{detail}: not a press", now)]
        if press in self._presses:  # the same id, sample and time: sent again
            self.counters.add("presses_repeated")
            return []
        self._presses.append(press)
        self.counters.add("presses")
        out: list[Output] = []
        if seq is None:  # never lose a press: timed by the patch's clock instead
            detail = f"press at impossible sample {press.seq}; timed by the patch's clock"
            out.append(self._bad(uuids.PATCH_SYMPTOM, detail, now))
        when = self.stream.utc_of(seq) if seq is not None else device_time
        assert when is not None
        pressed = ButtonPressed(
            source=self.source, time=when, seq=seq, press_id=press.press_id, device_time=device_time
        )
        return [*out, pressed]

    # --- errors ----------------------------------------------------------------------------
    def _bad(self, uuid: str, detail: str, now: float) -> DriverError:
        self.counters.add("bad_notifications")
        return self._error(_NAMES.get(uuid, uuid), detail, now, "bad_notifications")

    def _error(self, what: str, detail: str, now: float, counter: str) -> DriverError:
        return DriverError(
            source=self.source, time=now, what=what, detail=detail, count=self.counters[counter]
        )


_NAMES = {
    uuids.PATCH_ECG: "ECG frame",
    uuids.PATCH_BACKFILL: "backfill frame",
    uuids.PATCH_RACP: "RACP response",
    uuids.PATCH_SYMPTOM: "symptom",
    uuids.PATCH_STATUS: "status",
}


def _reach(since: float, mono: float, time_scale: float) -> float:
    """Samples a patch can have recorded between monotonic ``since`` and ``mono`` (s): the
    time between + ``_SLACK_S``, with 2 % clock tolerance."""
    return (mono - since + _SLACK_S) * FS * 1.02 * time_scale


def _within(seq: int, head: int, head_at: float, mono: float, time_scale: float) -> bool:
    """A live frame starting at ``seq`` is possible for a head at ``head`` that last moved at
    ``head_at`` (monotonic s): it extends the head no further than :func:`_reach` allows,
    or repeats the last ``_BACK_S``."""
    return head - _BACK_S * FS <= seq <= head + _reach(head_at, mono, time_scale)


def _shifted(o: Output, off: int) -> Output:
    if isinstance(o, SampleBlock):
        return SampleBlock(o.samples, o.fs, o.start, o.seq + off, o.leads, o.source)
    if isinstance(o, Gap):
        return replace(o, first_seq=o.first_seq + off, end_seq=o.end_seq + off)
    if isinstance(o, RecordingStarted):
        return replace(
            o, seq=o.first_seq + off, first_seq=o.first_seq + off, end_seq=o.end_seq + off
        )
    if isinstance(o, DeviceEvent) and o.seq is not None:
        return replace(o, seq=o.seq + off)
    return o
