"""The patch conversation fed by hand, h11 style: every exchange, including the broken ones.

No radio, no bleak: the session gets "connected", reads, writes, notifications and ticks,
and must answer with the right commands and deliver each sample exactly once.
"""

from __future__ import annotations

import numpy as np

from core.block import SampleBlock
from core.events import (
    ButtonPressed,
    Connected,
    DeviceRestarted,
    Disconnected,
    DriverError,
    Gap,
    LeadOff,
    RecordingStarted,
)
from drivers import uuids
from drivers.gatt_session import Disconnect, Read, Subscribe, Write
from drivers.patch_gatt import (
    EPOCH_2000,
    DeviceTime,
    RacpOp,
    RacpResponse,
    RacpStatus,
    SymptomPress,
    encode_abort,
    encode_device_time,
    encode_ecg_frame,
    encode_racp_response,
    encode_report_extent,
    encode_request_range,
    encode_symptom,
)
from drivers.patch_session import PatchSession, PatchSettings
from tests.support import PATCH_CHARACTERISTICS

T0 = 1_800_000_000.0
SETTINGS = PatchSettings("p1", "E0:00:00:00:00:01")
FS = 250


def _uv(first: int, end: int) -> np.ndarray:
    return (np.arange(first, end) % 500 - 250) * 2


class Link:
    """Drives one session like the BLE shell would, collecting what it delivers."""

    def __init__(self, session: PatchSession | None = None) -> None:
        self.s = session or PatchSession(SETTINGS, racp_timeout_s=2.0, racp_retry_s=1.0)
        self.mono = 0.0
        self.blocks: list[SampleBlock] = []
        self.gaps: list[Gap] = []
        self.events: list = []
        self.commands: list = []

    @property
    def now(self) -> float:
        return T0 + self.mono

    def take(self, outputs: list) -> list:
        cmds = []
        for o in outputs:
            if isinstance(o, SampleBlock):
                self.blocks.append(o)
            elif isinstance(o, Gap):
                self.gaps.append(o)
            elif isinstance(o, Read | Write | Subscribe | Disconnect):
                cmds.append(o)
            else:
                self.events.append(o)
        self.commands += cmds
        return cmds

    def perform(self, cmds: list) -> None:
        """Do what the shell does: reads answered with the patch clock, writes completed."""
        for c in cmds:
            if isinstance(c, Read):
                data = encode_device_time(DeviceTime(int((self.now - EPOCH_2000) * 1e6), 0))
                self.perform(self.take(self.s.read_done(c.uuid, data, self.now, self.mono)))
            elif isinstance(c, Write):
                self.take(self.s.write_done(c.uuid, self.now, self.mono))

    def streaming(self, end: int) -> Link:
        """Connected, samples 0..``end`` received live and the extent answered: the
        recording starts at 0 and nothing is owed."""
        self.connect()
        self.frame(0, end)
        self.racp(_extent(0, end))
        return self

    def connect(self) -> list:
        cmds = self.take(self.s.connected(PATCH_CHARACTERISTICS, 247, self.now, self.mono))
        self.perform(cmds)
        return self.commands

    def frame(self, first: int, end: int, backfill: bool = False) -> list:
        """Samples [first, end) as frames of at most 100 samples (as a patch sends them)."""
        uuid = uuids.PATCH_BACKFILL if backfill else uuids.PATCH_ECG
        cmds = []
        for a in range(first, end, 100):
            data = encode_ecg_frame(a, _uv(a, min(a + 100, end)), backfill=backfill)
            cmds += self.take(self.s.notified(uuid, data, self.now, self.mono))
        return cmds

    def racp(self, r: RacpResponse) -> list:
        cmds = self.take(
            self.s.notified(uuids.PATCH_RACP, encode_racp_response(r), self.now, self.mono)
        )
        self.perform(cmds)
        return cmds

    def press(self, press: SymptomPress) -> None:
        """The patch notifies a symptom press now."""
        self.take(self.s.notified(uuids.PATCH_SYMPTOM, encode_symptom(press), self.now, self.mono))

    def tick(self, dt: float) -> list:
        self.mono += dt
        cmds = self.take(self.s.tick(self.now, self.mono))
        self.perform(cmds)
        return cmds

    def received(self) -> np.ndarray:
        end = max(b.end_seq for b in self.blocks)
        count = np.zeros(end, int)
        for b in self.blocks:
            count[b.seq : b.end_seq] += 1
            np.testing.assert_allclose(b.samples[:, 0] * 1000, _uv(b.seq, b.end_seq), atol=1e-3)
        return count


