"""Study report generation time for a 7-day and a 14-day one-lead study (issue #13).

Usage::

    python3 benchmarks/report_speed.py [--days 7 14]

What is measured: :func:`center.report.stats.compute_stats` (the episode tracker over every
beat, minute rates, hourly trend, histogram) and :func:`center.report.pdf.render_pdf`
(matplotlib: text page, trend page, strips), on synthetic scanning results: a beat every
0.6-1.2 s (random walk of the rate) with an hour of irregular intervals a day (AF), a 3.5-s
pause a day, 2 % ventricular labels, quality 90 everywhere but an hour a day at 20, and 4
strips of 10 s. Not measured: reading the stored analysis from the database and the strips'
signal (the beats are made here, not 14 days of raw ECG).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from center.report.build import ReportData, Strip
from center.report.pdf import render_pdf
from center.report.stats import compute_stats

FS = 250.0


def synthetic(days: int, seed: int = 1) -> tuple[np.ndarray, str, np.ndarray]:
    """Beats (samples), labels and quality per second of ``days`` days."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 * 1.3)
    rr = np.clip(0.85 + np.cumsum(rng.normal(0, 0.004, n)) % 0.4, 0.5, 1.3)
    t = np.cumsum(rr)
    day = (t // 86400).astype(int)
    af = (t % 86400) < 3600
    rr[af] = rng.uniform(0.4, 1.1, af.sum())
    rr[np.flatnonzero(np.diff(day, prepend=0))] = 3.5  # a pause a day
    t = np.cumsum(rr)
    t = t[t < days * 86400]
    labels = np.where(rng.random(len(t)) < 0.02, "V", "N")
    quality = np.full(days * 86400, 90, np.uint8)
    for d in range(days):
        quality[d * 86400 + 7200 : d * 86400 + 10800] = 20
    return (t * FS).astype(np.int64), "".join(labels.tolist()), quality


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, nargs="+", default=[7, 14])
    args = ap.parse_args()
    for days in args.days:
        beats, labels, quality = synthetic(days)
        t0 = time.perf_counter()
        stats = compute_stats(beats, labels, quality, [(0, days * 86400 * int(FS))], FS)
        t1 = time.perf_counter()
        stats.extra["quality"] = quality
        study = {"study_id": f"bench-{days}d", "device": "p1", "gateway": "gw", "patient": None,
                 "started_at": 1.7e9, "ended_at": None, "last_end_at": 1.7e9 + days * 86400,
                 "wear_s": days * 86400.0}  # fmt: skip
        strip = Strip("strip", 1.7e9, FS, np.sin(np.arange(2500) / 40.0) * 500)
        tx = {"events": 0, "strips": 0, "records": days * 24, "record_versions": days * 24}
        data = ReportData(study, stats, 1.7e9, True, [], tx, [strip] * 4)
        with tempfile.TemporaryDirectory() as d:
            render_pdf(data, Path(d) / "r.pdf")
        t2 = time.perf_counter()
        print(
            f"{days:>2} days: {len(beats):,} beats, {len(stats.episodes):,} episodes; "
            f"numbers {t1 - t0:.1f} s, PDF {t2 - t1:.1f} s, total {t2 - t0:.1f} s"
        )


if __name__ == "__main__":
    main()
