"""The upload decisions fed by hand: due records, chunks, resume, versions, confirmations,
resend, quota; the window share and byte-rate cap of records."""

from __future__ import annotations

import numpy as np

from core.block import SampleBlock
from gateway.mqtt.window import DeliveryWindow
from gateway.outbox import OutboxMessage
from gateway.recording import RecordingStore
from gateway.upload import (
    RecordFile,
    RecordState,
    Snapshot,
    UploadCore,
    UploadSettings,
    choose_deletions,
)
from gateway.upload_rate import KindLimit, TokenBucket

S = UploadSettings(chunk_bytes=1000, settle_s=600.0, quiet_s=60.0, resend_after_s=3600.0)
END = 10_000.0  # the record's span ends then (POSIX s)


def _file(name: str = "p1_000000000000", size: int = 2500, mtime: float = END, end=END):
    return RecordFile("p1", name, (int(mtime * 1e9), 300, size), end, size / 500.0)


def _hashed(core: UploadCore, f: RecordFile, sha: str, now: float) -> None:
    core.hashed(Snapshot(f.key, sha, f.stamp), now)


def test_a_record_is_due_once_its_span_settled_and_its_files_are_quiet() -> None:
    core = UploadCore(S)
    core.listed([_file(mtime=END)])
    assert core.due(END + 599) == []  # settling (a patch may still backfill)
    f = _file(mtime=END + 650)  # backfilled 650 s after the span ended
    core.listed([f])
    assert core.due(END + 700) == []  # not quiet yet
    assert core.due(END + 710) == ["p1/p1_000000000000"]
    _hashed(core, f, "a" * 64, END + 710)
    assert core.due(END + 800) == []  # hashed as it is


def test_chunks_cover_the_signal_file_and_resume_where_they_stopped() -> None:
    core = UploadCore(S)
    f = _file(size=2500)
    core.listed([f])
    _hashed(core, f, "a" * 64, END + 700)
    plans = core.next_chunks(2, END + 700)
    assert [(p.index, p.offset, p.length, p.chunks, p.version) for p in plans] == [
        (0, 0, 1000, 3, 1),
        (1, 1000, 1000, 3, 1),
    ]
    core.queued(plans[0], END + 701)  # only the first reached the outbox before a crash
    saved = [RecordState.from_json(s.to_json()) for s in core.records.values()]
    again = UploadCore(S, saved)  # the gateway restarted
    again.listed([f])
    assert again.due(END + 800) == []  # the stamp is kept: not hashed again
    rest = again.next_chunks(10, END + 800)
    assert [(p.index, p.offset, p.length) for p in rest] == [(1, 1000, 1000), (2, 2000, 500)]
    for p in rest:
        again.queued(p, END + 801)
    assert again.records[f.key].sent and again.next_chunks(10, END + 802) == []


def test_backfill_after_sending_began_is_a_new_version_before_it_is_not() -> None:
    core = UploadCore(S)
    f = _file()
    core.listed([f])
    _hashed(core, f, "a" * 64, END + 700)
    f2 = _file(mtime=END + 710, size=2500)
    core.listed([f2])  # changed before any chunk went: the same version, new content
    assert core.records[f.key].stamp is None and core.next_chunks(5, END + 711) == []
    _hashed(core, f2, "b" * 64, END + 800)
    (p0,) = core.next_chunks(1, END + 800)
    assert (p0.version, p0.sha256) == (1, "b" * 64)
    core.queued(p0, END + 800)
    f3 = _file(mtime=END + 7200, size=3000)  # late backfill into an hour being sent
    core.listed([f3])
    _hashed(core, f3, "c" * 64, END + 7300)
    plans = core.next_chunks(5, END + 7300)
    assert {(p.version, p.sha256) for p in plans} == {(2, "c" * 64)}
    assert [p.index for p in plans] == [0, 1, 2]
    _hashed(core, f3, "c" * 64, END + 7400)  # hashed again, same content: nothing new
    assert core.records[f.key].version == 2


def test_confirmation_of_the_current_content_only_and_then_deletable() -> None:
    core = UploadCore(S)
    f = _file()
    core.listed([f])
    _hashed(core, f, "a" * 64, END + 700)
    for p in core.next_chunks(5, END + 700):
        core.queued(p, END + 700)
    assert not core.deletable("p1", f.name)
    assert not core.confirmed("p1", f.name, 1, "b" * 64)  # another content
    assert not core.confirmed("p1", f.name, 2, "a" * 64)  # another version
    assert core.confirmed("p1", f.name, 1, "a" * 64)
    assert core.deletable("p1", f.name)
    facts = core.facts("p1")
    assert facts["records_confirmed"] == 1 and facts["records_sent"] == 1
    assert facts["bytes_pending"] == 0 and facts["hours_in_records"] == round(5 / 3600, 3)
    core.listed([_file(mtime=END + 9000)])  # written again: no longer deletable
    assert not core.deletable("p1", f.name)