def _extent(oldest: int, nxt: int) -> RacpResponse:
    return RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, oldest, nxt)


def _done(first: int, end: int, status: RacpStatus = RacpStatus.SUCCESS) -> RacpResponse:
    return RacpResponse(RacpOp.RANGE_DONE, status, first, end)


def _asking(link: Link, end: int = 100) -> Link:
    """``link`` connected, samples 0..50 and ``end``..``end + 50`` received: 50..``end``
    is requested."""
    link.streaming(50)
    link.frame(end, end + 50)
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(50, end))
    return link


def test_first_connection_reads_clock_subscribes_asks_extent() -> None:
    link = Link()
    cmds = link.connect()
    assert cmds[0] == Read(uuids.PATCH_TIME)
    assert Subscribe(uuids.PATCH_RACP) in cmds and Subscribe(uuids.PATCH_ECG) in cmds
    assert cmds[-1] == Write(uuids.PATCH_RACP, encode_report_extent())
    assert isinstance(link.events[0], Connected)


def test_live_data_before_the_extent_is_held_then_the_recording_starts_at_the_oldest() -> None:
    link = Link()
    link.connect()
    link.frame(5000, 5050)  # live data arrives before the EXTENT answer
    assert link.blocks == []  # held: analysis must start at the oldest sample
    cmds = link.racp(_extent(0, 5050))
    (started,) = [e for e in link.events if isinstance(e, RecordingStarted)]
    assert (started.first_seq, started.end_seq) == (0, 5050)
    assert [b.seq for b in link.blocks] == [5000]  # released after the recording start
    assert cmds == [Write(uuids.PATCH_RACP, encode_request_range(0, 5000))]
    link.frame(0, 100, backfill=True)
    link.frame(100, 5000, backfill=True)
    link.racp(_done(0, 5000))
    assert (link.received() == 1).all()
    assert link.s.stream.ledger.missing == 0


def test_a_patch_that_never_answers_racp_still_streams_live() -> None:
    link = Link()
    link.connect()
    for k in range(20):
        link.frame(k * 50, (k + 1) * 50)
        cmds = link.tick(0.5)
        assert not any(isinstance(c, Disconnect) for c in cmds)
    assert link.s.stats()["racp_timeouts"] >= 2
    assert sum(b.n for b in link.blocks) == 1000  # nothing lost for want of an answer
    asks = [c for c in link.commands if c == Write(uuids.PATCH_RACP, encode_report_extent())]
    assert len(asks) >= 3  # it keeps asking, on the same link


def test_range_done_for_a_range_never_asked_is_ignored() -> None:
    link = Link().streaming(50)
    link.frame(100, 150)  # 50..100 missed
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(50, 100))
    link.racp(_done(900, 1000))  # not what was asked
    assert link.s.stats()["racp_unexpected"] == 1
    link.frame(50, 100, backfill=True)
    link.racp(_done(50, 100))
    assert (link.received() == 1).all()


def test_not_held_asks_the_extent_and_reports_the_exact_final_gap() -> None:
    link = Link().streaming(50)
    link.frame(1000, 1050)  # 50..1000 missed
    link.tick(0.1)
    link.frame(600, 1000, backfill=True)  # the patch holds only 600 on
    cmds = link.racp(_done(600, 1000, RacpStatus.NOT_HELD))
    assert cmds == [Write(uuids.PATCH_RACP, encode_report_extent())]
    link.racp(_extent(600, 1050))
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq, gap.final, gap.reason) == (
        50,
        600,
        True,
        "not in patch memory",
    )
    assert link.s.stats()["samples_lost"] == 550


