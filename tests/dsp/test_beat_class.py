"""Beat classes: the decision table, VEBs of MIT-BIH 119 (bigeminy), chunked == whole."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.beat_class import BeatClassifier, ClassifiedBeats, Rules, decide
from dsp.beat_measure import FEATURES, Layout, _Beat, _hfs, measure_numpy
from dsp.beat_model import LEAF_UNIT, Forest, forest_for
from dsp.qrs import Beats, QrsDetector
from tests.support import blocks_of


def test_decision_table() -> None:
    assert decide(-3.0, 1.0, 0.02, True) == "N"
    assert decide(3.0, 1.0, 0.02, False) == "Q"  # not measurable wins
    assert decide(0.5, 1.0, 0.02, True) == "V"  # score above 0: V
    assert decide(3.0, 0.7, 0.02, True) == "V"  # V before S
    assert decide(-3.0, 0.7, 0.02, True) == "S"  # early in a regular rhythm
    assert decide(-3.0, 0.7, 0.2, True) == "N"  # AF: not judged S
    assert decide(-3.0, math.nan, math.nan, True) == "N"  # no timing yet
    assert decide(0.5, 1.0, 0.02, True, Rules(ventricular=1.0)) == "N"


def test_committed_forests_read_their_features() -> None:
    for leads in (1, 2):
        f = forest_for(leads)
        assert f.leads == leads and f.feature.shape[0] > 0
        assert int(f.feature.max()) < len(FEATURES[leads])
        # a typical normal beat (every feature missing: neutral values) is not V
        assert f.score(np.full(len(FEATURES[leads]), math.nan)) < 0


def test_weights_text_round_trip() -> None:
    """The weights file's one line per tree gives the forest back, rounded: thresholds to
    6 significant digits, leaves to the leaf unit; a committed forest exactly."""
    rng = np.random.default_rng(5)
    f = Forest(
        1, -1.25, rng.integers(0, 23, (20, 3)), rng.standard_normal((20, 3)) * 10,
        rng.standard_normal((20, 8)) * 0.3,
    )  # fmt: skip
    g = Forest.from_dict(f.to_dict())
    assert g.leads == 1 and g.base == f.base
    np.testing.assert_array_equal(g.feature, f.feature)
    np.testing.assert_allclose(g.threshold, f.threshold, rtol=1e-5)
    assert np.abs(g.leaf - f.leaf).max() <= LEAF_UNIT / 2 + 1e-12
    for leads in (1, 2):
        c = forest_for(leads)
        again = Forest.from_dict(c.to_dict())
        np.testing.assert_array_equal(again.threshold, c.threshold)
        np.testing.assert_array_equal(again.leaf, c.leaf)


def _two_leads(mv: np.ndarray) -> np.ndarray:
    """A second lead for tests: the first inverted, smaller, slightly delayed."""
    b = np.concatenate([np.zeros(3), -0.6 * mv[:-3]])
    return np.column_stack([mv, b])


def _run(mv: np.ndarray, fs: float, sizes: list[int], **kw) -> ClassifiedBeats:
    x = mv if mv.ndim == 2 else mv[:, None]
    det, cls = QrsDetector(fs), BeatClassifier(fs, x.shape[1], **kw)
    parts = []
    for b in blocks_of(x, fs, sizes):
        parts.append(cls.process(b, det.process(b)))
    last = det.finish()
    empty = next(blocks_of(x[:1], fs, [1]))
    parts += [cls.process(empty.slice_seq(0, 0), last), cls.finish()]
    return ClassifiedBeats.concat(parts, fs)


def _pairs(got: ClassifiedBeats, data: dict) -> list[tuple[str, str]]:
    ref, sym = data["beats"], data["symbols"]
    near = [int(np.abs(ref - s).argmin()) for s in got.seq.tolist()]
    return [(str(sym[k]), lab) for k, lab in zip(near, got.labels, strict=True)]


def test_ventricular_beats_of_119(mitdb119: dict) -> None:
    """119 has ventricular bigeminy: its V beats found, its N beats left N."""
    fs = mitdb119["fs"]
    got = _run(mitdb119["mv"], fs, [int(fs)])
    pairs = _pairs(got, mitdb119)
    v_ref = [lab for s, lab in pairs if s == "V"]
    n_ref = [lab for s, lab in pairs if s == "N"]
    assert v_ref and sum(lab == "V" for lab in v_ref) >= len(v_ref) - 1
    assert sum(lab == "V" for lab in n_ref) <= 1
    assert got.features is not None and got.scores is not None
    assert got.features.shape == (len(got), len(FEATURES[1])) and len(got.scores) == len(got)


def test_a_patch_worn_upside_down_gives_the_same_beats_and_classes(mitdb119: dict) -> None:
    """An inverted lead (a patch turned round on the chest) changes nothing: the detector
    and every feature read the QRS independently of its polarity."""
    fs = mitdb119["fs"]
    up = _run(mitdb119["mv"], fs, [int(fs)])
    down = _run(-mitdb119["mv"], fs, [int(fs)])
    assert np.array_equal(up.seq, down.seq) and up.labels == down.labels
    assert up.features is not None and down.features is not None
    assert np.allclose(up.features, down.features, equal_nan=True, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gain", [0.25, 4.0])
def test_a_smaller_or_taller_ecg_gives_the_same_classes(mitdb119: dict, gain: float) -> None:
    """A short patch bipole's small ECG, or a thin patient's tall one (at 4 x some of 119's
    beats pass the 8 mV a beat was once measurable up to): the same beats, the same classes."""
    fs = mitdb119["fs"]
    ref = _run(mitdb119["mv"], fs, [int(fs)])
    got = _run(gain * mitdb119["mv"], fs, [int(fs)])
    assert np.array_equal(ref.seq, got.seq) and ref.labels == got.labels
    assert "V" in ref.labels and "Q" not in got.labels


def test_two_lead_classifier_reads_the_second_lead(mitdb119: dict) -> None:
    fs = mitdb119["fs"]
    got = _run(_two_leads(mitdb119["mv"]), fs, [int(fs)], second_lead=1)
    assert got.features is not None and got.features.shape[1] == len(FEATURES[2])
    assert np.isfinite(got.features[20:, len(FEATURES[1])]).all()  # corr_b measured
    pairs = _pairs(got, mitdb119)
    v_ref = [lab for s, lab in pairs if s == "V"]
    assert v_ref and sum(lab == "V" for lab in v_ref) >= len(v_ref) - 1


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 1500), min_size=1, max_size=10), st.booleans())
def test_chunked_equals_whole(mitdb119: dict, sizes: list[int], two: bool) -> None:
    fs = mitdb119["fs"]
    mv = mitdb119["mv"][: int(15 * fs)]
    x, kw = (_two_leads(mv), {"second_lead": 1}) if two else (mv, {})
    whole = _run(x, fs, [len(x)], **kw)
    parts = _run(x, fs, sizes, **kw)
    assert parts.seq.tolist() == whole.seq.tolist() and parts.labels == whole.labels
    assert whole.features is not None and parts.features is not None
    np.testing.assert_array_equal(parts.features, whole.features)
    np.testing.assert_array_equal(parts.p_wave, whole.p_wave)


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


def _periodic_beats(fs: float, beats: int, leads: int = 1) -> tuple[np.ndarray, list[int]]:
    """A ring of identical beats (one period tiled, so every beat's windows are the same
    samples) and the columns of their R peaks."""
    period = int(0.8 * fs)
    t = np.arange(period) / fs
    one = (
        1.2 * np.exp(-(((t - 0.4) / 0.012) ** 2)) - 0.3 * np.exp(-(((t - 0.43) / 0.01) ** 2))
        + 0.25 * np.exp(-(((t - 0.7) / 0.04) ** 2))
    )  # fmt: skip
    ring = np.tile(one, beats + 2)[None, :].repeat(leads, axis=0) * np.arange(1, leads + 1)[:, None]
    return np.ascontiguousarray(ring), [period * (i + 1) + int(0.4 * fs) for i in range(beats)]


def test_hfs_is_the_slopes_high_frequency_share() -> None:
    """hfs: energy of the nominal first-lead slopes' differences ``lag`` apart over theirs."""
    lay = Layout.at(360.0, 1)
    n, lag, sh = lay.length, lay.lag, lay.shift
    assert lag == 3 and n > 2 * lag  # odd: an alternating vector's differences are +-2
    rows = np.zeros((1, 2 * sh + 1, n))
    rows[0, sh] = (-1.0) ** np.arange(n)
    rows[0, sh + 1] = 5.0  # other alignments are not read
    beat = _Beat(0, np.ones(1), np.zeros((1, 1)), np.zeros(1), False, rows, rows)
    assert _hfs(lay, beat) == 4.0 * (n - lag) / n
    rows[0, sh] = np.linspace(0.0, 1.0, n)  # a ramp: differences all lag / (n - 1)
    s = rows[0, sh]
    assert _hfs(lay, beat) == pytest.approx((n - lag) * (lag / (n - 1)) ** 2 / float(s @ s))
    rows[0, sh] = 0.0  # flat: no share
    assert math.isnan(_hfs(lay, beat))


