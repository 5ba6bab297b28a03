"""Version numbers are never reused for other content: a record being written (its header
behind its signal file) stays known to the uploader, and after a restart a hashed version
counts as begun (chunks may be on their way that the state does not know of)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.block import SampleBlock
from gateway.recording import RecordingStore
from gateway.upload import RecordFile, RecordState, Snapshot, UploadCore, UploadSettings
from gateway.upload_io import list_records

S = UploadSettings(chunk_bytes=1000, settle_s=600.0, quiet_s=60.0, resend_after_s=3600.0)
END = 10_000.0


def _file(size: int, mtime: float, settled: bool = True) -> RecordFile:
    return RecordFile("p1", "p1_000000000000", (int(mtime * 1e9), 300, size), END,
                      size / 500.0, settled)  # fmt: skip


def _send_all(core: UploadCore, now: float) -> None:
    for plan in core.next_chunks(100, now):
        core.queued(plan, now)


def test_a_record_being_written_keeps_its_history_and_is_not_hashed() -> None:
    core = UploadCore(S)
    f = _file(2500, END)
    core.listed([f])
    core.hashed(Snapshot(f.key, "a" * 64, f.stamp), END + 700)
    _send_all(core, END + 700)
    assert core.confirmed("p1", f.name, 1, "a" * 64)
    busy = _file(3000, END + 800, settled=False)  # backfill: the header not synced yet
    core.listed([busy])
    assert f.key in core.records and core.records[f.key].confirmed_version == 1
    assert core.due(END + 2000) == []  # not hashed while its header lags
    done = _file(3000, END + 900)
    core.listed([done])
    assert core.due(END + 2000) == [f.key]
    core.hashed(Snapshot(f.key, "b" * 64, done.stamp), END + 2000)
    assert core.records[f.key].version == 2  # not 1 again


def test_after_a_restart_new_content_never_reuses_a_hashed_versions_number() -> None:
    core = UploadCore(S)
    f = _file(2500, END)
    core.listed([f])
    core.hashed(Snapshot(f.key, "a" * 64, f.stamp), END + 700)
    # chunks committed to the outbox, killed before the state said so
    saved = [RecordState.from_json(s.to_json()) for s in core.records.values()]
    assert saved[0].begun == 0
    again = UploadCore(S, saved)
    changed = _file(3000, END + 800)
    again.listed([changed])
    again.hashed(Snapshot(f.key, "b" * 64, changed.stamp), END + 900)
    assert again.records[f.key].version == 2


def test_the_listing_marks_a_record_whose_header_is_behind(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "p1", "p1", file_s=60.0)
    x = np.zeros((500, 1))
    store.write(SampleBlock(x, 250.0, 1.79e9, 0, ("ECG",), "p1"))
    store.close()
    (listed,) = list_records(tmp_path, 60.0)
    assert listed.settled and listed.recorded_s == 2.0
    with (tmp_path / "p1" / f"{listed.name}.dat").open("ab") as f:
        f.write(b"\x00\x00" * 250)  # samples written, the header not updated yet
    (busy,) = list_records(tmp_path, 60.0)
    assert not busy.settled and busy.name == listed.name and busy.recorded_s == 3.0