def test_busy_aborts_the_running_backfill_asks_again_later_and_invalid_three_times_gives_up():
    link = _asking(Link())
    cmds = link.racp(_done(50, 50, RacpStatus.BUSY))
    assert cmds == [Write(uuids.PATCH_RACP, encode_abort())]  # stop what keeps it busy
    assert link.tick(0.5) == []  # the ABORT's answer is awaited: nothing else is sent
    link.racp(_done(0, 0, RacpStatus.INVALID))  # nothing was running (any more)
    assert link.tick(0.4) == []  # not before racp_retry_s after the BUSY
    assert link.tick(0.2) == [Write(uuids.PATCH_RACP, encode_request_range(50, 100))]
    for _ in range(3):
        link.racp(_done(50, 50, RacpStatus.INVALID))
        link.tick(1.1)
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq, gap.reason) == (50, 100, "patch refused backfill")


def test_a_patch_that_ignores_range_requests_is_not_said_to_refuse_them() -> None:
    """Each request times out, the ABORT after it finds nothing running (INVALID 0, 0):
    three in a row give the range up as unanswered, not as refused."""
    link = _asking(Link())
    for _ in range(3):
        link.frame(150, 160)  # live data goes on
        cmds = link.tick(2.1)  # no answer within racp_timeout_s: ABORT
        assert cmds == [Write(uuids.PATCH_RACP, encode_abort())]
        link.racp(_done(0, 0, RacpStatus.INVALID))
        link.tick(1.1)  # racp_retry_s: the range is asked again (the last time: given up)
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq) == (50, 100)
    assert gap.reason == "patch did not backfill it (no answer)"


def test_busy_after_a_reconnect_aborts_the_old_backfill_and_loses_nothing() -> None:
    """A patch still running the backfill the previous link asked for answers BUSY after
    the reconnect, again and again: each BUSY is followed by an ABORT (answered ABORTED with
    the old backfill's range) and the range is asked again after 1, 2, 4, 8 s
    (racp_retry_s doubling); nothing is given up (before: a final gap after three BUSY
    answers 5 s apart while the patch still held the samples). Once the patch takes the
    request, the samples come, and the next BUSY starts the backoff again."""
    link = _asking(Link(), 1000)
    link.frame(50, 150, backfill=True)
    link.take(link.s.link_lost("link lost", link.now, link.mono))  # mid-backfill
    link.connect()
    link.frame(1050, 1100)
    link.racp(_extent(0, 1100))
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(150, 1000))
    asked, live = [], 1100
    for delay in (1.0, 2.0, 4.0, 8.0):
        cmds = link.racp(_done(150, 150, RacpStatus.BUSY))
        assert cmds == [Write(uuids.PATCH_RACP, encode_abort())]
        assert link.racp(_done(50, 400, RacpStatus.ABORTED)) == []  # the old one, stopped
        early = []
        for i in range(int(delay)):  # live ECG flows all along
            link.frame(live, live + 50)
            live += 50
            early += link.tick(0.9 if i == int(delay) - 1 else 1.0)
        assert early == []
        asked += link.tick(0.1)
    assert asked == [Write(uuids.PATCH_RACP, encode_request_range(150, 1000))] * 4
    assert link.gaps == [] and link.s.stats()["racp_busy"] == 4
    link.frame(150, 1000, backfill=True)
    link.racp(_done(150, 1000))
    assert (link.received() == 1).all() and link.s.stream.ledger.missing == 0
    link.mono += 10.0
    link.frame(live + 2500, live + 2550)  # 10 s missed
    link.tick(0.1)
    link.racp(_done(live, live, RacpStatus.BUSY))
    link.racp(_done(0, 0, RacpStatus.INVALID))
    assert link.tick(0.9) == [] and link.tick(0.1) != []  # 1 s again: the run was broken