def test_a_record_never_confirmed_is_sent_again_after_the_resend_delay() -> None:
    core = UploadCore(S)
    f = _file()
    core.listed([f])
    _hashed(core, f, "a" * 64, END + 700)
    for p in core.next_chunks(5, END + 700):
        core.queued(p, END + 700)
    assert core.next_chunks(5, END + 700 + 3599) == []
    again = core.next_chunks(5, END + 700 + 3600)
    assert [p.index for p in again] == [0, 1, 2] and again[0].version == 1
    assert core.records[f.key].resends == 1


def test_bytes_pending_and_records_gone_from_disk_are_forgotten() -> None:
    core = UploadCore(S)
    a, b = _file("p1_000000000000", 2500), _file("p1_000000001000", 1200, end=END + 5)
    core.listed([a, b])
    assert core.facts("p1")["bytes_pending"] == 3700
    _hashed(core, a, "a" * 64, END + 700)
    core.queued(core.next_chunks(1, END + 700)[0], END + 700)
    assert core.facts("p1")["bytes_pending"] == 2700
    core.listed([b])
    assert list(core.records) == [b.key] and a.key in core.dirty


def test_quota_chooses_only_confirmed_records_and_reports_the_shortfall() -> None:
    recs = [("r0", 100, False), ("r1", 100, True), ("r2", 100, True), ("r3", 100, False)]
    d = choose_deletions(recs, used=400, need=100, max_bytes=400)
    assert d.delete == ("r1",) and d.shortfall == 0
    d = choose_deletions(recs, used=400, need=100, max_bytes=150)
    assert d.delete == ("r1", "r2") and d.shortfall == 150
    assert choose_deletions(recs, 100, 100, 400).delete == ()


def test_recording_quota_keeps_unconfirmed_records_and_raises_an_alarm(tmp_path) -> None:
    fs = 250.0

    def block(a: int, n: int) -> SampleBlock:
        return SampleBlock(np.full((n, 1), 0.5), fs, 1.79e9 + a / fs, a, ("ECG",), "p1")

    confirmed = {"p1_000000001000"}
    store = RecordingStore(tmp_path, "p1", file_s=4.0, max_mb=0.0045)  # room for two
    store.deletable = lambda name: name in confirmed
    for a in range(0, 5000, 500):
        store.write(block(a, 500))
    store.close()
    names = [p.stem for p in store.records()]
    assert "p1_000000000000" in names and "p1_000000001000" not in names
    assert store.records_deleted == 1 and store.quota_alarms >= 1
    assert "not yet confirmed" in (store.quota_alarm or "")


def _row(i: int, kind: str, size: int = 100) -> OutboxMessage:
    return OutboxMessage(i, kind, "p1", "t", i, f"m{i}", b"x" * size, 0.0)


def test_records_use_at_most_their_share_of_the_window_and_events_find_room() -> None:
    w = DeliveryWindow(max_inflight=5, limits={"record": KindLimit(2)})
    w.connected(65535, False, 0.0)
    sends = w.offer([_row(i, "record") for i in range(1, 6)], 0.0)
    assert [s.row.row_id for s in sends] == [1, 2] and w.room == 3
    events = w.offer([_row(10, "event"), _row(11, "event"), _row(3, "record")], 0.1)
    assert [s.row.row_id for s in events] == [10, 11]
    w.puback(sends[0].packet_id, 0, 0.2)
    assert [s.row.row_id for s in w.offer([_row(3, "record")], 0.2)] == [3]


def test_the_byte_rate_cap_spaces_records_at_their_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=1000.0)
    w = DeliveryWindow(max_inflight=20, limits={"record": KindLimit(20, bucket)})
    w.connected(65535, False, 0.0)
    sent_at = []
    t, row = 0.0, 1
    while t < 10.0:  # 500-byte records offered every 10 ms for 10 s
        for s in w.offer([_row(row, "record", 500)], t):
            sent_at.append(t)
            w.puback(s.packet_id, 0, t)
            row += 1
        t = round(t + 0.01, 2)
    total = 500 * len(sent_at)
    assert 9_000 <= total <= 1000 * 10 + 1000 + 500  # rate x time + burst (+ one in debt)
    assert bucket.wait_s(t) >= 0.0
