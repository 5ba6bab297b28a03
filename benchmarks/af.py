"""Atrial fibrillation detection: duration sensitivity and positive predictivity.

Usage::

    python3 benchmarks/af.py [--data ../shared/data/mitdb] [--markdown FILE]

Runs ``ecg-gateway analyze``'s code (streaming QRS in 1-second blocks, then the
rhythm tracker) on channel 0 of every record and compares the AF episodes with
the reference '(AFIB' rhythm annotations, sample by sample: duration Se =
overlap / reference AF time, +P = overlap / detected AF time. Records without
AF report their false AF time (the target: under 1 % of the record).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from gateway.analyze import analyze_signal


def reference_af(ann, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    current, start = None, 0
    for s, sym, aux in zip(ann.sample, ann.symbol, ann.aux_note, strict=True):
        if sym == "+":
            if current == "(AFIB":
                mask[start:s] = True
            current, start = aux.strip("\x00"), int(s)
    if current == "(AFIB":
        mask[start:] = True
    return mask


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    rows, ref_t, got_t, both_t = [], 0.0, 0.0, 0.0
    false_records = []
    for rec in sorted(p.stem for p in args.data.glob("*.hea")):
        r = wfdb.rdrecord(str(args.data / rec), channels=[0])
        ann = wfdb.rdann(str(args.data / rec), "atr")
        fs, n = float(r.fs), r.sig_len
        ref = reference_af(ann, n)
        res = analyze_signal(r.p_signal[:, 0], fs)
        got = np.zeros(n, bool)
        for e in res.episodes:
            if e.kind == "af":
                got[e.start_seq : e.end_seq if e.end_seq is not None else n] = True
        both = float((ref & got).sum()) / fs
        rs, gs = float(ref.sum()) / fs, float(got.sum()) / fs
        if rs:
            ref_t, got_t, both_t = ref_t + rs, got_t + gs, both_t + both
            se = 100 * both / rs
            ppv = 100 * both / gs if gs else float("nan")
            rows.append(f"| {rec} | {rs:.0f} | {gs:.0f} | {se:.1f} | {ppv:.1f} |")
        else:
            false_records.append(f"| {rec} | {gs:.0f} | {100 * gs / (n / fs):.1f} |")
        print(rec, f"ref {rs:.0f} s, detected {gs:.0f} s, overlap {both:.0f} s", flush=True)
    return report.publish(
        [
            *report.header("."),
            "",
            "| record | reference AF s | detected AF s | duration Se % | duration +P % |",
            "|---|---|---|---|---|",
            *rows,
            f"| all AF records | {ref_t:.0f} | {got_t:.0f} | {100 * both_t / ref_t:.1f} | "
            f"{100 * both_t / got_t:.1f} |",
            "",
            "False AF in records without AF:",
            "",
            "| record | detected AF s | % of record |",
            "|---|---|---|",
            *false_records,
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
