"""Variants of the beat classifier's training that were tried and not adopted (BENCHMARKS.md,
"Beat classes"), so that their numbers can be reproduced.

Usage::

    python3 benchmarks/beat_model_trials.py [--data ../shared/data/mitdb] [--markdown F]

Every trial is cross-validated by record exactly as ``benchmarks/ventricular.py`` does (22
non-paced records dealt round-robin into 4 folds, the forest retrained on the other folds),
one lead, and scored on VEB (EC57). Every trial trains on the clean records only, without the
noisy copies the shipped weights are now trained with (``benchmarks/beat_model.py``): the
baseline row is the training as shipped before those copies.

- **nested**: depth (2, 3, 4), number of trees (75, 150, 300) and decision threshold (-0.5 to
  0.5) chosen in each outer training set by an inner 3-fold cross-validation by record
  (maximising min(Se, +P)), then retrained with the choice;
- **p_wave**: each beat's P-wave score (:mod:`dsp.atrial`) as one more feature;
- **two channels**: the forest trained on channel 0 and channel 1 of the training records,
  each as a one-lead view; scored held-out on both channels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.beat_model import PACED, fit_forest, load, training_set
from benchmarks.ec57 import Score
from benchmarks.ventricular import class_counts, total
from dsp import beat_measure, beat_model
from dsp.beat_model import Forest

FOLDS = 4
DEPTHS, TREES, THRESHOLDS = (2, 3, 4), (75, 150, 300), (-0.5, -0.25, 0.0, 0.25, 0.5)


def veb(r: dict, forest: Forest, threshold: float = 0.0) -> Score:
    """EC57 VEB counts of one record with ``forest`` (unmeasurable beats are Q, not V)."""
    v = (forest.scores(r["features"]) > threshold) & (r["labels"] != "Q")
    return class_counts(r["ref"], r["sym"], r["seq"], v, r["fs"], "VE", "F")


def folds(names: list[str]) -> list[tuple[list[str], list[str]]]:
    """(training, held-out) record names of each fold."""
    return [([k for k in names if k not in names[f::FOLDS]], names[f::FOLDS]) for f in range(FOLDS)]


def _first(f: Forest, trees: int) -> Forest:
    return Forest(f.leads, f.base, f.feature[:trees], f.threshold[:trees], f.leaf[:trees])


def choose(recs: dict[str, dict], names: list[str]) -> tuple[int, int, float]:
    """(depth, trees, threshold) maximising min(Se, +P) over an inner 3-fold CV of ``names``."""
    got: dict[tuple[int, int, float], list[Score]] = {}
    for depth in DEPTHS:
        for f in range(3):
            held = names[f::3]
            forest = fit_forest(
                *training_set(recs, [k for k in names if k not in held]), 1,
                trees=max(TREES), depth=depth,
            )  # fmt: skip
            for trees in TREES:
                part = _first(forest, trees)
                for t in THRESHOLDS:
                    got.setdefault((depth, trees, t), []).extend(
                        veb(recs[k], part, t) for k in held
                    )

    def quality(c: tuple[int, int, float]) -> tuple[float, float]:
        s = total(got[c])
        return min(s.se, s.ppv), -abs(c[2])

    return max(got, key=quality)


def nested(recs: dict[str, dict], names: list[str]) -> str:
    pooled = []
    for train_names, held in folds(names):
        depth, trees, t = choose(recs, train_names)
        forest = fit_forest(*training_set(recs, train_names), 1, trees=trees, depth=depth)
        pooled += [veb(recs[k], forest, t) for k in held]
    s = total(pooled)
    return f"| nested choice of depth, trees, threshold | {s.se:.1f} / {s.ppv:.1f} | |"


def with_p_wave(recs: dict[str, dict], names: list[str]) -> str:
    """The P-wave score as a 24th feature (missing: 0.9, a sinus beat's typical score)."""
    beat_measure.FEATURES[1] = beat_measure.FEATURES[1] + ("p_wave",)
    beat_model.NEUTRAL["p_wave"] = 0.9
    try:
        extended = {
            k: {**r, "features": np.column_stack([r["features"], r["p_wave"]])}
            for k, r in recs.items()
        }
        pooled = []
        for train_names, held in folds(names):
            forest = fit_forest(*training_set(extended, train_names), 1)
            pooled += [veb(extended[k], forest) for k in held]
    finally:
        beat_measure.FEATURES[1] = beat_measure.FEATURES[1][:-1]
        del beat_model.NEUTRAL["p_wave"]
    s = total(pooled)
    return f"| P-wave score as a feature | {s.se:.1f} / {s.ppv:.1f} | |"


def two_channels(recs: dict[str, dict], other: dict[str, dict], names: list[str]) -> str:
    both = {**recs, **{k + "/1": r for k, r in other.items()}}
    on0, on1 = [], []
    for train_names, held in folds(names):
        forest = fit_forest(*training_set(both, train_names + [k + "/1" for k in train_names]), 1)
        on0 += [veb(recs[k], forest) for k in held]
        on1 += [veb(other[k], forest) for k in held]
    a, b = total(on0), total(on1)
    return f"| trained on channels 0 and 1 | {a.se:.1f} / {a.ppv:.1f} | {b.se:.1f} / {b.ppv:.1f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--markdown", type=Path, help="write the table (markdown) to this file")
    args = ap.parse_args()
    recs = load(args.data, second=False)
    other = load(args.data, second=False, channel=1)
    names = [k for k in recs if k not in PACED]
    base0, base1 = [], []
    for train_names, held in folds(names):
        forest = fit_forest(*training_set(recs, train_names), 1)
        base0 += [veb(recs[k], forest) for k in held]
        base1 += [veb(other[k], forest) for k in held]
    a, b = total(base0), total(base1)
    return report.publish(
        [
            *report.header(", one lead, 4-fold cross-validation by record."),
            "",
            "| trial | held-out VEB Se / +P %, channel 0 | channel 1 |",
            "|---|---|---|",
            f"| clean records only (as shipped before the noisy copies) | {a.se:.1f} / {a.ppv:.1f} "
            f"| {b.se:.1f} / {b.ppv:.1f} |",
            nested(recs, names),
            with_p_wave(recs, names),
            two_channels(recs, other, names),
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
