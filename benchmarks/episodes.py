"""Episodes against the MIT-BIH rhythm annotations: episode-level Se and +P per kind.

Usage::

    python3 benchmarks/episodes.py [--data ../shared/data/mitdb] [--markdown FILE]

Runs ``ecg-gateway analyze``'s code (QRS, beat classes, quality, episodes; channel 0,
1-second blocks) on every record, and, as a reference point for the rules alone, the
episode tracker on the reference beats and their labels. A reference episode (rhythm
'+' annotations: '(VT', '(SVTA', '(B', '(T', '(AFIB') counts as found when a detected
episode of the matching kind overlaps it ('(VFL' counts as VT: ventricular flutter is a
ventricular tachyarrhythmia); a detected episode is true when it overlaps a reference
one (episode Se and +P, gross over records). Nothing is fitted here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from gateway.analyze import analyze_annotations, analyze_signal

KINDS = {"vt": "(VT", "svt": "(SVTA", "bigeminy": "(B", "trigeminy": "(T", "af": "(AFIB"}
#: Also reference stretches of a kind: ventricular flutter is a ventricular tachyarrhythmia.
ALSO = {"(VFL": "vt"}


def reference(ann, n: int) -> dict[str, list[tuple[int, int]]]:
    marks = [
        (int(s), a.strip("\x00"))
        for s, y, a in zip(ann.sample, ann.symbol, ann.aux_note, strict=True)
        if y == "+"
    ]
    ends = [s for s, _ in marks[1:]] + [n]
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}
    for (s, a), e in zip(marks, ends, strict=True):
        for kind, label in KINDS.items():
            if a == label or ALSO.get(a) == kind:
                out[kind].append((s, e))
    return out


def overlaps(a: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(s < a[1] and a[0] < e for s, e in spans)


def tally(ref: dict, found: dict, totals: dict) -> None:
    for kind in KINDS:
        r, f = ref[kind], found.get(kind, [])
        t = totals.setdefault(kind, [0, 0, 0, 0])  # ref, ref found, detected, detected true
        t[0] += len(r)
        t[1] += sum(overlaps(x, f) for x in r)
        t[2] += len(f)
        t[3] += sum(overlaps(x, r) for x in f)


def spans(res) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for e in res.episodes:
        out.setdefault(e.kind, []).append((e.start_seq, e.end_seq or res.n))
    return out


def rows(totals: dict) -> list[str]:
    lines = []
    for kind, (nr, hit, nd, true) in totals.items():
        se = f"{100 * hit / nr:.1f}" if nr else "-"
        ppv = f"{100 * true / nd:.1f}" if nd else "-"
        label = KINDS[kind] + "".join(f", {a}" for a, k in ALSO.items() if k == kind)
        lines.append(f"| {kind} ({label}) | {nr} | {hit} | {se} | {nd} | {true} | {ppv} |")
    return lines


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    signal_totals: dict = {}
    ref_totals: dict = {}
    for rec in sorted(p.stem for p in args.data.glob("*.hea")):
        r = wfdb.rdrecord(str(args.data / rec), channels=[0])
        ann = wfdb.rdann(str(args.data / rec), "atr")
        fs, n = float(r.fs), r.sig_len
        ref = reference(ann, n)
        tally(ref, spans(analyze_signal(r.p_signal[:, 0], fs)), signal_totals)
        tally(ref, spans(analyze_annotations(ann.sample, ann.symbol, n, fs)), ref_totals)
        print(rec, flush=True)
    head = [
        "| kind | reference episodes | found | episode Se % | detected | true | episode +P % |",
        "|---|---|---|---|---|---|---|",
    ]
    return report.publish(
        [
            *report.header(", 24 records, channel 0, 1 s blocks."),
            "",
            "Full signal path (detected beats, our classes):",
            "",
            *head,
            *rows(signal_totals),
            "",
            "Reference beats and labels (the episode rules alone):",
            "",
            *head,
            *rows(ref_totals),
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