def test_a_patch_busy_for_ever_has_its_range_given_up_after_busy_give_up_s() -> None:
    """A patch that answers BUSY forever (its backfill stuck, ABORT ignored): asked again
    with backoff, the range is a final gap at the first BUSY once every request for
    busy_give_up_s (20 s here) was answered BUSY, with the reason."""
    s = PatchSession(SETTINGS, racp_timeout_s=2.0, racp_retry_s=1.0, busy_give_up_s=20.0)
    link = _asking(Link(s))
    busy_at = []
    while True:
        busy_at.append(link.mono)
        link.racp(_done(50, 50, RacpStatus.BUSY))
        if link.gaps:
            break
        cmds = []
        while not cmds:  # the ABORT goes unanswered (2 s); live ECG keeps the link
            link.frame(150, 160)
            cmds = link.tick(0.5)
        assert cmds == [Write(uuids.PATCH_RACP, encode_request_range(50, 100))]
    # asked again 1, 2, 4, 8, 16 s after each BUSY, at least racp_retry_s after the ABORT's
    # wait (2 s, seen at the next tick)
    assert np.diff(busy_at).round(1).tolist() == [3.5, 3.5, 4.0, 8.0, 16.0]
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq, gap.final) == (50, 100, True)
    assert gap.reason == "patch did not backfill it (BUSY to every request for 35 s)"
    assert link.s.stream.ledger.missing == 0 and link.s.stats()["samples_lost"] == 50


def test_a_range_done_that_never_comes_is_aborted_asked_again_and_the_link_is_kept() -> None:
    link = _asking(Link())
    link.frame(150, 200)
    cmds = link.tick(2.1)  # no RANGE_DONE (nor a backfill frame) within racp_timeout_s
    assert any(isinstance(e, DriverError) and e.what == "racp" for e in link.events)
    assert cmds == [Write(uuids.PATCH_RACP, encode_abort())]  # the patch may be stuck in it
    assert not any(isinstance(c, Disconnect) for c in link.commands)
    link.racp(_done(0, 0, RacpStatus.INVALID))  # "nothing was running": the ABORT's answer
    link.frame(200, 250)
    assert link.tick(0.5) == []  # asked again after racp_retry_s
    cmds = link.tick(0.6)
    assert cmds == [Write(uuids.PATCH_RACP, encode_request_range(50, 100))]
    assert link.s.stats()["racp_unexpected"] == 0


def test_backfill_frames_extend_the_wait_for_their_range_done() -> None:
    """A backfill longer than racp_timeout_s (2 s here) is not a silent one: every frame
    that brings samples of the requested range pushes the deadline on."""
    link = Link().streaming(50)
    link.mono += 20.0  # away for 20 s
    live = 5050
    link.frame(live, live + 50)  # 50..5050 missed
    live += 50
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(50, 5050))
    for a in range(50, 5050, 500):  # 10 frames, 1.5 s apart: 15 s in all
        link.frame(a, a + 500, backfill=True)
        link.frame(live, live + 375)  # live goes on
        live += 375
        assert link.tick(1.5) == []
    link.racp(_done(50, 5050))
    assert link.s.stats()["racp_timeouts"] == 0 and link.s.stream.ledger.missing == 0
    # frames that bring nothing new (a repeat) do not keep a wait alive
    link.frame(live + 100, live + 150)
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(live, live + 100))
    link.frame(60, 100, backfill=True)  # duplicates of what came
    link.tick(1.5)
    link.frame(60, 100, backfill=True)
    cmds = link.tick(1.0)
    assert cmds == [Write(uuids.PATCH_RACP, encode_abort())]


def test_an_aborted_backfill_keeps_what_came_and_asks_for_the_rest() -> None:
    link = Link().streaming(50)
    link.frame(1050, 1100)
    link.tick(0.1)  # 50..1050 requested
    link.frame(50, 250, backfill=True)  # then the patch stalls
    assert link.tick(2.1) == [Write(uuids.PATCH_RACP, encode_abort())]
    link.racp(_done(50, 250, RacpStatus.ABORTED))
    link.tick(1.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(250, 1050))
    link.frame(250, 1050, backfill=True)
    link.racp(_done(250, 1050))
    assert (link.received() == 1).all() and link.gaps == []


