"""The study report on a synthetic study with known beats: regular 60 bpm with two pauses,
20 minutes of AF, regular 75 bpm, a minute never recorded, two patient-triggered events.
The PDF is opened, its text read back, and every number recomputed here from the beats."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from center.report import build_report
from center.report.build import service_band
from center.store import schema as t
from center.store.db import writer
from center.studies.read import current_records, list_studies
from center.studies.scan import StudyScanner
from tests.center.test_studies import FS, T0, chunk_messages, header, ingest

HOLE = (50 * 60, 51 * 60)  # seconds never recorded


def true_beats(seed: int = 7) -> np.ndarray:
    """R-peak times (s): 60 bpm with pauses of 3.5 s and 4.2 s, AF, then 75 bpm."""
    rng = np.random.default_rng(seed)
    t, out = 1.0, []
    while t < 20 * 60:
        out.append(t)
        t += 3.5 if abs(t - 300.0) < 0.25 else 4.2 if abs(t - 600.5) < 0.25 else 1.0
    while t < 40 * 60:
        out.append(t)
        t += rng.uniform(0.45, 1.05)
    while t < 60 * 60 - 1:
        out.append(t)
        t += 0.8
    return np.array(out)


def ecg(beats_s: np.ndarray, n: int, seed: int = 3) -> np.ndarray:
    """A one-lead ECG (mV) with a QRS at each beat; no P wave in the AF stretch."""
    x = np.random.default_rng(seed).normal(0, 0.015, n)
    waves = ((-0.16, 0.12, 0.02), (-0.025, -0.1, 0.008), (0.0, 1.2, 0.01),
             (0.025, -0.3, 0.01), (0.28, 0.3, 0.05))  # fmt: skip
    for b in beats_s:
        for dt, amp, w in waves:
            if dt < -0.1 and 20 * 60 <= b < 40 * 60:
                continue
            c = int((b + dt) * FS)
            i = np.arange(max(c - int(5 * w * FS), 0), min(c + int(5 * w * FS) + 1, n))
            x[i] += amp * np.exp(-0.5 * ((i / FS - b - dt) / w) ** 2)
    return x


@pytest.fixture
def study(engine):
    beats = true_beats()
    x = np.rint(ecg(beats, int(3600 * FS)) * 1000).astype("<i2")
    x[int(HOLE[0] * FS) : int(HOLE[1] * FS)] = -32768
    half = int(1800 * FS)
    for first in (0, half):
        name = f"p1_{first:012d}"
        dat = x[first : first + half].tobytes()
        ingest(engine, chunk_messages(name, header(name, half, T0 + first / FS), dat, size=65536))
    scanner = StudyScanner(engine)
    while scanner.scan_one(now=T0):
        pass
    with writer(engine) as conn:
        for i, minute in enumerate((10.0, 30.0)):
            conn.execute(t.events.insert().values(
                msg_id=f"press-{i}", kind="event", gateway="gw-1", device="p1",
                trigger_type="button", trigger_at=T0 + minute * 60, start_at=T0 + minute * 60 - 5,
                received_at=T0, priority=0, payload='{"trigger": {"type": "button"}}'))  # fmt: skip
        (st,) = list_studies(conn)
    return st["study_id"], beats


def stored_beats(engine) -> tuple[np.ndarray, np.ndarray]:
    """The beats the scanner stored (s from the study start) and quality per second."""
    with engine.connect() as conn:
        pk = conn.execute(sa.select(t.patch_studies.c.id)).scalar_one()
        beats, quality = [], []
        for r in current_records(conn, pk):
            a = conn.execute(sa.select(t.record_analysis).where(t.record_analysis.c.record == r.id))
            row = a.one()
            beats.append(np.frombuffer(row.beats, "<i4") / FS + (r.start_at - T0))
            quality.append(np.frombuffer(row.quality, np.uint8))
    return np.concatenate(beats), np.concatenate(quality)


def recompute(beats: np.ndarray) -> dict[str, float]:
    """The report's numbers from the beats, by this test's own reading of the definitions."""
    rr = np.diff(beats)
    across_hole = (beats[:-1] < HOLE[0]) & (beats[1:] >= HOLE[1])
    rr, ends = rr[~across_hole], beats[1:][~across_hole]
    minutes = {}
    for m in range(60):
        sel = (ends >= 60 * m) & (ends < 60 * (m + 1))
        if sel.sum() >= 20:
            minutes[m] = 60 / rr[sel].mean()
    lo, hi = min(minutes, key=minutes.get), max(minutes, key=minutes.get)
    pauses = rr[rr >= 3.0]
    return {"beats": len(beats), "mean": 60 / rr.mean(), "min": minutes[lo], "min_at": lo,
            "max": minutes[hi], "max_at": hi, "pauses": len(pauses),
            "longest": pauses.max()}  # fmt: skip


def _clock(minute: int) -> str:
    """The start of the study's minute ``minute`` as the report prints it."""
    return datetime.fromtimestamp(T0 + 60 * minute, UTC).strftime("%H:%M:%S")


