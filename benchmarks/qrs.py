"""QRS detection accuracy (EC57-style) and speed on the MIT-BIH records, ours vs anchors.

Usage::

    python3 benchmarks/qrs.py [--data ../shared/data/mitdb] [--anchors] [--channel 0|1]
                              [--fs RATE] [--markdown FILE]

Scores channel 0 (``--channel 1``: the other lead, V1 in most records) of every record
in the directory, whole records; as EC57 prescribes,
beats and detections inside ventricular flutter/fibrillation episodes (``[`` ... ``]``,
record 207) are left out. Our detector
runs as it does in the gateway: streaming, in 1-second blocks. With
``--anchors``, wfdb's xqrs and gqrs and, when installed, NeuroKit2's
pantompkins1985 and kalidas2017 run on the same records in the same process.
Speed is CPU time per record, as x real time (record seconds / CPU seconds).
``--fs RATE`` reads every record resampled to RATE Hz, as a device sampling at that rate
would give it (:mod:`benchmarks.resample`; 250 Hz: our patch, 130 Hz: a Polar H10), and
scores against the reference beats moved to the same rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.ec57 import BEAT_SYMBOLS, Score, match_beats, outside, vf_episodes
from benchmarks.resample import resampled, samples_at
from core.block import SampleBlock
from dsp.qrs import Beats, QrsDetector


def ours_streaming(x: np.ndarray, fs: float, block_s: float = 1.0) -> np.ndarray:
    det = QrsDetector(fs)
    n = int(fs * block_s)
    x32 = x.astype(np.float32)[:, None]
    parts = [
        det.process(SampleBlock(x32[i : i + n], fs, i / fs, i, ("MLII",)))
        for i in range(0, len(x32), n)
    ]
    parts.append(det.finish())
    return Beats.concat(parts, fs).seq


def anchors() -> dict[str, Callable[[np.ndarray, float], np.ndarray]]:
    import wfdb.processing as wp

    out: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
        "wfdb xqrs": lambda x, fs: wp.xqrs_detect(x, fs, verbose=False),
        "wfdb gqrs": lambda x, fs: wp.gqrs_detect(x, fs),
    }
    try:
        import neurokit2 as nk

        def nk_method(method: str) -> Callable[[np.ndarray, float], np.ndarray]:
            def run(x: np.ndarray, fs: float) -> np.ndarray:
                clean = nk.ecg_clean(x, sampling_rate=int(fs), method=method)
                _, info = nk.ecg_peaks(clean, sampling_rate=int(fs), method=method)
                return np.asarray(info["ECG_R_Peaks"])

            return run

        out["neurokit2 pantompkins1985"] = nk_method("pantompkins1985")
        out["neurokit2 kalidas2017"] = nk_method("kalidas2017")
    except ImportError:
        print("neurokit2 not installed: its anchors are skipped", file=sys.stderr)
    return out


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--anchors", action="store_true", help="also score wfdb and NeuroKit2")
    ap.add_argument("--channel", type=int, default=0, help="the lead scored (default 0)")
    ap.add_argument("--fs", type=float, help="resample the records to this rate (Hz) first")
    ap.add_argument("--markdown", type=Path, help="write the tables (markdown) to this file")
    args = ap.parse_args()

    records = sorted(p.stem for p in args.data.glob("*.hea"))
    detectors = {
        "ecg-gateway (streaming, 1 s blocks)": ours_streaming,
        "ecg-gateway (streaming, 10 s blocks)": lambda x, fs: ours_streaming(x, fs, 10.0),
    }
    if args.anchors:
        detectors.update(anchors())
    totals = {k: Score(0, 0, 0) for k in detectors}
    cpu = dict.fromkeys(detectors, 0.0)
    seconds = 0.0
    rows = []
    for rec in records:
        r = wfdb.rdrecord(str(args.data / rec), channels=[args.channel])
        ann = wfdb.rdann(str(args.data / rec), "atr")
        at = float(r.fs)
        fs = args.fs or at
        sample = samples_at(ann.sample, at, fs)
        ref = sample[np.array([sym in BEAT_SYMBOLS for sym in ann.symbol], dtype=bool)]
        vf = vf_episodes(sample, ann.symbol)
        ref = outside(ref, vf)
        x = resampled(r.p_signal[:, 0].astype(np.float64), at, fs)
        seconds += len(x) / fs
        row = [rec]
        for name, fn in detectors.items():
            t0 = time.process_time()
            det = fn(x, fs)
            cpu[name] += time.process_time() - t0
            s = match_beats(ref, outside(np.asarray(det), vf), fs)
            totals[name] = totals[name] + s
            row.append(f"{s.se:.2f} / {s.ppv:.2f}")
        rows.append(row)
        print(" ".join(row), flush=True)

    lines = [
        *report.header(
            f", {len(records)} records, channel {args.channel}"
            f"{f' resampled to {args.fs:g} Hz' if args.fs else ''}, {seconds / 3600:.1f} h of ECG."
        ),
        "",
        "| detector | gross Se % | gross +P % | TP | FN | FP | x real time (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in totals.items():
        speed = seconds / cpu[name] if cpu[name] else float("inf")
        lines.append(
            f"| {name} | {s.se:.2f} | {s.ppv:.2f} | {s.tp} | {s.fn} | {s.fp} | {speed:,.0f} |"
        )
    lines += ["", "Per record (Se / +P):", ""]
    lines.append("| record | " + " | ".join(detectors) + " |")
    lines.append("|---" * (len(detectors) + 1) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return report.publish(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
