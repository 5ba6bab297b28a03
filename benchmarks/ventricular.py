"""Beat classes (dsp.beat_class): EC57-style VEB and SVEB scoring, cross-validated by record.

Usage::

    python3 benchmarks/ventricular.py [--data ../shared/data/mitdb] [--folds 4] [--markdown F]
                                      [--channel 0|1] [--leads 1 2] [--speed-runs N]
                                      [--fs RATE]

Runs the streaming QRS detector and :class:`dsp.beat_class.BeatClassifier` over every
development record (1-second blocks, whole records; channel 0, and channel 1 as the
second lead for the two-lead classifier: :func:`benchmarks.beat_model.load`; ``--channel 1``
swaps them: the lead a patch records need not be MLII) and
compares beats with the reference by the standard's own comparator
(:func:`benchmarks.ec57.bxb_pairs`, PhysioNet's bxb rules: 150 ms match window, the first
5 minutes a learning period left out). Ventricular flutter/fibrillation is left out
(``[`` ``]`` markers and '(VFL' / '(VF' rhythm stretches), and, as EC57 does, the paced
records 102 and 104. As in EC57:

- VEB: reference ``V``, ``E`` (and ``r``). TP: labelled V; FN: missed or labelled
  anything else; FP: a V label on a normal or supraventricular reference beat, or on no
  reference beat. A V label on a fusion ``F`` or an unclassifiable beat (``Q``, paced) is
  neither.
- SVEB: reference ``A a J S j e n``. Same, with the S label; a S label on a VEB or a
  fusion is a FP.

The fold table also gives the held-out VEB result by the stricter measure reported
before (whole records, a V label on an unclassifiable beat counted false).

The features do not depend on the learned forest, so cross-validation retrains it: the
22 records (numeric order) are dealt round-robin into ``k`` folds; for each fold the
forest is trained (:func:`benchmarks.beat_model.train`, the same procedure and constants
as the shipped weights) on the other folds' records only and scores the held-out
records. The training records' noisy copies (:func:`benchmarks.beat_model.noisy`: noise
added, leads turned a little) join each fold's training set, as they join the shipped
weights'; a held-out record is read clean.
The shipped weights (trained on all 22 records) are scored too, in-sample.
Speed: CPU time of the detector and the classifier (compiled kernel when built), x real
time per lead. ``--fs RATE``: the held-out records (and the per-record table) are read resampled to
RATE Hz (:mod:`benchmarks.resample`: 250 Hz our patch, 130 Hz a Polar H10) while every
forest still trains at the records' 360 Hz, as the shipped weights do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import beat_model as bm
from benchmarks import report
from benchmarks.ec57 import AAMI_CLASS, Score, bxb_pairs, sveb_score, veb_score
from dsp.beat_class import Rules, decide
from dsp.beat_measure import FEATURES
from dsp.beat_model import Forest, forest_for

PREMATURITY, IRREGULARITY = 0, 1  # features columns


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


def labels_of(r: dict, forest: Forest) -> np.ndarray:
    """The labels a record's beats get with ``forest`` (Q stays Q: not measurable)."""
    x = r["features"]
    sc = forest.scores(x)
    measurable = r["labels"] != "Q"
    rules = Rules()
    return np.array(
        [
            decide(s, p, i, m, rules)
            for s, p, i, m in zip(
                sc.tolist(), x[:, PREMATURITY].tolist(), x[:, IRREGULARITY].tolist(),
                measurable.tolist(), strict=True,
            )
        ]
    )  # fmt: skip


def scores(r: dict, labels: np.ndarray) -> tuple[Score, Score]:
    """(VEB, SVEB) counts of one record by the standard's comparator (bxb's rules: the first
    5 minutes are the learning period; a V label on a fusion or unclassifiable beat is
    neither TP nor FP)."""
    ref_class = [AAMI_CLASS[s] for s in r["sym"]]
    end = int(round(r["seconds"] * r["fs"]))
    pairs = bxb_pairs(r["ref"], ref_class, r["seq"], labels.tolist(), r["fs"], end)
    return veb_score(pairs), sveb_score(pairs)