@pytest.mark.parametrize("leads", [1, 2])
def test_hfs_z_against_the_reference_templates_mean(leads: int) -> None:
    """hfs_z (always the last feature) is NaN with no template yet, 1 for a beat identical
    to its reference once the reference has a mean of it, its ratio to that mean otherwise,
    and 1 when the reference has no mean yet; the mean is the template's last stat."""
    fs = 360.0
    lay = Layout.at(fs, leads)
    ring, rs = _periodic_beats(fs, 4, leads)
    state, out = lay.new_state(), np.full(lay.n_features, -1.0)
    col = FEATURES[leads].index("hfs_z")
    assert col == lay.n_features - 1 == (23 if leads == 1 else 34)
    stats = lay.views(state)[-1]
    assert measure_numpy(lay, state, ring, rs[0], 1.0, 0.0, out) >= 0
    assert math.isnan(out[col])  # no template to compare with
    h = float(stats[0, -1])  # the first beat's hfs, taken as is
    assert h > 0 and math.isfinite(h)
    measure_numpy(lay, state, ring, rs[1], 1.0, 0.0, out)
    assert out[col] == 1.0 and stats[0, -1] == h  # identical beats: the same hfs
    stats[0, -1] = 2.0 * h
    measure_numpy(lay, state, ring, rs[2], 1.0, 0.0, out)
    assert out[col] == 0.5  # read before the beat is folded in ...
    assert stats[0, -1] == 2.0 * h + (h - 2.0 * h) * (1.0 / 3.0)  # ... then folded, rate 1/3
    stats[0, -1] = math.nan
    measure_numpy(lay, state, ring, rs[3], 1.0, 0.0, out)
    assert out[col] == 1.0 and stats[0, -1] == h  # no mean: the beat's own hfs