def test_the_report_states_every_number_as_recomputed_from_the_beats(engine, study, tmp_path):
    study_id, truth = study
    pdf = build_report(engine, study_id, tmp_path / "report.pdf")
    reader = PdfReader(pdf)
    text = "\n".join(p.extract_text() for p in reader.pages)
    page1 = reader.pages[0].extract_text()
    found, quality = stored_beats(engine)
    want = recompute(found)
    assert abs(len(found) - len(truth[(truth < HOLE[0]) | (truth >= HOLE[1])])) <= 3
    assert f"Total beats: {want['beats']}" in page1
    assert f"Heart rate mean: {want['mean']:.1f} bpm" in page1
    lo, hi = want["min"], want["max"]
    assert f"Heart rate minimum: {lo:.1f} bpm at 2026-09-21 {_clock(want['min_at'])}" in page1
    assert f"Heart rate maximum: {hi:.1f} bpm at 2026-09-21 {_clock(want['max_at'])}" in page1
    assert f"Pauses of 3 s or more: {want['pauses']}; longest {want['longest']:.1f} s" in page1
    assert want["pauses"] == 2 and want["longest"] == pytest.approx(4.2, abs=0.05)
    recorded_h = 59 / 60
    analysable = ((quality >= 50) & (quality != 255)).sum()
    assert f"Recorded: {recorded_h:.2f} h; analysable: {analysable / 3600:.2f} h" in page1
    assert f"({100 * analysable / 3540:.1f} % of recorded)" in page1
    burden = float(re.search(r"AF burden: ([0-9.]+) %", page1).group(1))
    assert burden == pytest.approx(100 * 20 * 60 / analysable, abs=3.0)  # 20 min of AF
    assert "Longest AF episode:" in page1 and "Patient-triggered events: 2" in page1
    assert re.search(r"rhythm measured af; rate \d+ bpm", page1)  # the press during AF
    assert re.search(r"rhythm measured no episode found; rate 60 bpm", page1)
    assert "Duration (wear time): 0 d 01 h 00 min" in page1
    assert "recording duration band: 48 hours or less" in page1
    assert "no interpretation" in text and "physician who interprets" in text
    assert "Longest pause: 4.2 s" in text and "Heart rate per hour" in text
    assert len(reader.pages) >= 3
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "3", str(pdf),
                        str(tmp_path / "page")], check=True)  # fmt: skip
        assert len(list(tmp_path.glob("page-*.png"))) == 3


def test_duration_bands_are_stated_as_facts() -> None:
    assert service_band(47 * 3600) == "48 hours or less (not more than 48 hours)"
    assert service_band(3 * 86400) == "more than 48 hours, up to 7 days"
    assert service_band(7 * 86400 + 1) == "more than 7 days, up to 15 days"
    assert service_band(16 * 86400) == "more than 15 days"


def test_report_command_writes_the_pdf(engine, study, tmp_path: Path) -> None:
    from center.cli import main

    study_id, _ = study
    out = tmp_path / "cli.pdf"
    assert main(["report", study_id, "--out", str(out), "--db", str(engine.url)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert main(["report", "no-such-study", "--out", str(out), "--db", str(engine.url)]) == 1
