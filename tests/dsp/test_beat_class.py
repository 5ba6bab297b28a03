"""Beat classes: the decision table, VEBs of MIT-BIH 119 (bigeminy), chunked == whole."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.beat_class import BeatClassifier, BeatFeatures, ClassifiedBeats, decide
from dsp.qrs import Beats, QrsDetector
from tests.support import blocks_of


def _features(**kw: float) -> BeatFeatures:
    base = dict(
        correlation=0.99,
        amplitude_ratio=1.0,
        prematurity=1.0,
        pause=1.0,
        irregularity=0.02,
        template_prematurity=1.0,
        measurable=True,
    )
    return BeatFeatures(**{**base, **kw})


def test_decision_table() -> None:
    assert decide(_features()) == "N"
    assert decide(_features(measurable=False)) == "Q"
    other = {"correlation": 0.2, "template_correlation": 0.3}  # not the dominant shape
    assert decide(_features(**other, template_spread=2.0)) == "V"  # and wide
    assert decide(_features(**other, template_amplitude=3.0)) == "V"  # much larger
    assert decide(_features(**other, prematurity=0.6, pause=1.4)) == "V"  # PVC timing
    assert decide(_features(**other, template_prematurity=0.7)) == "V"  # a shape that comes early
    assert decide(_features(**other)) == "N"  # a second normal shape, on time, as narrow
    # one odd beat of a normal template is not enough
    assert decide(_features(correlation=0.2, template_spread=2.0)) == "N"
    # a less different shape needs two signs
    near = {"correlation": 0.85, "template_correlation": 0.8}
    assert decide(_features(**near, template_spread=2.0)) == "N"
    assert decide(_features(**near, template_spread=2.0, template_prematurity=0.7)) == "V"
    assert decide(_features(prematurity=0.7)) == "S"  # dominant shape, early, regular
    assert decide(_features(prematurity=0.7, irregularity=0.2)) == "N"  # AF: not judged S


def _run(mv: np.ndarray, fs: float, sizes: list[int]) -> ClassifiedBeats:
    det, cls = QrsDetector(fs), BeatClassifier(fs)
    parts = []
    for b in blocks_of(mv, fs, sizes):
        parts.append(cls.process(b, det.process(b)))
    last = det.finish()
    empty = next(blocks_of(mv[:1], fs, [1]))
    parts += [cls.process(empty.slice_seq(0, 0), last), cls.finish()]
    return ClassifiedBeats.concat(parts, fs)


def test_ventricular_beats_of_119(mitdb119: dict) -> None:
    """119 has ventricular bigeminy: its V beats found, its N beats left N."""
    fs = mitdb119["fs"]
    got = _run(mitdb119["mv"], fs, [int(fs)])
    ref, sym = mitdb119["beats"], mitdb119["symbols"]
    near = [int(np.abs(ref - s).argmin()) for s in got.seq.tolist()]
    pairs = [(str(sym[k]), lab) for k, lab in zip(near, got.labels, strict=True)]
    v_ref = [lab for s, lab in pairs if s == "V"]
    n_ref = [lab for s, lab in pairs if s == "N"]
    assert v_ref and sum(lab == "V" for lab in v_ref) >= len(v_ref) - 1
    assert sum(lab == "V" for lab in n_ref) <= 1
    assert len(got) == len(got.features) and got.ventricular.sum() >= len(v_ref) - 1


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 1500), min_size=1, max_size=10))
def test_chunked_equals_whole(mitdb119: dict, sizes: list[int]) -> None:
    fs = mitdb119["fs"]
    mv = mitdb119["mv"][: int(15 * fs)]
    whole = _run(mv, fs, [mv.size])
    parts = _run(mv, fs, sizes)
    assert parts.seq.tolist() == whole.seq.tolist() and parts.labels == whole.labels


def test_missing_samples_make_q_not_an_error() -> None:
    fs = 250.0
    cls = BeatClassifier(fs)
    x = np.zeros((int(4 * fs), 1), np.float32)
    blocks = list(blocks_of(x, fs, [250]))
    cls.process(blocks[0], Beats.empty(fs))
    beats = Beats(np.array([50, 700]), fs, np.ones(2), np.array([math.nan, 2.6]), np.zeros(2))
    out = cls.process(blocks[3], beats)  # blocks 1 and 2 never arrived
    out2 = cls.finish()
    assert out.labels + out2.labels == ("Q", "Q")
