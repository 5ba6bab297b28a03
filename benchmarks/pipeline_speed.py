"""Speed of the whole per-device DSP chain, as x real time per lead.

Usage::

    python3 benchmarks/pipeline_speed.py [--data ../shared/data/mitdb] [--block-s 1] [--markdown F]

Runs, block by block as the gateway's analysis does (gateway/pipeline/analysis.py): the
display filter (band-pass + notch), the quality tracker, the QRS detector, the beat
classifier (classes and P-wave score), the episode tracker fed the classified beats and the
quality windows, and heart rate, over channel 0 of every record. CPU time (process_time) of
the chain only: the whole chain is timed in a pass of its own, around the loop over the
blocks (the six clock readings per block of the per-stage pass cost about 5 % of the chain);
the stages in a second pass, each timed apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from core.block import SampleBlock
from dsp.beat_class import BeatClassifier
from dsp.episodes import EpisodeTracker
from dsp.filters import EcgFilter
from dsp.heart_rate import HeartRateTracker
from dsp.qrs import QrsDetector
from dsp.quality import QualityTracker


def chain_seconds(
    x: np.ndarray, fs: float, block_s: float, staged: bool = True
) -> tuple[float, dict[str, float]]:
    """CPU seconds of the chain over ``x`` in blocks of ``block_s``, and per stage (timed
    apart when ``staged``; otherwise only the whole loop is timed and the stages are 0)."""
    n = max(int(fs * block_s), 1)
    blocks = [
        SampleBlock(x[i : i + n, None].astype(np.float32), fs, i / fs, i, ("MLII",))
        for i in range(0, x.size, n)
    ]
    filt, qrs, hr = EcgFilter(fs, 1), QrsDetector(fs), HeartRateTracker()
    episodes, quality = EpisodeTracker(fs, quality=True), QualityTracker(fs, 1)
    classes = BeatClassifier(fs)
    parts = dict.fromkeys(("filter", "qrs", "classes", "rhythm+hr", "quality"), 0.0)
    clock = time.process_time
    if not staged:
        t0 = clock()
        for b in blocks:  # the same calls as below, untimed
            filt.process(b)
            windows = quality.process(b)
            beats = qrs.process(b)
            labelled = classes.process(b, beats)
            episodes.process(labelled, windows)
            hr.process(beats, b.end_seq)
        return clock() - t0, parts
    for b in blocks:  # in the order and with the inputs of gateway/pipeline/analysis.py
        t0 = clock()
        filt.process(b)
        t1 = clock()
        windows = quality.process(b)
        t2 = clock()
        beats = qrs.process(b)
        t3 = clock()
        labelled = classes.process(b, beats)
        t4 = clock()
        episodes.process(labelled, windows)
        hr.process(beats, b.end_seq)
        t5 = clock()
        parts["filter"] += t1 - t0
        parts["quality"] += t2 - t1
        parts["qrs"] += t3 - t2
        parts["classes"] += t4 - t3
        parts["rhythm+hr"] += t5 - t4
    return sum(parts.values()), parts


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--block-s", type=float, nargs="*", default=[1.0, 10.0])
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    signals = []
    for rec in sorted(p.stem for p in args.data.glob("*.hea")):
        r = wfdb.rdrecord(str(args.data / rec), channels=[0])
        signals.append((r.p_signal[:, 0].astype(np.float64), float(r.fs)))
    seconds = sum(x.size / fs for x, fs in signals)
    rows = []
    for block_s in args.block_s:
        total = staged_total = 0.0
        parts_sum: dict[str, float] = {}
        for x, fs in signals:
            total += chain_seconds(x, fs, block_s, staged=False)[0]
            t, parts = chain_seconds(x, fs, block_s)
            staged_total += t
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
        detail = ", ".join(f"{k} {seconds / v:,.0f}x" for k, v in parts_sum.items())
        rows.append(
            f"| {block_s:g} s | {seconds / total:,.0f} | {seconds / staged_total:,.0f} "
            f"| {detail} |"
        )
        print(rows[-1], flush=True)
    return report.publish(
        [
            *report.header(f", {seconds / 3600:.1f} h of ECG (one lead)."),
            "",
            "| block | whole chain, x real time per lead | the stages timed apart | per stage |",
            "|---|---|---|---|",
            *rows,
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
