"""Beat-by-beat scoring in the manner of ANSI/AAMI EC57 (as PhysioNet's ``bxb`` does).

A reference beat and a detected beat match when they are at most 150 ms apart;
each detection matches at most one reference beat (the nearest first). Beats
in the first and last ``edge_s`` seconds may be excluded. Reported: TP, FN, FP,
sensitivity Se = TP / (TP + FN) and positive predictivity +P = TP / (TP + FP).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

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


# --- the standard's own comparators, as PhysioNet's bxb and epicmp implement them ---------

#: The EC57 class of each MIT-BIH beat symbol (bxb's mapping with SVEB statistics on):
#: paced and learning beats count as unclassifiable, like ``Q``.
AAMI_CLASS = {
    **dict.fromkeys("NLRB", "N"),
    **dict.fromkeys("AaJSjen", "S"),
    **dict.fromkeys("VrE", "V"),
    "F": "F",
    **dict.fromkeys("Q/f?", "Q"),
}
#: The learning period the standard leaves out of every comparison (s).
LEARNING_S = 300.0


def bxb_pairs(
    ref: np.ndarray, ref_class: list[str], test: np.ndarray, test_class: list[str],
    fs: float, end: int, start_s: float = LEARNING_S, window_s: float = 0.150,
) -> dict[tuple[str, str], int]:  # fmt: skip
    """The (reference class, test class) pair counts of a beat-by-beat comparison, by
    bxb's rules: the comparison runs from ``start_s`` (the learning period) to sample
    ``end``; a reference and a test beat pair when they are within the match window and
    each is the nearer of its neighbours to the other; an unpaired beat pairs with the
    pseudo-class ``O``. Classes: N, S, V, F, Q (``AAMI_CLASS``). Beats in ventricular
    flutter are to be left out of both lists beforehand (bxb ignores them)."""
    huge = np.iinfo(np.int64).max // 4
    rt = [int(v) for v in ref] + [huge, huge]
    tt = [int(v) for v in test] + [huge, huge]
    rc, tc = [*ref_class, "*", "*"], [*test_class, "*", "*"]
    dt, start = int(window_s * fs), int(start_s * fs)
    pairs: dict[tuple[str, str], int] = {}

    def pair(r: str, t: str) -> None:
        pairs[r, t] = pairs.get((r, t), 0) + 1

    i = int(np.searchsorted(ref, start, side="left"))  # first reference beat in the test period
    j = int(np.searchsorted(test, start, side="left"))  # first test beat in it
    # the last test beat of the learning period may pair with the first reference beat
    t_prev = tt[j - 1] if j > 0 else 0
    if j > 0 and rt[i] - t_prev <= dt and rt[i] - t_prev < abs(rt[i] - tt[j]):
        pair(rc[i], tc[j - 1])
        i += 1
    elif tt[j] - start <= dt and abs(rt[i] - tt[j + 1]) < abs(rt[i] - tt[j]):
        j += 1  # a test beat at the very start that better fits the next one is not counted
    while rt[i] <= end or tt[j] <= end:
        big_t, t = rt[i], tt[j]
        if t < big_t:
            if big_t - t <= dt and big_t - t < abs(big_t - tt[j + 1]):
                pair(rc[i], tc[j])
                i, j = i + 1, j + 1
            else:
                pair("O", tc[j])
                j += 1
        elif t - big_t <= dt and t - big_t < abs(t - rt[i + 1]):
            pair(rc[i], tc[j])
            i, j = i + 1, j + 1
        else:
            pair(rc[i], "O")
            i += 1
    return pairs


def veb_score(pairs: dict[tuple[str, str], int]) -> Score:
    """VEB counts from :func:`bxb_pairs`: a V label on a fusion or unclassifiable reference
    beat is neither TP nor FP; a missed VEB is a FN."""
    tp = pairs.get(("V", "V"), 0)
    fn = sum(pairs.get(("V", c), 0) for c in "NSFQO")
    fp = sum(pairs.get((c, "V"), 0) for c in "NSO")
    return Score(tp, fn, fp)


def sveb_score(pairs: dict[tuple[str, str], int]) -> Score:
    """SVEB counts from :func:`bxb_pairs` (an S label on a VEB or fusion is a FP)."""
    tp = pairs.get(("S", "S"), 0)
    fn = sum(pairs.get(("S", c), 0) for c in "NVFQO")
    fp = sum(pairs.get((c, "S"), 0) for c in "NVFO")
    return Score(tp, fn, fp)


def rhythm_episodes(samples, symbols, aux, prefix: str, end: int) -> list[tuple[int, int]]:
    """Episodes of the reference rhythm whose label begins with ``prefix`` (``"(AFIB"``,
    ``"(AFL"``), read as epicmp reads them: one begins at such a rhythm annotation and ends
    at the next rhythm annotation with another label (or at ``end``)."""
    out: list[tuple[int, int]] = []
    onset = None
    for s, sym, note in zip(samples, symbols, aux, strict=True):
        if sym != "+":
            continue
        inside = (note or "").strip("\x00").startswith(prefix)
        if inside and onset is None:
            onset = int(s)
        elif not inside and onset is not None:
            out.append((onset, int(s)))
            onset = None
    if onset is not None:
        out.append((onset, max(end, onset)))
    return out


@dataclass(frozen=True)
class EpisodeScore:
    """An episode comparison (epicmp): counts of episodes and durations in samples."""

    ref_episodes: int
    ref_found: int
    test_episodes: int
    test_true: int
    ref_duration: int
    test_duration: int
    se_overlap: int
    ppv_overlap: int

    @property
    def duration_se(self) -> float:
        return 100.0 * self.se_overlap / self.ref_duration if self.ref_duration else float("nan")

    @property
    def duration_ppv(self) -> float:
        d = self.test_duration
        return 100.0 * self.ppv_overlap / d if d else float("nan")

    @property
    def episode_se(self) -> float:
        n = self.ref_episodes
        return 100.0 * self.ref_found / n if n else float("nan")

    @property
    def episode_ppv(self) -> float:
        n = self.test_episodes
        return 100.0 * self.test_true / n if n else float("nan")

    def __add__(self, other: EpisodeScore) -> EpisodeScore:
        return EpisodeScore(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def _overlap(a: int, b: int, episodes: list[tuple[int, int]]) -> int:
    return sum(max(0, min(b, y) - max(a, x)) for x, y in episodes)


def compare_episodes(
    ref: list[tuple[int, int]], test: list[tuple[int, int]], fs: float, end: int,
    exclude: list[tuple[int, int]] = (), start_s: float = LEARNING_S,
) -> EpisodeScore:  # fmt: skip
    """Episode-by-episode and duration comparison of ``test`` against ``ref`` (sample
    intervals) by epicmp's rules: only the test period counts (from ``start_s``, the
    learning period, to ``end``); for positive predictivity, the parts of test episodes
    inside ``exclude`` (the reference's atrial flutter, for AF) are left out, and an
    episode wholly inside it is not counted. An episode is found / true when it overlaps
    at all; durations add the overlap."""
    start = int(start_s * fs)

    def clipped(eps: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(max(a, start), min(b, end)) for a, b in eps if b > start and a < end]

    ref_c, test_c = clipped(ref), clipped(test)
    found = [_overlap(a, b, test) for a, b in ref_c]
    kept = [(a, b) for a, b in test_c if _overlap(a, b, list(exclude)) < b - a]
    true = [_overlap(a, b, ref) for a, b in kept]
    return EpisodeScore(
        ref_episodes=len(ref_c),
        ref_found=sum(o > 0 for o in found),
        test_episodes=len(kept),
        test_true=sum(o > 0 for o in true),
        ref_duration=sum(b - a for a, b in ref_c),
        test_duration=sum(b - a - _overlap(a, b, list(exclude)) for a, b in kept),
        se_overlap=sum(found),
        ppv_overlap=sum(true),
    )
