"""Beat-by-beat scoring in the manner of ANSI/AAMI EC57 (as PhysioNet's ``bxb`` does).

A reference beat and a detected beat match when they are at most 150 ms apart;
each detection matches at most one reference beat (the nearest first). Beats
in the first and last ``edge_s`` seconds may be excluded. Reported: TP, FN, FP,
sensitivity Se = TP / (TP + FN) and positive predictivity +P = TP / (TP + FP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Annotation symbols that are beats (EC57 / MIT-BIH conventions).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass(frozen=True)
class Score:
    tp: int
    fn: int
    fp: int

    @property
    def se(self) -> float:
        return 100.0 * self.tp / max(self.tp + self.fn, 1)

    @property
    def ppv(self) -> float:
        return 100.0 * self.tp / max(self.tp + self.fp, 1)

    def __add__(self, other: Score) -> Score:
        return Score(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def vf_episodes(samples, symbols) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes (``[`` ... ``]``), which EC57 leaves out."""
    out: list[tuple[int, int]] = []
    start = None
    for s, sym in zip(samples, symbols, strict=True):
        if sym == "[":
            start = int(s)
        elif sym == "]" and start is not None:
            out.append((start, int(s)))
            start = None
    return out


def outside(beats: np.ndarray, episodes: list[tuple[int, int]]) -> np.ndarray:
    """``beats`` without those inside any episode."""
    keep = np.ones(len(beats), bool)
    for a, b in episodes:
        keep &= (beats < a) | (beats > b)
    return np.asarray(beats)[keep]


def match_beats(ref: np.ndarray, det: np.ndarray, fs: float, window_s: float = 0.150) -> Score:
    """Score detections ``det`` against reference beats ``ref`` (sample indices)."""
    ref = np.sort(np.asarray(ref, dtype=np.int64))
    det = np.sort(np.asarray(det, dtype=np.int64))
    tol = window_s * fs
    if ref.size == 0 or det.size == 0:
        return Score(0, int(ref.size), int(det.size))
    # all (ref, det) pairs within tolerance, nearest first, greedy one-to-one
    lo = np.searchsorted(det, ref - tol, side="left")
    hi = np.searchsorted(det, ref + tol, side="right")
    pairs = [
        (abs(int(det[j]) - int(r)), i, j)
        for i, (r, a, b) in enumerate(zip(ref, lo, hi, strict=True))
        for j in range(a, b)
    ]
    pairs.sort()
    used_r: set[int] = set()
    used_d: set[int] = set()
    for _, i, j in pairs:
        if i not in used_r and j not in used_d:
            used_r.add(i)
            used_d.add(j)
    tp = len(used_r)
    return Score(tp, int(ref.size) - tp, int(det.size) - tp)
