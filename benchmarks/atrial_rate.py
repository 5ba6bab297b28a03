"""Atrial rate and organisation by rhythm: can the ECG tell atrial flutter from AF here?

Usage::

    python3 benchmarks/atrial_rate.py [--data ../shared/data/mitdb] [--records 201 203]
                                      [--channel 0] [--markdown FILE]

An offline measurement, not a stage of the product. Flutter waves are regular, at
about 250-350 /min (4-6 Hz), and organised (one sharp spectral peak); fibrillatory
waves are faster (6-10 Hz) and disorganised. This script looks for that difference in
the atrial activity the annotated rhythms hold:

1. The signal is band-passed (2-30 Hz, zero phase).
2. Each reference beat's QRS-T (0.10 s before to 0.40 s after the annotation) is
   replaced by its difference from the median of the previous 15 non-ventricular
   beats (average beat subtraction); ventricular beats, and the first 5 beats, are
   masked instead.
3. Over 8-s windows every 2 s that hold no masked sample: the Welch spectrum (4-s
   segments) of the residual; the dominant frequency (DF) in 3-12 Hz, and the
   organisation index (OI), the share of the 3-12 Hz power within 0.5 Hz of the DF.
4. Windows are grouped by the reference rhythm at their middle; the 10/50/90 %
   quantiles of DF and OI are printed per record and rhythm.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report

_BEATS = frozenset("NLRBAaJSVrFejnE/fQ")
_VENTRICULAR = frozenset("VFE")
PRE_S, POST_S = 0.10, 0.40  # the QRS-T replaced, around each annotation
TEMPLATE_BEATS = 15  # beats in the running median beat
WINDOW_S, STEP_S = 8.0, 2.0  # spectral windows
BAND_HZ = (3.0, 12.0)  # where the dominant frequency is looked for
PEAK_HZ = 0.5  # the organisation index's half width around the peak


def rhythm_at(ann, n: int) -> np.ndarray:
    """Per-sample reference rhythm label ('(N' before the first)."""
    labels = np.empty(n, dtype=object)
    current, start = "(N", 0
    for s, sym, note in zip(ann.sample, ann.symbol, ann.aux_note, strict=True):
        if sym == "+":
            labels[start:s] = current
            current, start = note.strip("\x00"), s
    labels[start:] = current
    return labels


def atrial_residual(x: np.ndarray, fs: float, ann) -> tuple[np.ndarray, np.ndarray]:
    """(residual after average beat subtraction, mask of samples not usable)."""
    b, a = signal.butter(2, [2 / (fs / 2), 30 / (fs / 2)], "band")
    y = signal.filtfilt(b, a, x)
    pre, post = int(PRE_S * fs), int(POST_S * fs)
    out, masked, history = y.copy(), np.zeros(y.size, bool), []
    for s, sym in zip(ann.sample, ann.symbol, strict=True):
        if sym not in _BEATS or s - pre < 0 or s + post > y.size:
            continue
        segment = y[s - pre : s + post].copy()
        if sym in _VENTRICULAR or len(history) < 5:
            masked[s - pre : s + post] = True
        else:
            out[s - pre : s + post] = segment - np.median(history, axis=0)
        if sym not in _VENTRICULAR:
            history = [*history[-(TEMPLATE_BEATS - 1) :], segment]
    return out, masked


def window_features(res: np.ndarray, masked: np.ndarray, fs: float):
    """(start sample, DF Hz, OI) of every usable window."""
    width, step = int(WINDOW_S * fs), int(STEP_S * fs)
    for start in range(0, res.size - width, step):
        if masked[start : start + width].any():
            continue
        seg = res[start : start + width]
        f, p = signal.welch(seg - seg.mean(), fs, nperseg=int(4 * fs), nfft=int(16 * fs))
        band = (f >= BAND_HZ[0]) & (f <= BAND_HZ[1])
        fb, pb = f[band], p[band]
        df = float(fb[np.argmax(pb)])
        yield start, df, float(pb[np.abs(fb - df) <= PEAK_HZ].sum() / pb.sum())


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--records", nargs="*", default=["201", "203"])
    ap.add_argument("--channel", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    lines = [
        *report.header(f", records {' '.join(args.records)}, {WINDOW_S:.0f}-s windows."),
        "",
        "| record | lead | rhythm | windows | DF Hz, 10 / 50 / 90 % | OI, 10 / 50 / 90 % |",
        "|---|---|---|---|---|---|",
    ]
    for rec in args.records:
        ann = wfdb.rdann(str(args.data / rec), "atr")
        for ch in args.channel:
            r = wfdb.rdrecord(str(args.data / rec), channels=[ch])
            fs = float(r.fs)
            res, masked = atrial_residual(r.p_signal[:, 0], fs, ann)
            labels = rhythm_at(ann, res.size)
            groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for start, df, oi in window_features(res, masked, fs):
                groups[labels[start + int(WINDOW_S * fs) // 2]].append((df, oi))
            for rhythm, rows in sorted(groups.items()):
                if len(rows) < 3:
                    continue
                v = np.array(rows)
                q_df = " / ".join(f"{q:.2f}" for q in np.percentile(v[:, 0], [10, 50, 90]))
                q_oi = " / ".join(f"{q:.2f}" for q in np.percentile(v[:, 1], [10, 50, 90]))
                lines.append(
                    f"| {rec} | {r.sig_name[0]} | {rhythm} | {len(rows)} | {q_df} | {q_oi} |"
                )
    return report.publish(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