def test_a_range_never_delivered_is_given_up_as_a_final_gap() -> None:
    """A patch that takes the request but never sends the range (nor an answer; ABORT
    answered ABORTED with nothing sent): after max_requests fruitless requests in a row the
    range is a final gap, with the reason."""
    link = _asking(Link())
    for _ in range(3):
        link.frame(150, 160)
        assert link.tick(2.1) == [Write(uuids.PATCH_RACP, encode_abort())]
        link.racp(_done(50, 50, RacpStatus.ABORTED))
        link.tick(1.1)
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq, gap.final) == (50, 100, True)
    assert gap.reason == "patch did not backfill it (ABORTED)"
    assert link.s.stream.ledger.missing == 0 and link.s.stats()["samples_lost"] == 50


def test_link_lost_ends_every_wait_at_once_and_requests_again_on_reconnect() -> None:
    link = Link().streaming(50)
    link.frame(100, 150)
    link.tick(0.1)  # 50..100 requested
    link.take(link.s.link_lost("link lost", link.now, link.mono))
    assert isinstance(link.events[-1], Disconnected)
    assert link.tick(5.0) == []  # no timers run without a link
    link.commands.clear()
    link.connect()
    link.racp(_extent(0, 300))
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(50, 100))


def test_silent_stream_disconnects() -> None:
    link = Link(PatchSession(PatchSettings("p1", "", silence_timeout_s=1.0)))
    link.connect()
    link.frame(0, 50)
    assert link.tick(0.5) == [] or not any(isinstance(c, Disconnect) for c in link.commands)
    cmds = link.tick(1.0)
    assert Disconnect("silent stream", failed=False) in cmds


def test_live_frames_never_fill_a_hole() -> None:
    link = Link().streaming(50)
    link.frame(100, 150)
    link.frame(60, 80)  # a live frame going backwards into the hole: not trusted
    assert link.s.stream.ledger.missing == 50
    assert link.s.stats()["duplicate_samples"] == 20


def test_device_time_that_does_not_decode_or_is_absurd_is_ignored() -> None:
    for data in (b"\x01\x02\x03\x04\x05", encode_device_time(DeviceTime(2**63, 0))):
        s = PatchSession(SETTINGS)
        out = s.connected(PATCH_CHARACTERISTICS, 247, T0, 0.0)
        out = s.read_done(uuids.PATCH_TIME, data, T0, 0.0)
        assert any(isinstance(o, DriverError) and o.what == "device_time" for o in out)
        assert any(isinstance(o, Write) for o in out)  # the conversation goes on
        assert s.stats()["clock_rejected"] == 1
        blocks = s.notified(uuids.PATCH_ECG, encode_ecg_frame(0, _uv(0, 50)), T0, 0.1)
        s.write_done(uuids.PATCH_RACP, T0, 0.1)
        s.notified(uuids.PATCH_RACP, encode_racp_response(_extent(0, 50)), T0, 0.2)
        assert blocks == [] and s.stream.clock.anchored  # anchored on the frame's arrival


def test_symptom_presses_are_deduplicated_and_an_impossible_sample_is_timed_by_the_clock() -> None:
    link = Link().streaming(50)
    us_now = int((link.now - EPOCH_2000) * 1e6)
    notify = link.press
    for _ in range(2):  # the patch re-sends presses made while the link was down
        notify(SymptomPress(1, 40, us_now))
    notify(SymptomPress(2, 10**9, us_now - 5_000_000))  # impossible sample, plausible time
    notify(SymptomPress(3, 0xFFFFFFFF, us_now))  # no sample number at all: not a press
    notify(SymptomPress(4, 10**9, 0))  # impossible sample and time (year 2000): not a press
    presses = [e for e in link.events if isinstance(e, ButtonPressed)]
    assert [(p.press_id, p.seq) for p in presses] == [(1, 40), (2, None)]
    assert presses[1].time == presses[1].device_time == link.now - 5.0  # kept: the patch's time
    assert link.s.stats()["presses_repeated"] == 1 and link.s.stats()["presses"] == 2
    assert link.s.stats()["bad_notifications"] == 3  # the impossible sample, and two non-presses


