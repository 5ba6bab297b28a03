"""The scanner analyses only the current version of each record and analyses again when a
newer version supersedes it or when the record before it arrives later; incomplete versions
that a newer one superseded are given up after a while, counted, never the newest
(SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib

import numpy as np
import sqlalchemy as sa

from center.store import schema as t
from center.studies.scan import LEAD_IN_S, StudyScanner, analyse_record
from tests.center.test_studies import FS, T0, chunk_messages, ingest, record

HOUR = 3600.0


def analyses(engine) -> dict[tuple[str, int], np.ndarray]:  # type: ignore[no-untyped-def]
    """(record name, version) -> stored beats, for every analysis held."""
    r, a = t.study_records.c, t.record_analysis.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.name, r.version, a.beats).join(t.record_analysis, a.record == r.id)
        ).all()
    return {(n, v): np.frombuffer(b, "<i4") for n, v, b in rows}


def scan_all(scanner: StudyScanner, now: float) -> int:
    done = 0
    while scanner.scan_one(now=now):
        done += 1
    return done


def states(engine) -> dict[tuple[str, int], tuple[str, int]]:  # type: ignore[no-untyped-def]
    r, k = t.study_records.c, t.record_chunks.c
    held = sa.select(sa.func.count()).where(k.record == r.id).scalar_subquery()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.name, r.version, r.state, held)).all()
    return {(n, v): (s, int(c)) for n, v, s, c in rows}


def test_only_the_current_version_is_analysed_and_a_new_one_is_analysed_again(engine) -> None:
    n = int(60 * FS)
    name, hea, dat = record(0, n, hole=(1000, 3000))
    _, hea2, dat2 = record(0, n, hole=(1000, 1500))  # backfilled in part: version 2
    ingest(engine, chunk_messages(name, hea, dat), now=T0 + 100)
    ingest(engine, chunk_messages(name, hea2, dat2, version=2), now=T0 + 101)
    scanner = StudyScanner(engine)
    assert scan_all(scanner, T0 + 200) == 1  # version 1 was superseded before its turn
    assert set(analyses(engine)) == {(name, 2)}
    _, hea3, dat3 = record(0, n)  # wholly backfilled: version 3
    ingest(engine, chunk_messages(name, hea3, dat3, version=3), now=T0 + 300)
    assert scan_all(scanner, T0 + 400) == 1
    held = analyses(engine)
    assert set(held) == {(name, 3)}  # the superseded version's analysis is gone
    x3 = np.frombuffer(dat3, "<i2")
    assert np.array_equal(held[(name, 3)], analyse_record(x3, FS).beats)


def test_a_record_is_analysed_again_when_the_one_before_it_arrives_or_changes(engine) -> None:
    n = int(60 * FS)
    both = np.frombuffer(record(0, 2 * n)[2], "<i2")
    a, b = both[:n].copy(), both[n:].copy()  # two contiguous minutes of one signal
    a_name, a_hea = record(0, n)[:2]
    b_name, b_hea = record(n, n)[:2]
    scanner = StudyScanner(engine)
    ingest(engine, chunk_messages(b_name, b_hea, b.tobytes()), now=T0 + 100)
    assert scan_all(scanner, T0 + 110) == 1  # B alone: no lead-in yet
    assert np.array_equal(analyses(engine)[(b_name, 1)], analyse_record(b, FS).beats)
    ingest(engine, chunk_messages(a_name, a_hea, a.tobytes()), now=T0 + 200)
    assert scan_all(scanner, T0 + 210) == 2  # A, then B again with A's last seconds first
    lead = int(LEAD_IN_S * FS)
    assert np.array_equal(analyses(engine)[(b_name, 1)], analyse_record(b, FS, a[-lead:]).beats)
    a2 = a.copy()
    a2[-lead // 2 :] = -32768  # A's version 2 differs in its last seconds
    ingest(engine, chunk_messages(a_name, a_hea, a2.tobytes(), version=2), now=T0 + 300)
    assert scan_all(scanner, T0 + 310) == 2  # A's version 2, and B after it again
    held = analyses(engine)
    assert set(held) == {(a_name, 2), (b_name, 1)}
    assert np.array_equal(held[(b_name, 1)], analyse_record(b, FS, a2[-lead:]).beats)
    assert scan_all(scanner, T0 + 400) == 0


def test_incomplete_superseded_versions_are_given_up_after_a_while_never_the_newest(engine):
    n = int(60 * FS)
    name, hea, dat = record(0, n, hole=(0, 5000))
    v1 = chunk_messages(name, hea, dat, size=6000)  # 5 chunks
    _, hea2, dat2 = record(0, n)
    v2 = chunk_messages(name, hea2, dat2, version=2, size=6000)
    o_name, o_hea, o_dat = record(n, n)
    ingest(engine, v1[:2], now=T0)  # version 1 half sent, then the record changed
    ingest(engine, chunk_messages(o_name, o_hea, o_dat), now=T0 + 5)  # another, verified
    ingest(engine, v2[:3], now=T0 + 10)  # version 2 half sent too (the gateway went away)
    scanner = StudyScanner(engine, abandon_after_s=HOUR)
    assert scanner.housekeeping(now=T0 + 10 + HOUR - 1) == 0
    assert states(engine)[(name, 1)] == ("receiving", 2)
    assert scanner.housekeeping(now=T0 + 10 + HOUR + 1) == 1
    after = states(engine)
    assert after[(name, 1)] == ("abandoned", 0)
    assert after[(name, 2)] == ("receiving", 3) and after[(o_name, 1)][0] == "verified"
    assert scanner.housekeeping(now=T0 + 365 * 86400) == 0  # the newest: kept, however old
    assert scanner.abandoned == 1
    res = ingest(engine, v1[2:3], now=T0 + 2 * HOUR)  # a late chunk of the given-up version
    assert res.duplicates == 1 and states(engine)[(name, 1)] == ("abandoned", 0)
    ingest(engine, v2[3:], now=T0 + 2 * HOUR)  # the gateway back: version 2 completes
    assert states(engine)[(name, 2)] == ("verified", len(v2))


def test_a_version_number_with_other_content_is_never_confirmed_as_verified(engine) -> None:
    from tests.center.test_studies import acks

    n = int(60 * FS)
    name, hea, dat = record(0, n, hole=(0, 5000))
    _, hea2, dat2 = record(0, n)
    ingest(engine, chunk_messages(name, hea, dat, size=6000), now=T0)
    assert len(acks(engine)) == 1  # version 1 verified and confirmed
    other = chunk_messages(name, hea2, dat2, size=6000)  # the same number, other content
    res = ingest(engine, other, now=T0 + 10)
    assert res.stored == 0 and len(acks(engine)) == 1  # not stored, not confirmed
    assert states(engine)[(name, 1)] == ("verified", len(other))
    # a version still receiving that starts over with other content takes that content
    n2, h2, d2 = record(n, n, hole=(0, 100))
    _, h3, d3 = record(n, n)
    ingest(engine, chunk_messages(n2, h2, d2, size=6000)[:2], now=T0 + 20)
    ingest(engine, chunk_messages(n2, h3, d3, size=6000), now=T0 + 30)
    (confirmation,) = [a for a in acks(engine) if a["record"] == n2]
    assert confirmation["sha256"] == hashlib.sha256(h3.encode() + d3).hexdigest()
