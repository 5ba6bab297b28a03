"""The EDF+ export written an hour at a time (center/studies/edf_stream.py) reads back with
edfio as the whole study: every sample (holes as the digital minimum), the start with its
fraction of a second, a ``no sample`` annotation per hole (between records, inside them,
across a record boundary, the padding to whole seconds) and the events (SQLite and
PostgreSQL)."""

from __future__ import annotations

import edfio
import numpy as np
import pytest

from center.store import schema as t
from center.store.db import writer
from center.studies.edf_stream import EdfRecords
from center.studies.export import export_edf
from center.studies.read import list_studies
from sim.synth import EcgSynth
from tests.center.test_studies import FS, chunk_messages, header, ingest

T0 = 1_790_000_000.136
NO = -32768


def _store(engine, first_s: float, x: np.ndarray, first_seq: int) -> None:  # type: ignore[no-untyped-def]
    name = f"p1_{first_seq:012d}"
    hea = header(name, len(x), T0 + first_s)
    ingest(engine, chunk_messages(name, hea, x.astype("<i2").tobytes(), size=3000))


def test_the_streamed_edf_reads_back_as_the_whole_study(engine, tmp_path) -> None:
    sig = np.rint(EcgSynth(FS, ("ECG",), seed=4).generate(int(200 * FS))[:, 0] * 1000)
    whole = np.full(int(200 * FS), NO, np.int64)  # what the study holds, on its time line
    a = sig[: int(60 * FS)].copy()
    a[int(20 * FS) : int(23 * FS)] = NO  # a hole inside the first record
    b = sig[int(65 * FS) : int(125 * FS)].copy()  # 5 s after the first ends
    b[-int(2 * FS) :] = NO  # its last 2 s missing ...
    c = sig[int(125 * FS) : int(185 * FS) + 100].copy()  # contiguous, 60.4 s long
    c[: int(1 * FS)] = NO  # ... and the next one's first second: one hole of 3 s
    for start_s, x in ((0.0, a), (65.0, b), (125.0, c)):
        _store(engine, start_s, x, int(start_s * FS))
        whole[int(start_s * FS) : int(start_s * FS) + len(x)] = x
    with writer(engine) as conn:
        conn.execute(t.events.insert().values(
            msg_id="press-1", kind="event", gateway="gw-1", device="p1", trigger_type="button",
            trigger_at=T0 + 70.5, start_at=T0 + 60, received_at=T0, priority=0,
            payload="{}"))  # fmt: skip
        (study,) = list_studies(conn)
    out = tmp_path / "study.edf"
    with engine.connect() as conn:
        export_edf(conn, study["study_id"], out, block_s=7)  # many blocks, records across them
    got = edfio.read_edf(out)
    n = 186 * int(FS)  # 185.4 s of study, padded to whole seconds
    assert got.num_data_records == 186 and got.data_record_duration == 1
    assert got.starttime.microsecond == 136000
    assert [s.label for s in got.signals] == ["ECG"] and got.signals[0].sampling_frequency == FS
    expected = whole[:n].copy()
    assert np.array_equal(got.signals[0].digital, expected)
    assert got.signals[0].physical_dimension == "mV"
    gaps = [(round(x.onset, 3), round(x.duration, 3)) for x in got.annotations
            if x.text == "no sample"]  # fmt: skip
    assert gaps == [(20.0, 3.0), (60.0, 5.0), (123.0, 3.0), (185.4, 0.6)]
    events = [(round(x.onset, 3), x.text) for x in got.annotations if x.text.startswith("event")]
    assert events == [(70.5, "event button")]


def test_records_are_whole_seconds_of_every_signal() -> None:
    edf = EdfRecords(3, 250, 2)
    with pytest.raises(ValueError, match="whole data records"):
        edf.records(0, np.zeros((100, 2), np.int16))
    with pytest.raises(ValueError, match="more data records"):
        edf.records(2, np.zeros((500, 2), np.int16))
    assert len(edf.records(0, np.zeros((750, 2), np.int16))) == 3 * edf.record_bytes