def test_a_new_recordings_presses_are_new_even_when_their_ids_start_again() -> None:
    """A patch that restarts its recording may number its presses from 1 again: a press
    with an id seen before but another sample or time is a new press (the patient pressed
    again), reported, not dropped as a repeat; the same press sent again is still one."""
    link = Link().streaming(5000)
    us_now = int((link.now - EPOCH_2000) * 1e6)
    notify = link.press
    notify(SymptomPress(1, 4000, us_now))
    link.mono += 2.0
    for k in range(4):  # the patch restarts: its counter starts again at 0
        link.frame(k * 50, (k + 1) * 50)
    notify(SymptomPress(1, 120, us_now + 2_000_000))  # the new recording's first press
    notify(SymptomPress(1, 120, us_now + 2_000_000))  # ... sent again
    presses = [e for e in link.events if isinstance(e, ButtonPressed)]
    assert [p.press_id for p in presses] == [1, 1]
    assert presses[1].seq is not None and presses[1].seq > presses[0].seq  # numbered on
    assert link.s.stats()["presses"] == 2 and link.s.stats()["presses_repeated"] == 1


def test_electrode_contact_changes_are_lead_off_events() -> None:
    """The patch says its electrode lost contact (Status, or the flag of live frames): one
    LeadOff event per change, at the frame's sample when a frame said it, none for a
    backfilled frame's history; what strips and events then report as lead_off."""
    from drivers.patch_gatt import PatchStatus, encode_status

    link = Link().streaming(100)

    def status(off: bool) -> None:
        data = encode_status(PatchStatus(80, off, 10, 100))
        link.take(link.s.notified(uuids.PATCH_STATUS, data, link.now, link.mono))

    def live(first: int, off: bool, backfill: bool = False) -> None:
        data = encode_ecg_frame(first, _uv(first, first + 50), backfill=backfill, lead_off=off)
        uuid = uuids.PATCH_BACKFILL if backfill else uuids.PATCH_ECG
        link.take(link.s.notified(uuid, data, link.now, link.mono))

    status(True)
    status(True)  # no change
    live(100, True)
    live(150, False)  # contact again, said by a frame
    live(0, True, backfill=True)  # history: no event
    status(False)
    offs = [e for e in link.events if isinstance(e, LeadOff)]
    assert [(e.leads, e.seq) for e in offs] == [(("ECG",), None), ((), 150)]


def test_malformed_notifications_are_counted_not_raised() -> None:
    link = Link()
    link.connect()
    for uuid in (uuids.PATCH_ECG, uuids.PATCH_RACP, uuids.PATCH_SYMPTOM, uuids.PATCH_STATUS):
        link.take(link.s.notified(uuid, b"\xff", link.now, link.mono))
    assert link.s.stats()["bad_notifications"] == 4


def test_one_absurd_live_frame_is_dropped_and_its_samples_backfilled() -> None:
    link = Link().streaming(100)
    link.mono += 0.4
    link.frame(0xFFFFFF00, 0xFFFFFF00 + 50)  # a corrupt frame that passed its CRC
    link.frame(150, 200)  # the stream goes on: 100..150 became a hole to backfill
    assert link.s.stats()["impossible_frames"] == 1 and link.s.stats()["restarts"] == 0
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(100, 150))


def test_a_patch_that_restarts_its_counter_gets_a_new_stream_that_overwrites_nothing() -> None:
    link = Link().streaming(5000)
    link.mono += 2.0
    for k in range(4):  # the counter starts again at 0, frame after frame
        link.frame(k * 50, (k + 1) * 50)
    restarted = [e for e in link.events if isinstance(e, DeviceRestarted)]
    assert len(restarted) == 1 and restarted[0].previous_end_seq == 5000
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq) == (5000, 5000 + 2 * 250)  # the wall time between
    new = [b for b in link.blocks if b.seq >= 5000]
    assert new[0].seq == gap.end_seq and sum(b.n for b in new) == 200
    assert link.s.stats()["restarts"] == 1


