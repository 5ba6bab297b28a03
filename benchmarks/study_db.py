"""A long-term study stored as the center stores it, then its report and EDF+ export from the
database: time and peak memory (issue #13).

Usage::

    python3 benchmarks/study_db.py --days 7 14 [--dir /tmp/bench-study]

For each study length a SQLite database is made once (kept in ``--dir``, reused by later
runs): ``days * 24`` verified one-hour records of one 250 Hz lead (the signal bytes in
``record_chunks``, 64 KiB chunks, a 10-minute hole once a day) and their scanning analysis
(``record_analysis``: the beats, labels and quality of ``benchmarks/report_speed.py``'s
synthetic study, cut at the hours; not the scanner's output, whose cost is per record as
records arrive). Then, each in a fresh process, what ``ecg-center report`` and ``ecg-center
export --format edf`` run: the time and the process's peak resident memory,
next to a process that only imports the same modules (peak: ``VmHWM``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FS = 250.0
HOUR = int(3600 * FS)
T0 = 1_790_000_000.0
CHUNK = 65536
HOLE_S = 600  # a 10-minute hole a day, in the fourth hour


def _header(name: str, n: int, start: float) -> str:
    d = datetime.fromtimestamp(start, UTC)
    return (f"{name} 1 {FS:g} {n} {d:%H:%M:%S}.{d.microsecond // 1000:03d} {d:%d/%m/%Y}\n"
            f"{name}.dat 16 1000(0)/mV 16 0 0 0 0 ECG\n")  # fmt: skip


def build(db: Path, days: int) -> None:
    """The study's database (see the module docstring)."""
    import sqlalchemy as sa

    from benchmarks.report_speed import synthetic
    from center.store import schema as t
    from center.store.db import open_engine, upgrade, writer
    from sim.synth import EcgSynth

    eng = open_engine(f"sqlite:///{db}")
    upgrade(eng)
    hour = np.rint(EcgSynth(FS, ("ECG",), seed=3).generate(HOUR)[:, 0] * 1000).astype("<i2")
    beats, labels, quality = synthetic(days)
    with writer(eng) as conn:
        conn.execute(t.patch_studies.insert().values(
            study_id="bench", gateway="gw", device="p1", started_at=T0,
            last_end_at=T0 + days * 86400, fs=FS, leads="ECG", created_at=T0))  # fmt: skip
        study = conn.execute(sa.select(t.patch_studies.c.id)).scalar_one()
    for h in range(days * 24):
        x = hour.copy()
        if h % 24 == 3:
            x[: int(HOLE_S * FS)] = -32768
        dat = x.tobytes()
        name = f"p1_{h * HOUR:012d}"
        hea = _header(name, HOUR, T0 + h * 3600)
        a, b = np.searchsorted(beats, [h * HOUR, (h + 1) * HOUR])
        with writer(eng) as conn:
            rid = conn.execute(t.study_records.insert().values(
                study=study, gateway="gw", device="p1", name=name, version=1,
                sha256=hashlib.sha256(hea.encode() + dat).hexdigest(), size=len(dat),
                header=hea, chunks=-(-len(dat) // CHUNK), state="verified", fs=FS, n_sig=1,
                leads="ECG", first_seq=h * HOUR, start_at=T0 + h * 3600, samples=HOUR,
                missing=int((x == -32768).sum()), received_at=T0, verified_at=T0,
            )).inserted_primary_key[0]  # fmt: skip
            conn.execute(t.record_chunks.insert(), [
                {"record": rid, "idx": i, "data": dat[i * CHUNK : (i + 1) * CHUNK]}
                for i in range(-(-len(dat) // CHUNK))])  # fmt: skip
            q = quality[h * 3600 : (h + 1) * 3600].copy()
            if h % 24 == 3:
                q[:HOLE_S] = 255
            conn.execute(t.record_analysis.insert().values(
                record=rid, beats=(beats[a:b] - h * HOUR).astype("<i4").tobytes(),
                labels=labels[a:b].encode(), quality=q.tobytes(),
                recorded_s=3600.0 - (HOLE_S if h % 24 == 3 else 0),
                analysable_s=float(((q >= 50) & (q != 255)).sum()), analysed_at=T0,
                lead_in=None))  # fmt: skip
    eng.dispose()


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ``ru_maxrss`` would carry the parent's
    peak across the exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(what: str, db: Path, out: Path) -> dict:
    """Run one step in this process: its time and this process's peak RSS."""
    import center.report
    import center.studies.export  # noqa: F401
    from center.store.db import open_engine

    eng = open_engine(f"sqlite:///{db}")
    t0 = time.perf_counter()
    if what == "report":
        from center.report import build_report

        build_report(eng, "bench", out)
    elif what == "edf":
        from center.studies.export import export_edf

        with eng.connect() as conn:
            export_edf(conn, "bench", out)
    elapsed = time.perf_counter() - t0
    peak = _peak_rss_mb()
    size = out.stat().st_size if what != "imports" and out.exists() else 0
    return {"step": what, "s": round(elapsed, 1), "peak_mb": round(peak, 1), "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, nargs="+", default=[7, 14])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-study"))
    ap.add_argument("--steps", nargs="+", default=["imports", "report", "edf"])
    ap.add_argument("--measure", nargs=3, metavar=("STEP", "DB", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        step, db, out = args.measure
        print(json.dumps(measure(step, Path(db), Path(out))))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    for days in args.days:
        db = args.dir / f"study-{days}d.db"
        if not db.exists():
            t0 = time.perf_counter()
            build(db, days)
            print(f"{days} days: database built in {time.perf_counter() - t0:.0f} s "
                  f"({db.stat().st_size / 1e6:.0f} MB)", flush=True)  # fmt: skip
        for step in args.steps:
            out = args.dir / f"out-{days}d.{'pdf' if step == 'report' else 'edf'}"
            cmd = [sys.executable, __file__, "--measure", step, str(db), str(out)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            cwd=REPO).stdout.splitlines()[-1])  # fmt: skip
            print(f"{days:>2} days {step:<8} {res['s']:>6.1f} s  peak RSS {res['peak_mb']:>7.1f} MB"
                  f"  output {res['bytes'] / 1e6:.1f} MB", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
