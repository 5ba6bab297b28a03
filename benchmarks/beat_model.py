"""Train the beat classifier's forests (dsp/beat_weights.py) on MIT-BIH, by record.

Usage::

    python3 benchmarks/beat_model.py [--data ../shared/data/mitdb] [--check]

Runs the streaming QRS detector and :class:`dsp.beat_class.BeatClassifier` over every
development record (1-second blocks; channel 0, and channel 1 as the second lead),
matches the detected beats to the reference annotations (150 ms), and fits one forest
of oblivious trees per number of leads on all 22 non-paced records (the weights the
product uses). ``--check`` prints what would be written without writing it.
``benchmarks/ventricular.py`` cross-validates the same procedure by record.

The trainer is numpy only: gradient boosting on the logistic loss, each tree of depth
``DEPTH`` choosing, level by level, the one (feature, threshold) that gains most over
all its leaves together, thresholds at the training features' quantiles; each tree
grown on a random half of the beats (``SUBSAMPLE``, fixed seed). Labels: a
reference V or E beat is positive; every other detected beat negative (a false
detection too: a V label on it would be a false positive), except fusion beats F
(EC57 counts a V label on them neither way) and beats inside ventricular flutter. Each
record weighs as the square root of its beat count (a 3,000-beat record counts more
than a 1,500-beat one, not twice as much).

Each training record is also read ``NOISY_COPIES`` more times with synthetic noise added
and its two leads turned in their plane by a random angle (:func:`noisy`: muscle-like noise
in bursts, a turn within ±``LEAD_TURN`` rad; deterministic per record and copy); each copy
joins the training set as one more record with the same reference labels. On the
development records, cross-validated by record (BENCHMARKS.md), the noise moves the
one-lead held-out VEB result from Se 88.1 / +P 88.5 to about 91 / 91: the forest no longer
learns that an odd shape in a clean record is always ventricular, and sees normal beats in
noise; the turn (a patch's lead is not exactly MLII) takes +P about 0.7 higher. Held-out
records are never copied; the product never adds noise.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ec57 import BEAT_SYMBOLS, outside, vf_episodes
from benchmarks.resample import resampled, samples_at
from core.block import SampleBlock
from dsp.beat_class import BeatClassifier, ClassifiedBeats
from dsp.beat_measure import FEATURES
from dsp.beat_model import Forest
from dsp.qrs import QrsDetector

PACED = ("102", "104")
TREES, DEPTH, RATE, BINS, L2 = 300, 3, 0.05, 32, 1.0
SUBSAMPLE = 0.5  # each tree sees this share of the training beats (drawn anew per tree)
NOISY_COPIES = 2  # noisy copies of each training record
NOISE_MV = 0.15  # their noise level (peak of the smoothed white noise's envelope), mV
LEAD_TURN = 0.5  # rad: each copy's two leads turned in their plane by up to this angle
WEIGHTS = Path(__file__).resolve().parent.parent / "dsp" / "beat_weights.py"


# --- the trainer ----------------------------------------------------------------------
def fit_forest(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    leads: int,
    trees: int = TREES,
    depth: int = DEPTH,
    rate: float = RATE,
    bins: int = BINS,
    l2: float = L2,
    subsample: float = SUBSAMPLE,
) -> Forest:
    """Gradient-boosted oblivious trees on features ``x`` (n, f), labels ``y`` (0/1),
    sample weights ``w``. Stochastic boosting (Friedman, Comput Stat Data Anal 38:367-378,
    2002): each tree is grown and its leaves valued on a random ``subsample`` of the beats
    (a fixed seed: the same data give the same forest)."""
    proto = Forest(leads, 0.0, np.zeros((1, depth), np.int64), np.zeros((1, depth)),
                   np.zeros((1, 1 << depth)))  # fmt: skip
    x = proto.filled(x)
    edges = [np.unique(np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1])) for col in x.T]
    binned = np.stack(
        [np.searchsorted(e, col, side="left") for e, col in zip(edges, x.T, strict=True)], 1
    )
    p0 = min(max(float(np.average(y, weights=w)), 1e-4), 1 - 1e-4)
    base = math.log(p0 / (1 - p0))
    score = np.full(y.shape[0], base)
    feature = np.zeros((trees, depth), np.int64)
    threshold = np.zeros((trees, depth))
    leaf_values = np.zeros((trees, 1 << depth))
    rng = np.random.default_rng(0)
    for t in range(trees):
        p = 1.0 / (1.0 + np.exp(-score))
        drawn = w * (rng.random(y.shape[0]) < subsample) if subsample < 1 else w
        g = (p - y) * drawn
        h = np.maximum(p * (1 - p), 1e-6) * drawn
        leaf = np.zeros(y.shape[0], np.int64)
        for d in range(depth):
            n_leaves, best = 1 << d, (-math.inf, 0, 0)
            for k, e in enumerate(edges):
                nb = e.shape[0] + 1
                if nb < 2:
                    continue
                at = leaf * nb + binned[:, k]
                gs = np.bincount(at, g, n_leaves * nb).reshape(n_leaves, nb).cumsum(1)
                hs = np.bincount(at, h, n_leaves * nb).reshape(n_leaves, nb).cumsum(1)
                gl, hl, gt, ht = gs[:, :-1], hs[:, :-1], gs[:, -1:], hs[:, -1:]
                gain = (gl**2 / (hl + l2) + (gt - gl) ** 2 / (ht - hl + l2)).sum(0)
                gain -= float((gt**2 / (ht + l2)).sum())
                b = int(np.argmax(gain))
                if gain[b] > best[0]:
                    best = (float(gain[b]), k, b)
            _, k, b = best
            # bin b holds values <= edges[b]: "above the threshold" is bin > b
            feature[t, d], threshold[t, d] = k, edges[k][b]
            leaf = leaf * 2 + (x[:, k] > edges[k][b])
        gs = np.bincount(leaf, g, 1 << depth)
        hs = np.bincount(leaf, h, 1 << depth)
        leaf_values[t] = -gs / (hs + l2) * rate
        score += leaf_values[t][leaf]
    return Forest(leads, base, feature, threshold, leaf_values)


# --- the data ---------------------------------------------------------------------------
def noisy(
    x: np.ndarray, fs: float, rec: str, copy: int, level: float = NOISE_MV, turn: float = LEAD_TURN
) -> np.ndarray:
    """``x`` (samples x 2 leads, mV) seen through other leads, with muscle-like noise in
    bursts added. The leads: the pair turned in its plane by an angle drawn uniformly within
    ``±turn`` (rad; lead 0 becomes cos a * lead 0 + sin a * lead 1, lead 1 -sin a * lead 0 +
    cos a * lead 1), as a patch placed a little differently would see the heart. The noise:
    white noise averaged over 3 samples (one per lead) times ``level`` (mV) and a slow
    random envelope (six sines of periods 30-300 s summed, over 3, clipped at 0: noisy about
    a third of the time, up to about ``level``). Deterministic for a record name and copy
    number."""
    key = int(rec) if rec.isdigit() else zlib.crc32(rec.encode())
    rng = np.random.default_rng(100 + 200 * copy + key)
    n, leads = x.shape
    w = rng.standard_normal((n + 2, leads))
    w = (w[:-2] + w[1:-1] + w[2:]) / 3.0
    t = np.arange(n) / fs
    env = np.zeros(n)
    for _ in range(6):
        f = rng.uniform(1 / 300, 1 / 30)
        phase = rng.uniform(0, 2 * np.pi)
        env += np.sin(2 * np.pi * f * t + phase)
    env = np.clip(env / 3.0, 0, None)
    a = np.random.default_rng((300 + copy, key)).uniform(-turn, turn)
    turned = x @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return turned + level * env[:, None] * w


def classify(x: np.ndarray, fs: float, second: bool) -> tuple[ClassifiedBeats, float, float]:
    """Beats with classes of a record (x: samples x 2 leads); CPU s of detector, classifier."""
    det = QrsDetector(fs)
    cls = BeatClassifier(fs, 2, 0, second_lead=1 if second else None)
    n = int(fs)
    x32 = x.astype(np.float32)
    parts, t_det, t_cls = [], 0.0, 0.0
    clock = time.process_time
    for i in range(0, len(x32), n):
        block = SampleBlock(x32[i : i + n], fs, i / fs, i, ("A", "B"))
        t0 = clock()
        beats = det.process(block)
        t1 = clock()
        parts.append(cls.process(block, beats))
        t_det, t_cls = t_det + t1 - t0, t_cls + clock() - t1
    end = SampleBlock(x32[:0], fs, len(x32) / fs, len(x32), ("A", "B"))
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


def matched_symbols(ref: np.ndarray, sym: list[str], det: np.ndarray, fs: float) -> np.ndarray:
    """The reference symbol nearest each detection within 150 ms ('-' for none)."""
    out = np.full(det.size, "-", dtype="<U1")
    if not ref.size or not det.size:
        return out
    j = np.clip(np.searchsorted(ref, det), 1, max(ref.size - 1, 1))
    right = np.minimum(j, ref.size - 1)
    k = np.where(np.abs(ref[j - 1] - det) <= np.abs(ref[right] - det), j - 1, right)
    ok = np.abs(ref[k] - det) <= int(round(0.15 * fs))
    out[ok] = np.asarray(sym)[k[ok]]
    return out


def load(
    data: Path,
    second: bool,
    records: list[str] | None = None,
    channel: int = 0,
    copy: int | None = None,
    fs: float | None = None,
) -> dict[str, dict]:
    """Per record: the classifier's beats and features, the reference beats and what each
    detection matched; CPU times. ``channel``: the detector's lead (0 or 1; the other one is
    the second lead); ``copy``: read the record with noise added (:func:`noisy`), or not
    (None); ``fs``: read it resampled to that rate (:mod:`benchmarks.resample`: what a device
    sampling at ``fs`` Hz would give), or at its own (None)."""
    import wfdb

    out = {}
    names = records or sorted(p.stem for p in data.glob("*.hea"))
    for rec in names:
        r = wfdb.rdrecord(str(data / rec))
        ann = wfdb.rdann(str(data / rec), "atr")
        at = float(r.fs)
        rate = fs or at
        ann.sample = samples_at(ann.sample, at, rate)
        skip = excluded(ann)
        keep = [(s, y) for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS]
        ref = np.array([s for s, _ in keep], dtype=np.int64)
        sym = [y for _, y in keep]
        signal = r.p_signal if copy is None else noisy(r.p_signal, at, rec, copy)
        x = resampled(signal[:, [channel, 1 - channel]].astype(np.float64), at, rate)
        beats, t_det, t_cls = classify(x, rate, second)
        det_keep = np.isin(beats.seq, outside(beats.seq, skip))
        ref_keep = np.isin(ref, outside(ref, skip))
        assert beats.features is not None and beats.scores is not None
        out[rec] = {
            "fs": rate,
            "seconds": r.sig_len / at,
            "ref": ref[ref_keep],
            "sym": [y for y, k in zip(sym, ref_keep.tolist(), strict=True) if k],
            "seq": beats.seq[det_keep],
            "labels": np.asarray(beats.labels)[det_keep],
            "features": beats.features[det_keep],
            "scores": beats.scores[det_keep],
            "p_wave": np.asarray(beats.p_wave)[det_keep],
            "matched": matched_symbols(ref, sym, beats.seq, rate)[det_keep],
            "t": (t_det, t_cls),
        }
        print(rec if copy is None else f"{rec} (noisy copy {copy})", len(beats), flush=True)
    return out


def training_set(recs: dict[str, dict], names: list[str]) -> tuple[np.ndarray, ...]:
    """(features, labels, weights) of the records ``names`` (see the module docstring)."""
    xs, ys, ws = [], [], []
    for k in names:
        r = recs[k]
        use = r["matched"] != "F"
        x = r["features"][use]
        xs.append(x)
        ys.append(np.isin(r["matched"][use], ["V", "E"]).astype(float))
        ws.append(np.full(x.shape[0], math.sqrt(1000.0 / max(x.shape[0], 1))))
    return np.vstack(xs), np.concatenate(ys), np.concatenate(ws)


def load_copies(data: Path, second: bool, channel: int = 0) -> list[dict[str, dict]]:
    """The ``NOISY_COPIES`` noisy readings of every record (:func:`load` with ``copy``)."""
    return [load(data, second, channel=channel, copy=c) for c in range(NOISY_COPIES)]


def train(
    recs: dict[str, dict], names: list[str], leads: int, copies: Sequence[dict[str, dict]] = ()
) -> Forest:
    """The forest trained on the records ``names`` and their noisy copies in ``copies``
    (each copy one more record)."""
    pool, chosen = dict(recs), list(names)
    for c, copy in enumerate(copies):
        for k in names:
            pool[f"{k}~{c}"] = copy[k]
            chosen.append(f"{k}~{c}")
    return fit_forest(*training_set(pool, chosen), leads)


# --- the weights file -------------------------------------------------------------------
def weights_source(forests: dict[int, Forest], note: str) -> str:
    """The Python source of dsp/beat_weights.py for these forests (one line per tree:
    :meth:`dsp.beat_model.Forest.to_dict`)."""
    parts = []
    for leads, f in forests.items():
        d = f.to_dict()
        parts.append(
            f"    {leads}: {{\n"
            f'        "leads": {leads},\n'
            f'        "base": {d["base"]!r},\n'
            f'        "depth": {d["depth"]},\n'
            f'        "leaf_unit": {d["leaf_unit"]!r},\n'
            f"        # per tree: {d['depth']} features, {d['depth']} thresholds, "
            f"{1 << d['depth']} leaves (in leaf units)\n"
            f'        "trees": """{d["trees"]}""",\n'
            "    },\n"
        )
    return (
        '"""Weights of the beat classifier\'s forests (:mod:`dsp.beat_model`).\n\n'
        f"Generated by benchmarks/beat_model.py: {note}\n"
        'Do not edit by hand."""\n\n'
        "FORESTS = {\n" + "".join(parts) + "}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--check", action="store_true", help="print, do not write")
    args = ap.parse_args()
    forests = {}
    for leads in (1, 2):
        recs = load(args.data, second=leads == 2)
        copies = load_copies(args.data, second=leads == 2)
        names = [k for k in recs if k not in PACED]
        forests[leads] = train(recs, names, leads, copies)
        print(f"{leads} lead(s): {len(FEATURES[leads])} features, trained on {len(names)} records")
    note = (
        f"{TREES} trees of depth {DEPTH}, rate {RATE}, each on {SUBSAMPLE:g} of the beats,\n"
        "on the 22 non-paced\n"
        "MIT-BIH development records (channel 0; channel 1 the second lead) and\n"
        f"{NOISY_COPIES} noisy copies of each ({NOISE_MV} mV; leads turned by up to\n"
        f"{LEAD_TURN} rad)."
    )
    text = weights_source(forests, note)
    if args.check:
        print(text[:2000])
    else:
        WEIGHTS.write_text(text)
        print(f"wrote {WEIGHTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