def test_a_restarted_recordings_first_samples_are_backfilled_not_declared_lost() -> None:
    """The patch restarted its recording 1.2 s before its first live frame reached us (at
    its sample 300): the new recording's samples 0..300 are still in its memory, so only
    the time before them is a gap, and they are backfilled right after it; no sample is
    both declared lost and delivered."""
    link = Link().streaming(5000)
    link.mono += 2.0  # 500 samples of wall time since the old stream's head
    for k in range(4):  # the new recording's live frames, from its sample 300
        link.frame(300 + k * 50, 350 + k * 50)
    (gap,) = link.gaps
    assert (gap.first_seq, gap.end_seq) == (5000, 5000 + 500 - 300)
    assert min(b.seq for b in link.blocks if b.seq >= 5000) == 5500  # its sample 300
    link.tick(0.1)
    link.racp(_extent(0, 500))
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(0, 300))
    link.frame(0, 300, backfill=True)
    link.racp(_done(0, 300))
    delivered = np.zeros(6000, int)
    for b in link.blocks:
        delivered[b.seq : b.end_seq] += 1
    assert (delivered[5200:5700] == 1).all()  # the new recording, once each
    assert not any(delivered[g.first_seq : g.end_seq].any() for g in link.gaps)
    assert link.s.stats()["samples_lost"] == 200


def test_a_frame_numbered_ahead_of_the_counter_does_not_make_a_restart() -> None:
    """One frame numbered 600 samples ahead of the patch's counter (within what the clock
    allows) moves the head; the patch's next frames then run behind it, further than a
    repeat may. Their numbers are far beyond what a recording begun since could hold, so
    this is not a new recording: no stream is renumbered, nothing is declared lost, the
    stream goes on by the patch's counter, the hole is backfilled, and it is reported."""
    link = Link().streaming(5000)
    link.mono += 2.0  # the patch's counter is at 5500
    link.frame(6100, 6150)  # numbered 600 ahead
    for k in range(3):  # the patch's own frames: 650 to 600 samples behind the head
        link.frame(5500 + 50 * k, 5550 + 50 * k)
    link.frame(5650, 6200)  # within a repeat of the head again, then past it
    assert link.s.stats()["restarts"] == 0 and link.s.stats()["head_glitches"] == 1
    assert not [e for e in link.events if isinstance(e, DeviceRestarted)] and not link.gaps
    (error,) = [e for e in link.events if isinstance(e, DriverError)]
    assert "-650 samples from the stream's head" in error.detail
    delivered = np.zeros(7000, int)
    for b in link.blocks:
        delivered[b.seq : b.end_seq] += 1
    assert delivered.max() == 1 and delivered[:5000].all() and delivered[6100:6200].all()
    link.tick(0.1)
    assert link.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(5000, 6100))


def test_a_frame_numbered_near_the_old_head_after_an_outage_does_not_make_a_restart() -> None:
    """Back after a minute away, the first live frame is numbered 100 samples past the old
    head (its number wrong, yet possible) and moves the head; the patch's own frames, a
    minute further on, are then impossible for the 0.1 s since. They were possible before
    that move and no recording begun since could hold their numbers: the stream goes on
    by the patch's counter (no restart, no renumbering) and the minute is backfilled."""
    link = Link().streaming(5000)
    link.mono += 60.0  # the patch's counter is at 20000
    link.frame(5100, 5150)
    link.mono += 0.1
    link.frame(20025, 20175)  # three frames (of at most 100 samples, then 50)
    link.frame(20175, 20200)
    assert link.s.stats()["restarts"] == 0 and link.s.stats()["head_glitches"] == 1
    assert not link.gaps and max(b.end_seq for b in link.blocks) == 20200
    owed = [(e.first, e.end) for e in link.s.stream.ledger.entries]
    assert owed == [(5000, 5100), (5150, 20025)]


