"""Cost of putting a patch's blocks back in order while it backfills an hour away.

Usage::

    python3 benchmarks/reorder.py [--hole-s 3600] [--live-s 240]

A 250 Hz patch was away for ``--hole-s`` seconds. Once it is back, live blocks of
0.1 s keep arriving (10 per second) while the missed hour streams in as 20-sample
backfill pieces (19 per live block), so analysis holds up to ``--live-s`` seconds of
live samples until the hole is filled. Reports CPU time per
:meth:`gateway.pipeline.reorder.BlockReorderer.push`.
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
from gateway.pipeline.reorder import BlockReorderer

FS = 250.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hole-s", type=float, default=3600.0)
    ap.add_argument("--live-s", type=float, default=240.0)
    args = ap.parse_args()
    live, piece = np.zeros((25, 1), np.float32), np.zeros((20, 1), np.float32)
    hole = int(args.hole_s * FS)
    reorder = BlockReorderer(max_hold_s=300.0)
    reorder.start_at(0)
    live_seq, backfilled, pushes, released = hole, 0, 0, 0
    t0 = time.process_time()
    for _ in range(int(args.live_s * 10)):
        released += len(reorder.push(SampleBlock(live, FS, live_seq / FS, live_seq, ("ECG",))))
        live_seq += live.shape[0]
        pushes += 1
        for _ in range(19):
            if backfilled < hole:
                block = SampleBlock(piece, FS, backfilled / FS, backfilled, ("ECG",))
                released += len(reorder.push(block))
                backfilled += piece.shape[0]
                pushes += 1
    cpu = time.process_time() - t0
    return report.publish(
        [
            *report.header(),
            "",
            f"{pushes} pushes ({backfilled} samples backfilled, at most "
            f"{reorder.stats.held_max} held), {released} blocks released in order: "
            f"{cpu:.2f} s CPU, {cpu / pushes * 1e6:.1f} µs per push.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
