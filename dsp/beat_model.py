"""The learned part of the beat classifier: is a beat ventricular, from its features?

A small forest of *oblivious* decision trees (every node of a level asks the same
question: "is feature f above t?"), gradient-boosted on the logistic loss: the score is
a constant plus one leaf value per tree, and a beat is ventricular when the score is
above 0 (probability one half). A tree of depth d is d comparisons whose answers, read
as the bits of a number, pick one of its 2^d leaves, so the whole forest is a few array
operations per beat, or a short loop in the compiled kernel; no library is needed to
run it.

The weights (``dsp/beat_weights.py``) are written by ``benchmarks/beat_model.py``,
which trains them on the MIT-BIH development records' features (and on noisy copies
of those records seen through slightly turned leads), and cross-validates the same
procedure by record (BENCHMARKS.md, "Beat classes"). There is one forest per number of
leads the classifier reads (one, or two).

Features missing for a beat (NaN: the first beats of a stream, a second lead that
cannot be measured) read as the value a typical normal beat has (:data:`NEUTRAL`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from dsp.beat_measure import FEATURES

__all__ = ["NEUTRAL", "Forest", "forest_for"]

LEAF_UNIT = 1e-5  # the weights file's leaf values are integers in this unit

#: What a missing feature reads as: a normal beat's value (by feature name; "t_" running
#: means as their beat feature).
NEUTRAL = {
    "prematurity": 1.0, "irregularity": 0.0, "pause": 1.0, "corr": 1.0, "corr_dominant": 1.0,
    "references": 1.0, "amplitude": 1.0, "spread": 1.0, "wave_corr": 1.0, "qrs_diff": 0.0,
    "st_diff": 0.0, "area": 1.0, "share": 1.0, "is_reference": 1.0, "noise": 0.1,
    "qrs_diff_z": 1.0, "st_diff_z": 1.0, "corr_z": 1.0, "hfs_z": 1.0,
}  # fmt: skip


def neutral_value(name: str) -> float:
    """What a missing feature ``name`` reads as (:data:`NEUTRAL`; a template mean ``t_x`` and a
    second-lead ``x_b`` as ``x``)."""
    base = name[2:] if name.startswith("t_") else name
    return NEUTRAL[base[:-2] if base.endswith("_b") else base]


@dataclass(frozen=True, slots=True, eq=False)
class Forest:
    """Oblivious trees over one features row (see the module docstring).

    Attributes
    ----------
    leads
        Leads of the features rows it reads (:data:`dsp.beat_measure.FEATURES`).
    base
        The score before any tree.
    feature
        (trees, depth) int: the feature each level compares.
    threshold
        (trees, depth): ... with this value (above: bit 1).
    leaf
        (trees, 2 ** depth): each tree's values; the first level's bit is the most
        significant.
    """

    leads: int
    base: float
    feature: np.ndarray
    threshold: np.ndarray
    leaf: np.ndarray
    neutral: np.ndarray = field(init=False, repr=False)  # per feature of a row
    _bits: np.ndarray = field(init=False, repr=False)
    _trees: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = FEATURES[self.leads]
        object.__setattr__(self, "neutral", np.array([neutral_value(n) for n in names]))
        depth = self.feature.shape[1]
        object.__setattr__(self, "_bits", 1 << np.arange(depth - 1, -1, -1))
        object.__setattr__(self, "_trees", np.arange(self.feature.shape[0]))

    @property
    def depth(self) -> int:
        return int(self.feature.shape[1])

    def filled(self, rows: np.ndarray) -> np.ndarray:
        """Features rows with NaN replaced by the neutral values."""
        return np.where(np.isnan(rows), self.neutral, rows)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of features rows (n, features); NaN features read as neutral."""
        x = self.filled(np.atleast_2d(rows))
        bits = x[:, self.feature] > self.threshold  # (n, trees, depth)
        idx = bits.astype(np.int64) @ self._bits
        values = self.leaf[self._trees, idx]
        # the constant, then the trees in order (the kernel's order)
        return np.add.accumulate(
            np.concatenate([np.full((x.shape[0], 1), self.base), values], axis=1), axis=1
        )[:, -1]

    def score(self, row: np.ndarray) -> float:
        """The score of one features row (above 0: ventricular)."""
        return float(self.scores(row)[0])

    def kernel_args(self) -> tuple:
        """What ``dsp._qrs_kernel.forest`` takes after the row (contiguous arrays)."""
        return (
            np.ascontiguousarray(self.neutral),
            np.ascontiguousarray(self.feature, dtype=np.int64),
            np.ascontiguousarray(self.threshold, dtype=np.float64),
            np.ascontiguousarray(self.leaf, dtype=np.float64),
            float(self.base),
        )

    def to_dict(self, leaf_unit: float = LEAF_UNIT) -> dict:
        """The forest as the weights file holds it: one line of text per tree, its
        features, then its thresholds (6 significant digits), then its leaves in
        ``leaf_unit`` (integers); reading it back gives the forest so rounded."""
        lines = [
            " ".join(
                [*map(str, f), *(f"{t:.6g}" for t in th), *(str(round(v / leaf_unit)) for v in lf)]
            )
            for f, th, lf in zip(
                self.feature.tolist(), self.threshold.tolist(), self.leaf.tolist(), strict=True
            )
        ]
        return {
            "leads": self.leads,
            "base": self.base,
            "depth": self.depth,
            "leaf_unit": leaf_unit,
            "trees": "\n" + "\n".join(lines) + "\n",
        }

    @classmethod
    def from_dict(cls, d: dict) -> Forest:
        """The forest of :meth:`to_dict`'s mapping."""
        depth = int(d["depth"])
        rows = [line.split() for line in d["trees"].splitlines() if line.strip()]
        feature = np.array([r[:depth] for r in rows], dtype=np.int64).reshape(-1, depth)
        threshold = np.array([r[depth : 2 * depth] for r in rows], dtype=np.float64)
        leaf = np.array([r[2 * depth :] for r in rows], dtype=np.int64) * float(d["leaf_unit"])
        return cls(
            int(d["leads"]),
            float(d["base"]),
            feature,
            threshold.reshape(-1, depth),
            leaf.astype(np.float64).reshape(-1, 1 << depth),
        )


@functools.cache
def forest_for(leads: int) -> Forest:
    """The committed forest for one or two leads."""
    from dsp import beat_weights

    d = beat_weights.FORESTS[leads]
    if not d["trees"].strip():  # pragma: no cover - only before the first training
        return Forest(
            leads, -math.inf, np.zeros((0, 1), np.int64), np.zeros((0, 1)), np.zeros((0, 2))
        )
    return Forest.from_dict(d)