def whole_record_veb(r: dict, labels: np.ndarray) -> Score:
    """VEB counts over the whole record, every V label on a non-VEB other than fusion a
    FP: the stricter measure this file reported before it followed bxb."""
    return class_counts(r["ref"], r["sym"], r["seq"], labels == "V", r["fs"], "VE", "F")


def total(rows: list[Score]) -> Score:
    """The counts of ``rows`` added up."""
    return sum(rows[1:], rows[0]) if rows else Score(0, 0, 0)


def cross_validate(
    recs: dict[str, dict],
    folds: int,
    leads: int,
    copies: list[dict[str, dict]],
    held_out: dict[str, dict] | None = None,
) -> tuple[list[str], Score]:
    """Fold table lines and the pooled held-out VEB score (forest retrained per fold on the
    other folds' records and their noisy ``copies``). ``held_out``: the same records read
    another way (another sampling rate) to score the held-out folds on; ``recs`` by default."""
    held_out = held_out or recs
    names = [k for k in recs if k not in bm.PACED]
    lines, pooled, strict = [], [], []
    for f in range(folds):
        test = names[f::folds]
        train_names = [k for k in names if k not in test]
        forest = bm.train(recs, train_names, leads, copies)
        tr = total([scores(recs[k], labels_of(recs[k], forest))[0] for k in train_names])
        labelled = [(held_out[k], labels_of(held_out[k], forest)) for k in test]
        held = [scores(r, lab)[0] for r, lab in labelled]
        te = total(held)
        pooled += held
        strict += [whole_record_veb(r, lab) for r, lab in labelled]
        lines.append(
            f"| {f + 1} | {' '.join(test)} | {tr.se:.1f} / {tr.ppv:.1f} "
            f"| {te.se:.1f} / {te.ppv:.1f} (TP {te.tp}, FN {te.fn}, FP {te.fp}) |"
        )
    p = total(pooled)
    lines.append(
        f"| all folds (held-out, pooled) | | | **{p.se:.2f} / {p.ppv:.2f}** "
        f"(TP {p.tp}, FN {p.fn}, FP {p.fp}) |"
    )
    w = total(strict)
    lines.append(
        f"| (the same, whole records, V on unclassifiable beats false) | | | {w.se:.2f} / "
        f"{w.ppv:.2f} (TP {w.tp}, FN {w.fn}, FP {w.fp}) |"
    )
    return lines, p


def per_record(recs: dict[str, dict], leads: int) -> tuple[list[str], Score, Score]:
    """Per-record table lines with the shipped weights (in-sample), and the totals."""
    forest = forest_for(leads)
    rows, vs, ss = [], [], []
    for k, r in recs.items():
        v, s = scores(r, labels_of(r, forest))
        if k not in bm.PACED:
            vs.append(v)
            ss.append(s)
        rows.append(
            f"| {k}{' (paced)' if k in bm.PACED else ''} | {v.tp + v.fn} | {v.tp} | {v.fn} "
            f"| {v.fp} "
            f"| {s.tp + s.fn} | {s.tp} | {s.fn} | {s.fp} |"
        )
    return rows, total(vs), total(ss)


def speed(recs: dict[str, dict], label: str) -> str:
    """The speed line: CPU time of detector and classifier as x real time per lead."""
    secs = sum(r["seconds"] for r in recs.values())
    t_det = sum(r["t"][0] for r in recs.values())
    t_cls = sum(r["t"][1] for r in recs.values())
    return (
        f"Speed ({label}), {secs / 3600:.1f} h: detector {secs / t_det:,.0f}x, classifier "
        f"{secs / t_cls:,.0f}x, detector + classes {secs / (t_det + t_cls):,.0f}x real time "
        f"per lead (CPU), {3600 * (t_det + t_cls) / secs:.3f} s per hour of ECG."
    )


