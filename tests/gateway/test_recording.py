"""The full recording as WFDB records: every sample at its place whatever the arrival
order, holes as "no sample", records of fixed length, restart, quota; read back with wfdb."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from gateway.recording import RecordingStore, fsync_all
from sim.synth import EcgSynth

FS = 250.0
T0 = 1_790_000_000.0


def _signal(n: int, leads=("ECG",)) -> np.ndarray:
    return EcgSynth(FS, leads, seed=4).generate(n).astype(np.float64)


def _block(x: np.ndarray, seq: int, leads=("ECG",)) -> SampleBlock:
    return SampleBlock(x, FS, T0 + seq / FS, seq, leads, "p1")


def _read_all(store: RecordingStore) -> tuple[np.ndarray, list]:
    records = [wfdb.rdrecord(str(dat.with_suffix(""))) for dat in store.records()]
    return np.concatenate([r.p_signal for r in records]), records


def test_out_of_order_backfill_and_holes_read_back_exactly(tmp_path: Path) -> None:
    x = _signal(2500)  # 10 s in records of 4 s (1000 samples)
    store = RecordingStore(tmp_path, "p1", file_s=4.0)
    order = [(0, 300), (900, 1400), (1600, 2500), (300, 900)]  # backfill of 300..900 last
    for a, b in order:
        store.write(_block(x[a:b], a))
    store.write(_block(x[950:1000], 950))  # a repeat overwrites with the same values
    store.close()
    got, records = _read_all(store)
    assert [r.record_name for r in records] == ["p1_000000000000", "p1_000000001000",
                                                "p1_000000002000"]  # fmt: skip
    assert [r.sig_len for r in records] == [1000, 1000, 500]
    assert records[0].fs == FS and records[0].sig_name == ["ECG"] and records[0].units == ["mV"]
    assert records[0].base_date.isoformat() == "2026-09-21"
    expected = np.round(x[:2500] * 1000) / 1000
    expected[1400:1600] = np.nan  # never received: "no sample"
    np.testing.assert_allclose(got[:, 0], expected[:, 0], atol=1e-9)
    assert store.samples_written == 2500 - 200 + 50


def test_restart_goes_on_in_the_same_record(tmp_path: Path) -> None:
    x = _signal(1500, ("I", "II"))
    first = RecordingStore(tmp_path, "cart", file_s=4.0)
    first.write(_block(x[:700], 0, ("I", "II")))
    first.close()
    again = RecordingStore(tmp_path, "cart", file_s=4.0)  # the gateway restarted
    again.write(_block(x[800:1500], 800, ("I", "II")))
    again.close()
    got, records = _read_all(again)
    assert [r.sig_len for r in records] == [1000, 500] and records[0].sig_name == ["I", "II"]
    expected = np.round(x * 1000) / 1000
    expected[700:800] = np.nan
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_values_clip_and_missing_samples_stay_missing(tmp_path: Path) -> None:
    x = np.array([[0.0], [1.2344], [-40.0], [np.nan], [40.0], [0.001]])
    store = RecordingStore(tmp_path, "p1", file_s=4.0)
    store.write(_block(x, 0))
    store.close()
    got, _ = _read_all(store)
    np.testing.assert_allclose(got[:, 0], [0.0, 1.234, -32.767, np.nan, 32.767, 0.001], atol=1e-9)


def test_quota_deletes_the_oldest_records_not_the_open_one(tmp_path: Path) -> None:
    x = _signal(6000)
    # 1000-sample records of 2 kB each; room for two
    store = RecordingStore(tmp_path, "p1", file_s=4.0, max_mb=0.0045)
    for a in range(0, 6000, 500):
        store.write(_block(x[a : a + 500], a))
    store.close()
    names = [p.stem for p in store.records()]
    assert names == ["p1_000000004000", "p1_000000005000"]
    assert store.records_deleted == 4 and store.records_created == 6
    assert not list(tmp_path.glob("p1_000000000000.*"))


def test_a_changed_stream_gets_records_of_its_own(tmp_path: Path) -> None:
    """A device that changes its rate mid-stream: its new samples go to records of their
    own, the old records are untouched, and both read back with WFDB."""
    store = RecordingStore(tmp_path, "p1", file_s=4.0)
    x = _signal(500)
    store.write(_block(x, 0))
    new = SampleBlock(np.full((1000, 1), 0.25), 500.0, T0 + 2, 1000, ("ECG",), "p1")
    store.write(new)
    store.close()
    old = wfdb.rdrecord(str(tmp_path / "p1_000000000000"))
    np.testing.assert_allclose(old.p_signal[:, 0], x[:, 0], atol=1e-3)
    (folder,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert folder.name == "500Hz_from_1000"
    rec = wfdb.rdrecord(str(folder / "p1_000000001000"))
    assert rec.fs == 500.0 and rec.sig_len == 1000 and np.allclose(rec.p_signal, 0.25)
    assert len(store.records()) == 2


def test_headers_exist_from_the_first_sample_and_follow_each_sync(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, "p1", file_s=4.0)
    x = _signal(600)
    store.write(_block(x[:300], 0))
    assert (tmp_path / "p1_000000000000.hea").exists()  # written when the record was made
    store.write(_block(x[300:600], 300))
    fsync_all(store.take_unsynced())  # what the gateway's sync task does, off the loop
    rec = wfdb.rdrecord(str(tmp_path / "p1_000000000000"))
    assert rec.sig_len == 600  # readable while it grows
    store.close()


def test_header_repaired_from_the_signal_file_after_a_crash(tmp_path: Path) -> None:
    x = _signal(900)
    crashed = RecordingStore(tmp_path, "p1", file_s=4.0)
    crashed.write(_block(x[:300], 0))
    fsync_all(crashed.take_unsynced())
    crashed.write(_block(x[300:900], 300))  # written, never synced: then kill -9
    again = RecordingStore(tmp_path, "p1", file_s=4.0)
    again.write(_block(_signal(1)[:1], 900))  # the restarted gateway reopens the record
    rec = wfdb.rdrecord(str(tmp_path / "p1_000000000000"))
    assert rec.sig_len == 900  # the header says what the signal file holds
    np.testing.assert_allclose(rec.p_signal[:900, 0], x[:900, 0], atol=1e-3)
    again.close()


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 2999), max_size=12, unique=True),
    order=st.randoms(use_true_random=False),
    dropped=st.sets(st.integers(0, 12), max_size=3),
    repeats=st.lists(st.integers(0, 12), max_size=3),
)
def test_any_arrival_order_gives_the_recording(
    tmp_path_factory: pytest.TempPathFactory, cuts, order, dropped, repeats
) -> None:
    """Blocks in any order, some twice, some never: each record holds every sample that
    came at its place and "no sample" for the others, whatever the order."""
    x = _signal(3000)
    edges = [0, *sorted(cuts), 3000]
    pieces = list(itertools.pairwise(edges))
    sent = [p for i, p in enumerate(pieces) if i not in dropped]
    arrivals = sent + [pieces[i] for i in repeats if i < len(pieces) and i not in dropped]
    order.shuffle(arrivals)
    root = tmp_path_factory.mktemp("rec")
    store = RecordingStore(root, "p1", file_s=4.0)
    for a, b in arrivals:
        store.write(_block(x[a:b], a))
    store.close()
    expected = np.round(x[:, 0] * 1000) / 1000
    have = np.zeros(3000, bool)
    for a, b in sent:
        have[a:b] = True
    expected[~have] = np.nan
    if not have.any():
        assert not store.records()
        return
    _, records = _read_all(store)
    # records run to the last sample received in each; later ones may be missing entirely
    for r in records:
        first = int(r.record_name.split("_")[-1])
        np.testing.assert_allclose(r.p_signal[:, 0], expected[first : first + r.sig_len], atol=1e-9)
        assert np.isfinite(r.p_signal[-1, 0])  # a record ends on a received sample


def test_recordings_command_lists_records_with_what_is_missing(tmp_path: Path, capsys) -> None:
    from gateway.cli import main
    from gateway.recording import summarize_records

    x = _signal(2500)
    store = RecordingStore(tmp_path / "p1", "p1", file_s=4.0)
    for a in range(0, 2500, 250):
        if a != 500:  # one second never received, in the first record
            store.write(_block(x[a : a + 250], a))
    store.close()
    (tmp_path / "notes.hea").write_text("not a record\n")  # skipped, not an error
    found = summarize_records(tmp_path)
    assert [(r.device_id, r.first_seq, r.samples, r.missing) for r in found] == [
        ("p1", 0, 1000, 250),
        ("p1", 1000, 1000, 0),
        ("p1", 2000, 500, 0),
    ]
    assert found[0].leads == ("ECG",) and found[0].fs == FS and found[0].duration_s == 4.0
    assert main(["recordings", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("device") and len(printed) == 4
    assert "25.00 %" in printed[1] and printed[1].endswith("p1_000000000000")


def test_a_device_first_heard_mid_record_is_not_missing_what_it_sent_before(
    tmp_path: Path, capsys
) -> None:
    """A cart first heard at its sample 2600, in records of 2000: the record holding it
    starts at 2000 with 600 "no sample" rows the gateway was never sent. Its header says
    where the stream began, and the summary counts those rows apart from the missing ones
    (a second of real loss after it is missing); a restarted gateway keeps the header line."""
    from gateway.cli import main
    from gateway.recording import summarize_records

    x = _signal(5000)
    store = RecordingStore(tmp_path / "c1", "c1", file_s=8.0)
    for a in range(2600, 3600, 100):
        if not 3000 <= a < 3200:  # 200 samples lost while the gateway listened
            store.write(_block(x[a - 2600 : a - 2500], a))
    store.close()
    again = RecordingStore(tmp_path / "c1", "c1", file_s=8.0)  # the gateway restarted
    again.write(_block(x[1000:1100], 3600))
    again.close()
    hea = (tmp_path / "c1" / "c1_000000002000.hea").read_text()
    assert "# first sample received: 2600" in hea
    (found,) = summarize_records(tmp_path)
    assert (found.first_seq, found.samples, found.before_first, found.missing) == (
        2000, 1700, 600, 200
    )  # fmt: skip
    assert main(["recordings", "--dir", str(tmp_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "18.18 %" in row and "0:00:04" in row  # 200 of the 1100 rows from sample 2600
