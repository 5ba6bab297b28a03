"""ST levels on the median beat: known shifts recovered per lead, robust to wander, noise,
gaps and ectopy; nothing reported when nothing can be measured."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.qrs import detect_beats
from dsp.st import st_levels
from sim.synth import EcgSynth

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500.0


def _record(st_v5: float, hr: float, seconds: float = 10.0, **noise) -> tuple:
    synth = EcgSynth(FS, LEADS, hr_bpm=hr, seed=7, **noise)
    synth.set_st_vector(st_v5 * EcgSynth.lead_dipole("V5"))
    x = synth.generate(int(seconds * FS)).astype(np.float64)
    return x, synth.st_shift_mv()


@pytest.mark.parametrize("hr", [60.0, 100.0, 150.0])
def test_shift_recovered_in_every_lead(hr: float) -> None:
    """The ST shift the synthetic dipole puts in each lead, measured against the same
    beats without it (what the T wave adds at J + 60 ms cancels out)."""
    base, _ = _record(0.0, hr)
    shifted, truth = _record(-0.15, hr)
    before = st_levels(base, FS, detect_beats(base, FS), LEADS)
    after = st_levels(shifted, FS, detect_beats(shifted, FS), LEADS)
    assert before is not None and after is not None
    np.testing.assert_allclose(after.st60_mv - before.st60_mv, truth, atol=0.015)
    assert abs(truth[LEADS.index("V5")] + 0.15) < 1e-9
    assert 0.02 <= after.j_after_r_s <= 0.08 and 0.03 <= after.iso_before_r_s <= 0.12


def test_isoelectric_segment_at_rest_is_zero() -> None:
    x, _ = _record(0.0, 70.0)
    st = st_levels(x, FS, detect_beats(x, FS), LEADS)
    assert st is not None and np.abs(st.st60_mv).max() < 0.02 and st.beats >= 9


def test_baseline_wander_noise_and_a_gap() -> None:
    x, truth = _record(-0.1, 90.0, seconds=20.0, wander_mv=0.5, noise_mv=0.03)
    x[4000:4600] = np.nan  # 1.2 s lost
    r = detect_beats(np.nan_to_num(x), FS)
    st = st_levels(x, FS, r, LEADS)
    assert st is not None
    # the beats near the hole are left out, the others measured against their own PR level
    assert st.beats <= len(r) - 2
    facts = st.as_facts()
    got = np.array([facts["st60_mv"][n] for n in LEADS])
    clean, _ = _record(0.0, 90.0, seconds=20.0)
    ref = st_levels(clean, FS, detect_beats(clean, FS), LEADS)
    assert ref is not None
    np.testing.assert_allclose(got - ref.st60_mv, truth, atol=0.03)


def test_ectopic_beats_barely_move_the_median() -> None:
    x, _ = _record(-0.1, 75.0, seconds=20.0)
    r = detect_beats(x, FS)
    spiked = x.copy()
    for k in r[3::6]:  # every 6th beat distorted after its QRS (a different morphology)
        spiked[k + 20 : k + 120] += 0.4
    a = st_levels(x, FS, r, LEADS)
    b = st_levels(spiked, FS, r, LEADS)
    assert a is not None and b is not None
    np.testing.assert_allclose(b.st60_mv, a.st60_mv, atol=0.02)


def test_nothing_to_measure_is_none() -> None:
    x, _ = _record(0.0, 70.0)
    r = detect_beats(x, FS)
    assert st_levels(x, FS, r[:2], LEADS) is None  # too few beats
    assert st_levels(np.zeros_like(x), FS, r, LEADS) is None  # flat: no QRS, no J point
    assert st_levels(np.full_like(x, np.nan), FS, r, LEADS) is None  # nothing recorded
    noise = np.random.default_rng(0).standard_normal(x.shape)
    st = st_levels(noise, FS, r, LEADS)  # garbage in: a number or None, never an exception
    assert st is None or np.isfinite(st.st60_mv).all()


def test_real_ecg(mitdb119: dict) -> None:
    """MIT-BIH 119 (excerpt, see tests/data): one lead at 360 Hz, a measurable ST."""
    x, fs = mitdb119["mv"], mitdb119["fs"]
    st = st_levels(x, fs, detect_beats(x, fs), ("MLII",))
    assert st is not None and st.beats >= 20
    assert np.isfinite(st.st60_mv).all() and abs(float(st.st60_mv[0])) < 0.3
    assert 0.02 <= st.j_after_r_s <= 0.14
