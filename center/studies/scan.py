"""The scanning analysis of each verified record: beats, beat classes, signal quality.

The center runs the same streaming code the gateway runs (``dsp``: QRS detector, beat
classifier, quality tracker) over the current version of each record (its newest verified
one) in its own thread (never in the ingest's transaction); a version superseded by late
backfill is analysed again as its new version. The last seconds of the preceding record
are run first when the two are contiguous, so beats at an hour's boundary are neither lost
nor counted twice; a record analysed before its predecessor's current version arrived is
analysed again. Missing samples are gaps: the recorded stretches are analysed apart.

Stored per record (``record_analysis``): R peaks (int32 samples from the record's start),
one class letter per beat (N, S, V, Q), and per second the best lead's quality index
(0-100; 255 where the second was not wholly recorded). Rhythm episodes are found for the
whole study at report time from these beats (:mod:`center.report.stats`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from center.store import schema as t
from center.store.db import writer
from center.studies.header import NO_SAMPLE
from center.studies.read import current_versions
from center.studies.store import abandon_superseded, record_signal
from core.block import SampleBlock
from dsp.beat_class import BeatClassifier, ClassifiedBeats
from dsp.qrs import QrsDetector
from dsp.quality import QualityTracker

__all__ = ["RecordAnalysis", "StudyScanner", "analyse_record", "next_to_analyse"]

log = logging.getLogger(__name__)

LEAD_IN_S = 10.0
"""Seconds of the preceding contiguous record run first (detector and classifier warm-up)."""
NOT_RECORDED = 255


@dataclass(frozen=True, slots=True)
class RecordAnalysis:
    """Beats (samples from the record's start), their classes, quality per second."""

    beats: np.ndarray  # int32
    labels: bytes  # one of b"NSVQ" per beat
    quality: np.ndarray  # uint8 per second: 0..100, 255 not wholly recorded
    recorded_s: float
    analysable_s: float


def analyse_record(
    x_uv: np.ndarray, fs: float, lead_in: np.ndarray | None = None
) -> RecordAnalysis:
    """Analyse one record's first lead (int16 µV, -32768 = no sample), optionally after
    ``lead_in`` (the end of the preceding contiguous record, same units)."""
    pre = np.zeros(0, np.int16) if lead_in is None else lead_in
    raw = np.concatenate([pre, x_uv]).astype(np.float64)
    raw[raw == NO_SAMPLE] = np.nan
    x = raw / 1000.0
    offset = len(pre)
    det, cls, qt = QrsDetector(fs), BeatClassifier(fs), QualityTracker(fs, 1)
    step = max(int(round(fs)), 1)
    parts: list[ClassifiedBeats] = []
    windows = []
    finite = np.isfinite(x)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.view(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        for i in range(a, b, step):
            block = SampleBlock(x[i : min(i + step, b), None], fs, i / fs, i, ("ECG",))
            parts.append(cls.process(block, det.process(block)))
            windows += qt.process(block)
        end = SampleBlock(np.zeros((0, 1)), fs, b / fs, b, ("ECG",))
        parts += [cls.process(end, det.finish()), cls.finish()]
    beats = ClassifiedBeats.concat(parts, fs)
    keep = beats.seq >= offset
    labels = "".join(lab for lab, k in zip(beats.labels, keep.tolist(), strict=True) if k)
    n_s = int(np.ceil(len(x_uv) / fs)) if len(x_uv) else 0
    quality = np.full(n_s, NOT_RECORDED, np.uint8)
    for w in windows:
        sec = int(round((w.first_seq - offset) / fs))
        if 0 <= sec < n_s:
            quality[sec] = int(round(100 * float(np.max(w.index))))
    recorded = float(np.isfinite(x[offset:]).sum()) / fs
    usable = float(((quality >= 50) & (quality != NOT_RECORDED)).sum())
    return RecordAnalysis((beats.seq[keep] - offset).astype(np.int32), labels.encode(),
                          quality, recorded, usable)  # fmt: skip


class StudyScanner:
    """A thread that analyses current record versions and gives up abandoned ones.

    What it analyses (:func:`next_to_analyse`): the current version of each record (its
    newest verified one) that has no analysis, or whose analysis ran first another version
    of the record just before it (contiguous, same stream) than that record's current one,
    or none (``record_analysis.lead_in``: ids, not clocks). A version superseded by a newer
    verified one is never analysed, and its analysis, if any, is deleted when the new one
    is stored.

    Every ``housekeeping_s`` it gives up incomplete versions superseded for
    ``abandon_after_s`` (:func:`~center.studies.store.abandon_superseded`), counted in
    :attr:`abandoned`.

    Parameters
    ----------
    engine
        The center's database.
    poll_s
        Seconds between looks for new records when nobody wakes it.
    abandon_after_s, housekeeping_s
        See :class:`center.config.StudiesConfig`.
    """

    def __init__(
        self,
        engine: sa.Engine,
        poll_s: float = 5.0,
        *,
        abandon_after_s: float = 6 * 3600.0,
        housekeeping_s: float = 300.0,
    ) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.abandon_after_s = abandon_after_s
        self.housekeeping_s = housekeeping_s
        self.analysed = 0
        self.abandoned = 0
        self.last_error: str | None = None
        self._housekept_at = -float("inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="center-scan", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._housekept_at >= self.housekeeping_s:
                    self._housekept_at = time.monotonic()
                    self.housekeeping()
                while not self._stop.is_set() and self.scan_one():
                    pass
            except Exception as exc:  # a bad record must not stop the scanner
                self.last_error = repr(exc)
                log.exception("scanning a record failed")
            self._wake.wait(min(self.poll_s, self.housekeeping_s))
            self._wake.clear()

    def housekeeping(self, now: float | None = None) -> int:
        """Give up incomplete versions superseded long enough; how many."""
        with writer(self.engine) as conn:
            gone = abandon_superseded(
                conn, time.time() if now is None else now, self.abandon_after_s
            )
        for gw, dev, name, version, chunks in gone:
            log.warning(
                "%s/%s: record %s version %d never completed (%d chunk(s) held) and a "
                "newer version exists: given up",
                gw, dev, name, version, chunks,
            )  # fmt: skip
        self.abandoned += len(gone)
        return len(gone)

    def scan_one(self, now: float | None = None) -> bool:
        """Analyse the oldest record version due (see the class docstring); whether one was."""
        with self.engine.connect() as conn:
            row = next_to_analyse(conn)
            if row is None:
                return False
            x = record_signal(conn, row.id, row.n_sig)[:, 0]
            prev_id, lead_in = _lead_in(conn, row)
        res = analyse_record(x, row.fs, lead_in)
        values = {"record": row.id, "beats": res.beats.astype("<i4").tobytes(),
                  "labels": res.labels, "quality": res.quality.tobytes(),
                  "recorded_s": res.recorded_s, "analysable_s": res.analysable_s,
                  "analysed_at": time.time() if now is None else now,
                  "lead_in": prev_id}  # fmt: skip
        r, a = t.study_records.c, t.record_analysis.c
        versions = sa.select(r.id).where(
            r.gateway == row.gateway, r.device == row.device, r.name == row.name
        )
        with writer(self.engine) as conn:
            # this version's earlier analysis (stale) and those of versions it superseded
            conn.execute(t.record_analysis.delete().where(a.record.in_(versions)))
            conn.execute(t.record_analysis.insert().values(**values))
        self.analysed += 1
        return True


def next_to_analyse(conn: sa.Connection) -> sa.Row | None:
    """The oldest current record version whose analysis is missing or stale (see
    :class:`StudyScanner`), or None."""
    cur = current_versions().subquery()
    prev = current_versions().subquery()
    a = t.record_analysis.c
    contiguous = (
        (prev.c.gateway == cur.c.gateway)
        & (prev.c.device == cur.c.device)
        & (prev.c.fs == cur.c.fs)
        & (prev.c.first_seq + prev.c.samples == cur.c.first_seq)
    )
    stale = prev.c.id.is_not(None) & (a.lead_in.is_(None) | (a.lead_in != prev.c.id))
    return conn.execute(
        sa.select(cur)
        .outerjoin(t.record_analysis, a.record == cur.c.id)
        .outerjoin(prev, contiguous)
        .where(a.record.is_(None) | stale)
        .order_by(cur.c.start_at, cur.c.id)
        .limit(1)
    ).first()


def _lead_in(conn: sa.Connection, row: sa.Row) -> tuple[int | None, np.ndarray | None]:
    """(id, last ``LEAD_IN_S`` of samples) of the current version of the record just before
    ``row`` in the same stream, when it ends where ``row`` begins; (None, None) if none."""
    r = t.study_records.c
    prev = conn.execute(
        sa.select(r.id, r.n_sig, r.samples).where(
            r.gateway == row.gateway, r.device == row.device, r.state == "verified",
            r.fs == row.fs, r.first_seq + r.samples == row.first_seq)
        .order_by(r.version.desc()).limit(1)
    ).first()  # fmt: skip
    if prev is None:
        return None, None
    x = record_signal(conn, prev.id, prev.n_sig)[:, 0]
    return int(prev.id), (x[-int(LEAD_IN_S * row.fs) :] if len(x) >= prev.samples else None)
