"""Atrial fibrillation detection: AF time Se and +P, cross-validated by record.

Usage::

    python3 benchmarks/af.py [--ltafdb ../shared/data/ltafdb] [--mitdb ../shared/data/mitdb]
                             [--folds 6] [--markdown FILE]

Two measurements, both at 1-second resolution against the reference '(AFIB' rhythm
annotations (duration Se = overlap / reference AF time, +P = overlap / detected AF
time, gross over records):

- **Long-Term AF Database** (annotations only): the reference beats are fed to the
  streaming :class:`dsp.af.AfDetector` (ventricular = label V, F or E; no other label
  is used). The two thresholds (AF begins above ``enter``, ends under ``leave``) are
  cross-validated: the records, in numeric order, are dealt into ``k`` folds; for each
  fold the pair that maximises min(Se, +P) on the other folds is chosen from a small
  grid and scored on the held-out fold. Per-fold and pooled held-out results, then the
  detector with its defaults on all records.
- **MIT-BIH Arrhythmia** (full signal path, the defaults, nothing chosen on it):
  ``ecg-gateway analyze``'s code on channel 0 of every record; AF records report
  Se/+P, the others their false AF time.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from dsp import af

GRID_ENTER = (0.08, 0.09, 0.10, 0.11, 0.12, 0.13)
GRID_LEAVE = (0.03, 0.035, 0.04, 0.045, 0.05)
_V = frozenset("VFE")
_SV = frozenset("AaJS")  # supraventricular ectopic labels (used only in the marked variant)
_BEATS = frozenset("NLRBAaJSVrFejnE/fQ?")


def reference_af(samples, symbols, aux, n: int) -> np.ndarray:
    """Per-sample mask of the reference '(AFIB' rhythm."""
    mask = np.zeros(n, bool)
    current, start = None, 0
    for s, sym, note in zip(samples, symbols, aux, strict=True):
        if sym == "+":
            if current == "(AFIB":
                mask[start:s] = True
            current, start = note.strip("\x00"), int(s)
    if current == "(AFIB":
        mask[start:] = True
    return mask


def seconds_mask(mask: np.ndarray, fs: float) -> np.ndarray:
    """1-s resolution: a second counts when most of its samples do."""
    step = int(round(fs))
    k = mask.size // step
    return mask[: k * step].reshape(k, step).mean(axis=1) > 0.5


def episodes_mask(episodes: list[tuple[int, int]], n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in episodes:
        mask[a:b] = True
    return mask


def trace(seq: np.ndarray, ventricular: np.ndarray, fs: float) -> np.ndarray:
    """Run the detector over one stream of beats; per beat: (placed onset, mean
    irregularity or NaN, the beat's own irregularity or NaN, the middle of its window)."""
    det = af.AfDetector(fs)
    rows = np.full((seq.size, 4), np.nan)
    back = af.WINDOW // 2 + 2
    for i, (s, v) in enumerate(zip(seq.tolist(), ventricular.tolist(), strict=True)):
        det.push(s, v)
        value, beats = det._last_value, det._beats
        if value is None:
            continue
        full = len(det._values) == af.AVERAGE
        mid = beats[-back] if len(beats) >= back else np.nan
        rows[i] = beats[0], det.state.irregularity if full else np.nan, value, mid
    return rows


def replay(
    rows: np.ndarray, enter: float, leave: float, first: int, end: int
) -> list[tuple[int, int]]:
    """The detector's decision (hysteresis and placement) over the trace of one stream
    whose first beat is ``first``, for other thresholds; with the defaults it gives the
    detector's own episodes."""
    out, onset, active, last_irregular, judged = [], 0, False, 0, False
    for placed, mean, value, mid in rows.tolist():
        if value != value:
            continue
        if value > enter and mid == mid:
            last_irregular = int(mid)
        if mean != mean:
            continue
        if not active and mean > enter:
            # AF at the stream's first verdict is placed at its first beat
            active, onset = True, int(placed) if judged else first
        elif active and mean < leave:
            active = False
            out.append((onset, min(int(placed), max(last_irregular, onset))))
        judged = True
    if active:
        out.append((onset, end))
    return out


def score(rows: list[tuple[float, float, float]]) -> tuple[float, float]:
    ref, got, both = (sum(r[i] for r in rows) for i in range(3))
    return 100 * both / ref if ref else float("nan"), 100 * both / got if got else float("nan")


def overlap(ref: np.ndarray, eps: list[tuple[int, int]], fs: float) -> tuple[float, float, float]:
    got = seconds_mask(episodes_mask(eps, ref.size), fs)
    r = seconds_mask(ref, fs)
    return float(r.sum()), float(got.sum()), float((r & got).sum())


def load_ltafdb(data: Path) -> dict[str, dict]:
    import wfdb

    out = {}
    for rec in sorted((p.stem for p in data.glob("*.hea")), key=int):
        a = wfdb.rdann(str(data / rec), "atr")
        h = wfdb.rdheader(str(data / rec))
        is_beat = np.isin(a.symbol, list(_BEATS))
        sym = np.asarray(a.symbol)[is_beat]
        out[rec] = {
            "fs": float(h.fs),
            "seq": np.asarray(a.sample)[is_beat].astype(np.int64),
            "ventricular": np.isin(sym, list(_V)),
            "ectopic": np.isin(sym, list(_V | _SV)),
            "ref": reference_af(a.sample, a.symbol, a.aux_note, h.sig_len),
        }
    return out


def cross_validate(recs: dict[str, dict], folds: int) -> tuple[list[str], dict]:
    """Per-fold choice and held-out score; returns report lines and per-record traces."""
    traces = {k: trace(r["seq"], r["ventricular"], r["fs"]) for k, r in recs.items()}
    for k, r in recs.items():  # the replay is the detector: same episodes at the defaults
        args = (int(r["seq"][0]), r["ref"].size)
        assert replay(traces[k], af.ENTER, af.LEAVE, *args) == detect(r), k
    grid = [(e, lv) for e, lv in itertools.product(GRID_ENTER, GRID_LEAVE) if lv < e]
    rows = {
        (k, g): overlap(r["ref"], replay(traces[k], *g, int(r["seq"][0]), r["ref"].size), r["fs"])
        for k, r in recs.items()
        for g in grid
    }
    names = list(recs)
    lines, pooled = [], []
    for f in range(folds):
        test = names[f::folds]
        train = [k for k in names if k not in test]
        best = max(grid, key=lambda g: min(score([rows[k, g] for k in train])))
        se, ppv = score([rows[k, best] for k in test])
        pooled += [rows[k, best] for k in test]
        tr_se, tr_ppv = score([rows[k, best] for k in train])
        lines.append(
            f"| {f + 1} | {' '.join(test)} | {best[0]} / {best[1]} | "
            f"{tr_se:.1f} / {tr_ppv:.1f} | {se:.1f} / {ppv:.1f} |"
        )
    se, ppv = score(pooled)
    lines.append(f"| all folds (held-out, pooled) | | | | **{se:.1f} / {ppv:.1f}** |")
    best = max(grid, key=lambda g: min(score([rows[k, g] for k in names])))
    lines.append(f"| (choice on all records) | | {best[0]} / {best[1]} | | |")
    return lines, traces


def detect(r: dict, left_out: str = "ventricular") -> list[tuple[int, int]]:
    """AF episodes of the detector with its defaults over a record's reference beats,
    the intervals of the ``left_out`` beats left out."""
    det = af.AfDetector(r["fs"])
    eps, onset = [], 0
    for s, v in zip(r["seq"].tolist(), r[left_out].tolist(), strict=True):
        c = det.push(s, v)
        if c is not None and c.began:
            onset = c.seq
        elif c is not None:
            eps.append((onset, c.seq))
    if det.active:
        eps.append((onset, r["ref"].size))
    return eps


def ltafdb_section(data: Path, folds: int) -> list[str]:
    recs = load_ltafdb(data)
    t0 = time.process_time()
    cv_lines, _ = cross_validate(recs, folds)
    per_rec, rows = [], []
    for k, r in recs.items():
        eps = detect(r)
        row = overlap(r["ref"], eps, r["fs"])
        rows.append(row)
        se, ppv = score([row])
        non_af = (r["ref"].size / r["fs"] - row[0]) or float("nan")
        false = 100 * (row[1] - row[2]) / non_af
        hours_ref, hours_got = row[0] / 3600, row[1] / 3600
        per_rec.append(
            f"| {k} | {hours_ref:.2f} | {hours_got:.2f} | {se:.1f} | {ppv:.1f} | {false:.2f} |"
        )
    cpu = time.process_time() - t0
    with_s = [overlap(r["ref"], detect(r, "ectopic"), r["fs"]) for r in recs.values()]
    se_s, ppv_s = score(with_s)
    pairs_s = zip(recs.values(), with_s, strict=True)
    non_af_all = sum(r["ref"].size / r["fs"] - row[0] for r, row in pairs_s)
    false_s = 100 * sum(row[1] - row[2] for row in with_s) / non_af_all
    se, ppv = score(rows)
    hours = sum(r["ref"].size / r["fs"] for r in recs.values()) / 3600
    pairs = zip(recs.values(), rows, strict=True)
    non_af = sum(r["ref"].size / r["fs"] - row[0] for r, row in pairs)
    false = 100 * sum(row[1] - row[2] for row in rows) / non_af
    return [
        f"Long-Term AF Database, {len(recs)} records, {hours:.0f} h, reference beats; "
        f"{folds}-fold cross-validation by record (grid enter {GRID_ENTER}, leave {GRID_LEAVE}):",
        "",
        "| fold | held-out records | chosen enter / leave | train Se / +P % | held-out Se / +P % |",
        "|---|---|---|---|---|",
        *cv_lines,
        "",
        f"Defaults (enter {af.ENTER}, leave {af.LEAVE}) on all records: Se {se:.1f} %, "
        f"+P {ppv:.1f} %, false AF {false:.2f} % of non-AF time (CPU {cpu:.0f} s for "
        "the cross-validation and this run).",
        "",
        f"Variant, not a result of the product: leaving out the intervals of beats the annotators "
        f"labelled supraventricular (A a J S) as well, as `analyze --beats atr` does with an "
        f"annotation file's own labels: Se {se_s:.1f} %, +P {ppv_s:.1f} %, false AF "
        f"{false_s:.2f} % of non-AF time.",
        "",
        "| record | reference AF h | detected AF h | Se % | +P % | false AF % of non-AF |",
        "|---|---|---|---|---|---|",
        *per_rec,
    ]


def mitdb_section(data: Path) -> list[str]:
    import wfdb

    from gateway.analyze import analyze_signal

    rows, af_rows, false_rows = [], [], []
    for rec in sorted(p.stem for p in data.glob("*.hea")):
        r = wfdb.rdrecord(str(data / rec), channels=[0])
        ann = wfdb.rdann(str(data / rec), "atr")
        fs, n = float(r.fs), r.sig_len
        ref = reference_af(ann.sample, ann.symbol, ann.aux_note, n)
        res = analyze_signal(r.p_signal[:, 0], fs)
        eps = [(e.start_seq, e.end_seq or n) for e in res.episodes if e.kind == "af"]
        row = overlap(ref, eps, fs)
        if row[0]:
            rows.append(row)
            se, ppv = score([row])
            af_rows.append(f"| {rec} | {row[0]:.0f} | {row[1]:.0f} | {se:.1f} | {ppv:.1f} |")
        else:
            false_rows.append(f"| {rec} | {row[1]:.0f} | {100 * row[1] / (n / fs):.2f} |")
        print(rec, row, flush=True)
    se, ppv = score(rows)
    ref_t, got_t = sum(r[0] for r in rows), sum(r[1] for r in rows)
    return [
        "MIT-BIH Arrhythmia, full signal path (channel 0, 1 s blocks), defaults:",
        "",
        "| record | reference AF s | detected AF s | Se % | +P % |",
        "|---|---|---|---|---|",
        *af_rows,
        f"| all AF records | {ref_t:.0f} | {got_t:.0f} | {se:.1f} | {ppv:.1f} |",
        "",
        "False AF in records without AF:",
        "",
        "| record | detected AF s | % of record |",
        "|---|---|---|",
        *false_rows,
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ltafdb", type=Path, default=Path("../shared/data/ltafdb"))
    ap.add_argument("--mitdb", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--skip-ltafdb", action="store_true")
    ap.add_argument("--skip-mitdb", action="store_true")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    lines = [*report.header("."), ""]
    if not args.skip_ltafdb:
        lines += [*ltafdb_section(args.ltafdb, args.folds), ""]
    if not args.skip_mitdb:
        lines += mitdb_section(args.mitdb)
    return report.publish(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