def test_unsolicited_backfill_beyond_the_head_is_refused() -> None:
    link = Link().streaming(100)
    link.frame(250_000, 250_050, backfill=True)
    assert link.s.stats()["bad_notifications"] == 1
    assert link.s.stream.ledger.next_seq == 100 and link.s.stream.ledger.missing == 0


def test_an_extent_before_any_live_data_does_not_set_the_head() -> None:
    link = Link()
    link.connect()
    link.racp(_extent(0, 0xFFFFFFFF))  # absurd next, and no live data to judge it by
    link.frame(0, 50)
    assert sum(b.n for b in link.blocks) == 50  # live data is not taken for duplicates


def test_resume_after_a_gateway_restart_asks_only_what_is_owed() -> None:
    first = Link().streaming(300)
    first.frame(400, 500)  # 300..400 owed when the gateway stops
    pos = first.s.position()
    assert pos is not None and pos.next_seq == 500 and pos.holes == ((300, 400),)
    again = Link()
    again.s.resume(pos)
    again.connect()
    again.frame(2000, 2050)  # the patch went on recording while the gateway was down
    again.racp(_extent(0, 2050))
    asked = [c for c in again.commands if isinstance(c, Write) and c.data[0] == 0x02]
    assert asked[0] == Write(uuids.PATCH_RACP, encode_request_range(300, 400))
    again.racp(_done(300, 400))
    assert again.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(500, 2000))


def test_resume_after_a_reboot_goes_on_with_the_same_recording() -> None:
    """The Pi lost power for ten minutes: its monotonic clock starts again (40 s at the
    first frame), so the patch's frames, ten minutes on, are impossible for the time it
    knows of. They lie past the previous run's head, and a counter never goes back within
    a recording: the same recording goes on (no restart, nothing renumbered), and the ten
    minutes are asked of the patch."""
    first = Link().streaming(300)
    again = Link()
    again.s.resume(first.s.position())
    again.mono = 40.0
    again.connect()
    again.frame(150_300, 150_600)
    again.racp(_extent(0, 150_600))
    assert again.s.stats()["restarts"] == 0 and not again.gaps
    assert (again.blocks[0].seq, again.blocks[0].end_seq) == (150_300, 150_400)
    assert again.commands[-1] == Write(uuids.PATCH_RACP, encode_request_range(300, 150_300))


def test_a_resumed_position_not_heard_from_since_is_kept() -> None:
    """A gateway that stops again before the patch is heard from (no frame, no device
    time) saves the position it resumed from, holes included, not nothing (found by the
    device fuzz: two restarts in a row forgot the stream and its holes)."""
    first = Link().streaming(300)
    first.frame(400, 500)
    pos = first.s.position()
    again = Link()
    again.s.resume(pos)
    assert again.s.position() == pos


def test_losses_found_by_the_extent_come_before_the_blocks_they_free() -> None:
    """A patch back after longer than its memory, live data held for the EXTENT: the
    gap ("not in patch memory") is given before the held blocks, so the pipeline knows
    the hours lost before its analysis moves past them (found by the fuzz test: the
    other way round, it queued a periodic strip per period of the loss in one step)."""
    first = Link().streaming(300)
    again = Link()
    again.s.resume(first.s.position())
    again.mono = 3600.0
    again.take(again.s.connected(PATCH_CHARACTERISTICS, 247, again.now, again.mono))
    again.perform(again.commands)
    again.frame(900_000, 900_050)  # an hour later; the patch keeps only the last 2,000
    assert again.blocks == []
    r = encode_racp_response(_extent(898_050, 900_050))
    out = again.s.notified(uuids.PATCH_RACP, r, again.now, again.mono)
    kinds = [type(o).__name__ for o in out if isinstance(o, SampleBlock | Gap)]
    assert kinds == ["Gap", "SampleBlock"], kinds
    (gap,) = [o for o in out if isinstance(o, Gap)]
    assert (gap.first_seq, gap.end_seq, gap.final) == (300, 898_050, True)
