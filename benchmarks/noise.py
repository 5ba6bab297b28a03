"""Behaviour under added noise: QRS accuracy and the quality index at 24, 12 and 6 dB SNR.

Usage::

    python3 benchmarks/noise.py [--data ../shared/data/mitdb] [--records 101 118 ...] [--markdown F]

Three synthetic noises are added to channel 0 (the MIT-BIH noise stress test
database is not in ../shared/data, so they are made here with fixed seeds):
baseline wander (0.15-0.35 Hz sinusoids plus a slow random walk), muscle
artefact (white noise band-passed 20-100 Hz) and electrode motion (low-passed
random bursts with step changes). SNR is defined as in the noise stress test:
signal power = (peak-to-peak QRS amplitude / 2)^2 estimated from the reference
beats, noise power = mean square of the noise. Reported per noise and SNR:
gross Se and +P over the records, and the mean quality index.

Then **false AF under noise** (every record of ``--data`` without reference AF;
``--no-af`` skips it): each whole record, channel 0, with muscle and
electrode-motion noise at 12 and 6 dB (seeded per record), through the full signal path
of ``ecg-gateway analyze`` (:func:`gateway.analyze.analyze_signal`): seconds of AF
detected, and how much of it was marked as found in unusable signal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.ec57 import BEAT_SYMBOLS, Score, match_beats, outside, vf_episodes
from core.block import SampleBlock
from dsp.qrs import detect_beats
from dsp.quality import USABLE, QualityTracker


def make_noise(kind: str, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    if kind == "baseline wander":
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in (0.15, 0.25, 0.35))
        x = x + np.cumsum(rng.standard_normal(n)) / np.sqrt(fs * 50)
    elif kind == "muscle":
        sos = signal.butter(4, [20, min(100, 0.45 * fs)], "bandpass", fs=fs, output="sos")
        x = signal.sosfilt(sos, rng.standard_normal(n))
    else:  # electrode motion: bursts of low-frequency steps and swings
        sos = signal.butter(2, 8, "lowpass", fs=fs, output="sos")
        bursts = np.repeat(rng.random(n // int(fs) + 1) < 0.3, int(fs))[:n]
        x = signal.sosfilt(sos, np.cumsum(rng.standard_normal(n)) * bursts)
        x = x + np.repeat(rng.standard_normal(n // int(2 * fs) + 1), int(2 * fs))[:n] * bursts
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / (x.std() + 1e-12)


def qrs_power(x: np.ndarray, ref: np.ndarray, fs: float) -> float:
    w = int(0.06 * fs)
    ptp = [np.ptp(x[max(r - w, 0) : r + w]) for r in ref[10:-10]]
    return (float(np.median(ptp)) / 2) ** 2


def flagged_false_beats(ref: np.ndarray, det: np.ndarray, windows: list, fs: float) -> int:
    """False detections (no reference beat within 150 ms) inside windows under USABLE."""
    tol = int(0.15 * fs)
    idx = np.searchsorted(ref, det)
    near = np.full(det.size, np.inf)
    for shift in (0, -1):
        j = np.clip(idx + shift, 0, max(ref.size - 1, 0))
        if ref.size:
            near = np.minimum(near, np.abs(ref[j] - det))
    false = det[near > tol]
    bad = [(w.first_seq, w.end_seq) for w in windows if w.index[0] < USABLE]
    return sum(any(a <= f < b for a, b in bad) for f in false)


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--records", nargs="*", default=["101", "106", "118", "119", "205", "230"])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of each record used")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--no-af", action="store_true", help="skip the false-AF table")
    args = ap.parse_args()
    rows = []
    for kind in ("baseline wander", "muscle", "electrode motion"):
        for snr_db in (None, 24, 12, 6):
            total, q_all, flagged = Score(0, 0, 0), [], 0
            for k, rec in enumerate(args.records):
                r = wfdb.rdrecord(str(args.data / rec), channels=[0])
                fs = float(r.fs)
                n = min(r.sig_len, int(args.minutes * 60 * fs))
                ann = wfdb.rdann(str(args.data / rec), "atr", sampto=n)
                beats = zip(ann.sample, ann.symbol, strict=True)
                ref = np.array([s for s, sym in beats if sym in BEAT_SYMBOLS])
                vf = vf_episodes(ann.sample, ann.symbol)
                x = r.p_signal[:n, 0].astype(np.float64)
                if snr_db is not None:
                    noise = make_noise(kind, n, fs, np.random.default_rng(1000 + k))
                    x = x + noise * np.sqrt(qrs_power(x, ref, fs) / 10 ** (snr_db / 10))
                det = detect_beats(x, fs)
                total = total + match_beats(outside(ref, vf), outside(det, vf), fs)
                qt = QualityTracker(fs, 1)
                block = SampleBlock(x[:, None].astype(np.float32), fs, 0.0, 0, ("MLII",))
                windows = qt.process(block)
                q_all += [float(w.index[0]) for w in windows]
                flagged += flagged_false_beats(ref, outside(det, vf), windows, fs)
            snr = "clean" if snr_db is None else f"{snr_db} dB"
            rows.append(
                f"| {kind} | {snr} | {total.se:.2f} | {total.ppv:.2f} | {total.fp} | "
                f"{flagged} | {np.mean(q_all):.2f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        *report.header(
            f"; records {' '.join(args.records)}, first {args.minutes:g} min, channel 0."
        ),
        "",
        "| noise | SNR | Se % | +P % | false beats | of them flagged unusable "
        "| mean quality index |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    if not args.no_af:
        lines += ["", *false_af_table(args.data)]
    return report.publish(lines, args.markdown)


def false_af_table(data: Path) -> list[str]:
    """False AF under muscle and electrode-motion noise in the records without AF."""
    import wfdb

    from benchmarks.af import reference_af
    from gateway.analyze import analyze_signal

    conditions = [(None, None)] + [
        (kind, snr) for kind in ("muscle", "electrode motion") for snr in (12, 6)
    ]
    found = {c: [0.0, 0.0, 0, []] for c in conditions}
    hours = 0.0
    names = []
    for rec in sorted(p.stem for p in data.glob("*.hea")):
        r = wfdb.rdrecord(str(data / rec), channels=[0])
        ann = wfdb.rdann(str(data / rec), "atr")
        if reference_af(ann.sample, ann.symbol, ann.aux_note, r.sig_len).any():
            continue
        names.append(rec)
        fs, x = float(r.fs), r.p_signal[:, 0].astype(np.float64)
        hours += x.size / fs / 3600
        beats = zip(ann.sample, ann.symbol, strict=True)
        ref = np.array([s for s, y in beats if y in BEAT_SYMBOLS])
        power = qrs_power(x, ref, fs)
        for kind, snr in conditions:
            y = x
            if kind is not None:
                noise = make_noise(kind, x.size, fs, np.random.default_rng(int(rec)))
                y = x + noise * np.sqrt(power / 10 ** (snr / 10))
            af = [e for e in analyze_signal(y, fs).episodes if e.kind == "af"]
            secs = [((e.end_seq or x.size) - e.start_seq) / fs for e in af]
            row = found[kind, snr]
            row[0] += sum(secs)
            row[1] += sum(t for t, e in zip(secs, af, strict=True) if e.in_unusable_signal)
            row[2] += len(af)
            row[3] += [f"{rec} {t:.0f} s" for t in secs]
        print(rec, flush=True)
    out = [
        f"False AF under noise: the {len(names)} records without AF, whole records "
        f"({hours:.1f} h), channel 0, full signal path:",
        "",
        "| noise | SNR | AF episodes | AF s | % of the time | of it marked unusable | where |",
        "|---|---|---|---|---|---|---|",
    ]
    for (kind, snr), (secs, bad, n, where) in found.items():
        out.append(
            f"| {kind or 'none'} | {'clean' if snr is None else f'{snr} dB'} | {n} | {secs:.0f} "
            f"| {100 * secs / (hours * 3600):.2f} | {bad:.0f} | {', '.join(where[:6])} |"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
