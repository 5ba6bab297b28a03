"""Beat classes (dsp.beat_class): EC57-style VEB and SVEB scoring, cross-validated by record.

Usage::

    python3 benchmarks/ventricular.py [--data ../shared/data/mitdb] [--folds 4] [--markdown F]

Runs the streaming QRS detector and :class:`dsp.beat_class.BeatClassifier` (1-second
blocks, channel 0, whole records) and matches beats to the reference within 150 ms.
Ventricular flutter/fibrillation is left out (``[`` ``]`` markers and '(VFL' / '(VF'
rhythm stretches), and, as EC57 does for VEB, the paced records 102 and 104. As in
EC57:

- VEB: reference ``V`` or ``E``. TP: labelled V; FN: missed or not labelled V; FP: a V
  label on a non-VEB reference beat other than fusion ``F``, or on no reference beat.
- SVEB: reference ``A a J S``. Same, with the S label; a S label on a VEB or fusion is
  not counted as FP.

The classifier's features do not depend on the decision constants, so cross-validation
re-decides the same features: records (numeric order) are dealt into ``k`` folds; for
each fold the constants that maximise min(Se, +P) for VEB on the other folds are chosen
from a small grid and scored on the held-out fold. Speed: CPU time of the detector and
the classifier, x real time per lead.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.ec57 import BEAT_SYMBOLS, Score, outside, vf_episodes
from core.block import SampleBlock
from dsp.beat_class import BeatClassifier, ClassifiedBeats, Rules, decide
from dsp.qrs import QrsDetector

PACED = ("102", "104")
GRID = {
    "corr_v": (0.9, 0.95),
    "template_corr_v": (0.7, 0.8),
    "template_corr_v2": (0.85, 0.9, 0.95),
    "wide": (1.4, 1.5, 1.6),
    "amp": (2.0, 2.5),
    "early": (0.85, 0.9),
}


def classify_record(
    x: np.ndarray, fs: float, p_wave: bool = True
) -> tuple[ClassifiedBeats, float, float]:
    """Beats with classes; CPU seconds of the detector and of the classifier."""
    det, cls = QrsDetector(fs), BeatClassifier(fs, p_wave=p_wave)
    n = int(fs)
    x32 = x.astype(np.float32)[:, None]
    parts, t_det, t_cls = [], 0.0, 0.0
    clock = time.process_time
    for i in range(0, len(x32), n):
        block = SampleBlock(x32[i : i + n], fs, i / fs, i, ("MLII",))
        t0 = clock()
        beats = det.process(block)
        t1 = clock()
        parts.append(cls.process(block, beats))
        t_det, t_cls = t_det + t1 - t0, t_cls + clock() - t1
    end = SampleBlock(x32[:0], fs, len(x32) / fs, len(x32), ("MLII",))
    parts += [cls.process(end, det.finish()), cls.finish()]
    return ClassifiedBeats.concat(parts, fs), t_det, t_cls


def excluded(ann) -> list[tuple[int, int]]:
    """VF/VFL: ``[``..``]`` episodes and '(VFL' / '(VF' rhythm stretches."""
    eps = vf_episodes(ann.sample, ann.symbol)
    current, start = None, 0
    for s, sym, aux in zip(ann.sample, ann.symbol, ann.aux_note, strict=True):
        if sym == "+":
            if current in ("(VFL", "(VF"):
                eps.append((start, int(s)))
            current, start = aux.strip("\x00"), int(s)
    return eps


def class_counts(
    ref: np.ndarray, ref_sym: list[str], det: np.ndarray, det_lab: np.ndarray, fs: float,
    positive: str, ignore: str,
) -> Score:  # fmt: skip
    """EC57 counts for one class: reference symbols in ``positive``, labels True in
    ``det_lab``; a label on a reference beat in ``ignore`` is neither TP nor FP."""
    tol = int(round(0.15 * fs))
    is_pos = np.array([s in positive for s in ref_sym], dtype=bool)
    hit = np.zeros(ref.size, dtype=bool)
    fp = 0
    if ref.size:
        j = np.clip(np.searchsorted(ref, det), 1, max(ref.size - 1, 1))
        right = np.minimum(j, ref.size - 1)
        k = np.where(np.abs(ref[j - 1] - det) <= np.abs(ref[right] - det), j - 1, right)
        matched = np.abs(ref[k] - det) <= tol
    else:
        k, matched = np.zeros(det.size, int), np.zeros(det.size, bool)
    for kk, m, lab in zip(k.tolist(), matched.tolist(), det_lab.tolist(), strict=True):
        if not lab:
            continue
        if not m:
            fp += 1
        elif is_pos[kk]:
            hit[kk] = True
        elif ref_sym[kk] not in ignore:
            fp += 1
    tp = int(hit.sum())
    return Score(tp, int(is_pos.sum()) - tp, fp)


def load(data: Path) -> dict[str, dict]:
    import wfdb

    out = {}
    for rec in sorted(p.stem for p in data.glob("*.hea")):
        r = wfdb.rdrecord(str(data / rec), channels=[0])
        ann = wfdb.rdann(str(data / rec), "atr")
        fs = float(r.fs)
        skip = excluded(ann)
        keep = [(s, y) for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS]
        ref = np.array([s for s, _ in keep], dtype=np.int64)
        inside = np.isin(ref, outside(ref, skip), invert=True)
        x = r.p_signal[:, 0].astype(np.float64)
        beats, t_det, t_cls = classify_record(x, fs)
        t_no_p = classify_record(x, fs, p_wave=False)[2]
        det_keep = np.isin(beats.seq, outside(beats.seq, skip))
        out[rec] = {
            "fs": fs,
            "seconds": r.sig_len / fs,
            "ref": ref[~inside],
            "sym": [y for (_, y), i in zip(keep, inside.tolist(), strict=True) if not i],
            "seq": beats.seq[det_keep],
            "features": [f for f, k in zip(beats.features, det_keep, strict=True) if k],
            "t": (t_det, t_cls, t_no_p),
        }
        print(rec, len(beats), flush=True)
    return out


def scores(r: dict, rules: Rules) -> tuple[Score, Score]:
    labels = np.array([decide(f, rules) for f in r["features"]])
    v = class_counts(r["ref"], r["sym"], r["seq"], labels == "V", r["fs"], "VE", "F")
    s = class_counts(r["ref"], r["sym"], r["seq"], labels == "S", r["fs"], "AaJS", "VEF")
    return v, s


def total(rows: list[Score]) -> Score:
    return sum(rows[1:], rows[0]) if rows else Score(0, 0, 0)


def grid() -> list[Rules]:
    keys = list(GRID)
    return [
        replace(Rules(), **dict(zip(keys, vals, strict=True)))
        for vals in itertools.product(*GRID.values())
    ]


def _constants(r: Rules) -> str:
    return " / ".join(str(getattr(r, k)) for k in GRID)


def cross_validate(recs: dict[str, dict], folds: int) -> list[str]:
    names = [k for k in recs if k not in PACED]
    candidates = grid()
    v = {(k, i): scores(recs[k], g)[0] for k in names for i, g in enumerate(candidates)}

    def quality(i: int, rs: list[str]) -> float:
        s = total([v[k, i] for k in rs])
        return min(s.se, s.ppv)

    lines, pooled = [], []
    for f in range(folds):
        test = names[f::folds]
        train = [k for k in names if k not in test]
        best = max(range(len(candidates)), key=lambda i: quality(i, train))
        g, tr, te = candidates[best], total([v[k, best] for k in train]), None
        te = total([v[k, best] for k in test])
        pooled += [v[k, best] for k in test]
        lines.append(
            f"| {f + 1} | {' '.join(test)} | {_constants(g)} | "
            f"{tr.se:.1f} / {tr.ppv:.1f} | {te.se:.1f} / {te.ppv:.1f} |"
        )
    p = total(pooled)
    lines.append(f"| all folds (held-out, pooled) | | | | **{p.se:.1f} / {p.ppv:.1f}** |")
    best = candidates[max(range(len(candidates)), key=lambda i: quality(i, names))]
    lines.append(
        f"| (choice on all records) | | {_constants(best)} | | |"
    )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--markdown", type=Path, help="write the tables (markdown) to this file")
    args = ap.parse_args()
    recs = load(args.data)
    rows, vs, ss = [], [], []
    for k, r in recs.items():
        v, s = scores(r, Rules())
        if k not in PACED:
            vs.append(v)
            ss.append(s)
        rows.append(
            f"| {k}{' (paced)' if k in PACED else ''} | {v.tp + v.fn} | {v.tp} | {v.fn} | {v.fp} "
            f"| {s.tp + s.fn} | {s.tp} | {s.fn} | {s.fp} |"
        )
    v, s = total(vs), total(ss)
    secs = sum(r["seconds"] for r in recs.values())
    t_det = sum(r["t"][0] for r in recs.values())
    t_cls = sum(r["t"][1] for r in recs.values())
    t_no_p = sum(r["t"][2] for r in recs.values())
    return report.publish(
        [
            *report.header(", channel 0, whole records, 1 s blocks."),
            "",
            f"Defaults ({Rules()}), 22 records (paced 102, 104 excluded): "
            f"VEB Se {v.se:.1f} %, +P {v.ppv:.1f} % (TP {v.tp}, FN {v.fn}, FP {v.fp}); "
            f"SVEB Se {s.se:.1f} %, +P {s.ppv:.1f} % (TP {s.tp}, FN {s.fn}, FP {s.fp}).",
            "",
            f"Speed, {secs / 3600:.1f} h: detector {secs / t_det:,.0f}x, classifier "
            f"{secs / t_cls:,.0f}x, detector + classes {secs / (t_det + t_cls):,.0f}x real time "
            f"per lead (CPU), {3600 * (t_det + t_cls) / secs:.2f} s per hour of ECG; without the "
            f"P-wave score: classifier {secs / t_no_p:,.0f}x, detector + classes "
            f"{secs / (t_det + t_no_p):,.0f}x.",
            "",
            f"VEB, {args.folds}-fold cross-validation by record (grid {GRID}):",
            "",
            f"| fold | held-out records | chosen {' / '.join(GRID)} "
            "| train Se / +P % | held-out Se / +P % |",
            "|---|---|---|---|---|",
            *cross_validate(recs, args.folds),
            "",
            "| record | VEBs | TP | FN | FP | SVEBs | TP | FN | FP |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
