"""How good is the detector's "likely ventricular" (wide QRS) label? EC57-style VEB scoring.

Usage::

    python3 benchmarks/ventricular.py [--data ../shared/data/mitdb] [--markdown FILE]

Runs the streaming detector (1-second blocks, channel 0, whole records) and matches
its beats to the reference beats within 150 ms (VF/VFL episodes left out). A
ventricular ectopic beat (VEB) is a reference ``V`` or ``E``. As in EC57:

- TP: a reference VEB whose matched detection is labelled ventricular;
- FN: a reference VEB not detected, or detected without the label;
- FP: a detection labelled ventricular matched to a non-VEB reference beat other than
  fusion (``F``), or to no reference beat at all.

The label is a width measurement (QRS over 1.6 x the median of recent narrow beats);
the gateway uses it only to leave such intervals out of the AF statistics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.ec57 import BEAT_SYMBOLS, outside, vf_episodes
from core.block import SampleBlock
from dsp.qrs import Beats, QrsDetector


def streaming_beats(x: np.ndarray, fs: float) -> Beats:
    det = QrsDetector(fs)
    n = int(fs)
    x32 = x.astype(np.float32)[:, None]
    parts = [
        det.process(SampleBlock(x32[i : i + n], fs, i / fs, i, ("MLII",)))
        for i in range(0, len(x32), n)
    ]
    parts.append(det.finish())
    return Beats.concat(parts, fs)


def veb_counts(
    ref: np.ndarray, ref_sym: list[str], det: np.ndarray, det_v: np.ndarray, fs: float
) -> tuple[int, int, int]:
    """(TP, FN, FP) of the ventricular label; ``ref`` and ``det`` sorted sample numbers."""
    tol = int(round(0.15 * fs))
    is_veb = np.array([s in "VE" for s in ref_sym], dtype=bool)
    labelled = np.zeros(ref.size, dtype=bool)  # reference beat matched by a labelled detection
    fp = 0
    if ref.size:
        j = np.clip(np.searchsorted(ref, det), 1, max(ref.size - 1, 1))
        left, right = ref[j - 1], ref[np.minimum(j, ref.size - 1)]
        k = np.where(np.abs(left - det) <= np.abs(right - det), j - 1, np.minimum(j, ref.size - 1))
        matched = np.abs(ref[k] - det) <= tol
    else:
        k = np.zeros(det.size, dtype=int)
        matched = np.zeros(det.size, dtype=bool)
    for kk, m, v in zip(k.tolist(), matched.tolist(), det_v.tolist(), strict=True):
        if not v:
            continue
        if not m:
            fp += 1
        elif is_veb[kk]:
            labelled[kk] = True
        elif ref_sym[kk] != "F":
            fp += 1
    tp = int((labelled & is_veb).sum())
    return tp, int(is_veb.sum()) - tp, fp


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--markdown", type=Path, help="write the table (markdown) to this file")
    args = ap.parse_args()
    rows, totals = [], np.zeros(3, dtype=int)
    for rec in sorted(p.stem for p in args.data.glob("*.hea")):
        r = wfdb.rdrecord(str(args.data / rec), channels=[0])
        ann = wfdb.rdann(str(args.data / rec), "atr")
        fs = float(r.fs)
        vf = vf_episodes(ann.sample, ann.symbol)
        keep = [(s, y) for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS]
        ref = np.array([s for s, _ in keep], dtype=np.int64)
        inside = np.isin(ref, outside(ref, vf), invert=True)
        ref_sym = [y for (_, y), out in zip(keep, inside.tolist(), strict=True) if not out]
        ref = ref[~inside]
        beats = streaming_beats(r.p_signal[:, 0].astype(np.float64), fs)
        det_keep = np.isin(beats.seq, outside(beats.seq, vf))
        assert beats.ventricular is not None
        counts = veb_counts(ref, ref_sym, beats.seq[det_keep], beats.ventricular[det_keep], fs)
        totals += counts
        tp, fn, fp = counts
        rows.append(f"| {rec} | {tp + fn} | {tp} | {fn} | {fp} |")
        print(rows[-1], flush=True)
    tp, fn, fp = totals.tolist()
    se = 100.0 * tp / (tp + fn) if tp + fn else float("nan")
    ppv = 100.0 * tp / (tp + fp) if tp + fp else float("nan")
    return report.publish(
        [
            *report.header(", channel 0, whole records, 1 s blocks."),
            "",
            f"Gross VEB Se {se:.1f} %, +P {ppv:.1f} % (TP {tp}, FN {fn}, FP {fp}).",
            "",
            "| record | reference VEBs | TP | FN | FP |",
            "|---|---|---|---|---|",
            *rows,
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