def speed_runs(data: Path, channel: int, runs: int) -> list[str]:
    """Detector + one-lead classes over every record ``runs`` times (the machine may be
    shared: the spread shows how much); x real time per lead (CPU) of each run."""
    import wfdb

    names = sorted(p.stem for p in data.glob("*.hea"))
    signals = []
    for rec in names:
        r = wfdb.rdrecord(str(data / rec))
        signals.append((r.p_signal[:, [channel, 1 - channel]].astype(np.float64), float(r.fs)))
    secs = sum(x.shape[0] / fs for x, fs in signals)
    values = []
    for _ in range(runs):
        t_det = t_cls = 0.0
        for x, fs in signals:
            _, a, b = bm.classify(x, fs, False)
            t_det, t_cls = t_det + a, t_cls + b
        values.append(secs / (t_det + t_cls))
    each = ", ".join(f"{v:,.0f}x" for v in values)
    return [
        f"Speed, detector + one-lead classes, {runs} runs over {secs / 3600:.1f} h: {each}; "
        f"median {float(np.median(values)):,.0f}x, best {max(values):,.0f}x real time per lead.",
        "",
    ]


def section(
    recs: dict[str, dict],
    copies: list[dict[str, dict]],
    folds: int,
    leads: int,
    channel: int = 0,
    held_out: dict[str, dict] | None = None,
) -> list[str]:
    """The report of one classifier (one or two leads); ``held_out``: the records as scored
    (resampled), when they are not ``recs`` (what the forests train on)."""
    cv, _ = cross_validate(recs, folds, leads, copies, held_out)
    scored = held_out or recs
    rows, v, s = per_record(scored, leads)
    chans = f"channel {channel}" if leads == 1 else f"channels {channel} and {1 - channel}"
    rate = next(iter(scored.values()))["fs"]
    what = f"{'one lead' if leads == 1 else 'two leads'} ({chans}, {rate:g} Hz)"
    return [
        f"### {what}: {len(FEATURES[leads])} features",
        "",
        f"VEB, {folds}-fold cross-validation by record (forest retrained on the other folds):",
        "",
        "| fold | held-out records | train Se / +P % | held-out Se / +P % |",
        "|---|---|---|---|",
        *cv,
        "",
        "Shipped weights (trained on channel 0 of all 22 records, so in-sample for channel 0): "
        f"VEB Se {v.se:.1f} %, "
        f"+P {v.ppv:.1f} % (TP {v.tp}, FN {v.fn}, FP {v.fp}); SVEB Se {s.se:.1f} %, "
        f"+P {s.ppv:.1f} % (TP {s.tp}, FN {s.fn}, FP {s.fp}).",
        "",
        speed(scored, what),
        "",
        "| record | VEBs | TP | FN | FP | SVEBs | TP | FN | FP |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument(
        "--channel", type=int, default=0, choices=(0, 1), help="the detector's lead (default 0)"
    )
    ap.add_argument("--leads", type=int, nargs="+", default=[1, 2], choices=(1, 2))
    ap.add_argument("--speed-runs", type=int, default=0, help="extra speed runs (one lead)")
    ap.add_argument(
        "--fs",
        type=float,
        help="score the records resampled to this rate, Hz (the forests still train at the "
        "records' own rate, as the shipped ones do)",
    )
    ap.add_argument("--markdown", type=Path, help="write the tables (markdown) to this file")
    args = ap.parse_args()
    lines = [
        *report.header(", whole records, 1 s blocks."),
        "",
        f"Forest: {bm.TREES} trees of depth {bm.DEPTH}, rate {bm.RATE}, each tree on "
        f"{bm.SUBSAMPLE:g} of the beats, trained with "
        f"{bm.NOISY_COPIES} noisy copies of each training record ({bm.NOISE_MV} mV, leads "
        f"turned by up to {bm.LEAD_TURN} rad); "
        f"decision {Rules()}.",
        "",
    ]
    if args.speed_runs:
        lines += speed_runs(args.data, args.channel, args.speed_runs)
    for leads in args.leads:
        recs = bm.load(args.data, second=leads == 2, channel=args.channel)
        copies = bm.load_copies(args.data, second=leads == 2, channel=args.channel)
        held_out = None
        if args.fs:
            held_out = bm.load(args.data, second=leads == 2, channel=args.channel, fs=args.fs)
        lines += section(recs, copies, args.folds, leads, args.channel, held_out)
    return report.publish(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
