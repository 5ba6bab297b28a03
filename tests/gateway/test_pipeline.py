"""DevicePipeline: live chunks, periodic strips, post-symptom events, stage strips, gaps."""

from __future__ import annotations

import itertools
import json

import numpy as np

from core.block import SampleBlock
from core.events import BloodPressure, ButtonPressed, Gap, LeadOff, StageChanged
from gateway.payloads import build_strip_body, facts_json
from gateway.pipeline import DevicePipeline, LiveChunk, PipelineSettings, StripReady
from sim.synth import EcgSynth

T0 = 1_790_000_000.0


def _cfg(**over) -> PipelineSettings:
    base = {
        "strip_period_s": 20.0,
        "strip_duration_s": 10.0,
        "event_pre_s": 5.0,
        "event_post_s": 5.0,
        "live_block_s": 1.0,
    }
    return PipelineSettings(**{**base, **over})


def _press(source: str, t: float, seq: int, press_id: int) -> ButtonPressed:
    return ButtonPressed(source=source, time=t, seq=seq, press_id=press_id)


def _feed(
    p: DevicePipeline, fs: float, seconds: float, block: int, leads=("ECG",), skip=(), st_v5=0.0
):
    synth = EcgSynth(fs, leads, hr_bpm=75, seed=5)
    synth.set_st_vector(st_v5 * EcgSynth.lead_dipole("V5"))  # ST shift in V5, mV
    out = []
    n_blocks = int(seconds * fs) // block
    for i in range(n_blocks):
        x = synth.generate(block)
        if i in skip:
            continue
        b = SampleBlock(x, fs, T0 + i * block / fs, i * block, leads, "dev")
        out.extend(p.on_block(b))
    return out


def test_periodic_strips_and_live() -> None:
    fs = 130.0
    p = DevicePipeline("patch1", _cfg())
    out = _feed(p, fs, 45, 13)
    strips = [o for o in out if isinstance(o, StripReady)]
    live = [o for o in out if isinstance(o, LiveChunk)]
    assert [s.block.seq for s in strips] == [0, int(20 * fs)]
    for s in strips:
        assert s.block.n == int(10 * fs)
        assert s.kind == "strip" and s.trigger.type == "periodic"
        assert abs(s.facts.heart_rate_bpm - 75) < 3
        assert s.facts.recorded_samples == s.block.n
        assert s.facts.quality.index_min > 0.5 and s.facts.quality.flat_leads == ()
        assert s.facts.rhythm_episodes == () and s.facts.beats_in_unusable_signal == ()
    assert len(live) >= 40
    seqs = [c.block.seq for c in live]
    assert seqs == sorted(seqs)
    assert all(a.block.end_seq == b.block.seq for a, b in itertools.pairwise(live))


def test_button_event_window_and_gap_reported() -> None:
    fs = 130.0
    p = DevicePipeline("patch1", _cfg())
    out = _feed(p, fs, 11, 13)
    press_seq = int(10 * fs)
    out += p.on_event(_press("patch1", T0 + 10, press_seq, 1))
    p.on_gap(Gap("patch1", int(11 * fs), int(11 * fs) + 13, T0 + 11, T0 + 11.1, "ble", True))
    synth = EcgSynth(fs, ("ECG",), seed=9)
    for i in range(int(11 * fs) // 13, int(25 * fs) // 13):
        if i * 13 == int(11 * fs):
            continue
        b = SampleBlock(synth.generate(13), fs, T0 + i * 13 / fs, i * 13, ("ECG",), "patch1")
        out.extend(p.on_block(b))
    events = [o for o in out if isinstance(o, StripReady) and o.kind == "event"]
    assert len(events) == 1
    ev = events[0]
    assert ev.block.seq == press_seq - int(5 * fs) and ev.block.n == int(10 * fs)
    assert ev.trigger.type == "button" and ev.trigger.seq == press_seq
    assert len(ev.gaps) == 1 and ev.gaps[0].n_samples == 13
    assert np.isnan(ev.block.samples[int(6 * fs) : int(6 * fs) + 13]).all()
    assert ev.facts.recorded_samples == ev.block.n - 13


def test_stage_end_strip_has_stage_and_pressure() -> None:
    fs = 500.0
    leads = ("I", "II", "V5")
    p = DevicePipeline("cart1", _cfg())
    out = p.on_event(StageChanged(source="cart1", time=T0, seq=0, stage=1, name="Bruce 1"))
    out += _feed(p, fs, 8, 50, leads, st_v5=-0.1)
    out += p.on_event(
        BloodPressure(source="cart1", time=T0 + 7, systolic_mmhg=140, diastolic_mmhg=80)
    )
    out += p.on_event(StageChanged(source="cart1", time=T0 + 8, seq=int(8 * fs), stage=2))
    out += p.flush()
    stage = [o for o in out if isinstance(o, StripReady) and o.trigger.type == "stage_end"]
    assert len(stage) == 1
    s = stage[0]
    assert s.trigger.stage.stage == 1 and s.facts.blood_pressure.systolic_mmhg == 140
    assert s.block.n == int(8 * fs) and s.block.leads == leads
    st = s.facts.st  # measured on the strip's median beat: V5 depressed by 0.1 mV
    assert st["beats"] >= 8 and abs(st["st60_mv"]["V5"] + 0.1) <= 0.02
    json.dumps(facts_json(s.facts))


def _blocks(fs: float, seconds: float, block: int) -> list[SampleBlock]:
    synth = EcgSynth(fs, ("ECG",), hr_bpm=70, seed=11)
    return [
        SampleBlock(synth.generate(block), fs, T0 + i * block / fs, i * block, ("ECG",), "p")
        for i in range(int(seconds * fs) // block)
    ]


def _strips(out) -> list[StripReady]:
    return [o for o in out if isinstance(o, StripReady)]


def _with_hole(p: DevicePipeline, blocks: list[SampleBlock], fs: float, hole_s: tuple) -> list:
    """Feed every block except those starting in ``[hole_s[0], hole_s[1])`` seconds."""
    out = []
    for b in blocks:
        if not hole_s[0] * fs <= b.seq < hole_s[1] * fs:
            out += p.on_block(b)
    return out


def test_backfilled_samples_reach_strips_and_events_as_if_never_missed() -> None:
    """A 12 s hole backfilled 20 s later: strips and the event equal the in-order run."""
    fs = 250.0
    blocks = _blocks(fs, 70, 25)
    press = _press("p", T0 + 30, int(30 * fs), 1)

    def run(order: list[SampleBlock], wait_s: float) -> tuple[list, DevicePipeline]:
        p = DevicePipeline("p", _cfg(backfill_wait_s=wait_s))
        out = []
        for b in order:
            out += p.on_block(b)
            if b.seq == int(40 * fs):
                out += p.on_event(press)
        return out + p.flush(), p

    expected, _ = run(blocks, 0.0)
    hole = [b for b in blocks if 25 * fs <= b.seq < 37 * fs]
    rest = [b for b in blocks if not 25 * fs <= b.seq < 37 * fs]
    at = next(i for i, b in enumerate(rest) if b.seq >= 57 * fs)
    scrambled = rest[:at] + hole + rest[at:]  # the patch backfills 20 s after the hole
    got, p = run(scrambled, 60.0)
    want, have = _strips(expected), _strips(got)
    assert [(s.kind, s.block.seq, s.block.n) for s in have] == [
        (s.kind, s.block.seq, s.block.n) for s in want
    ]
    assert any(s.kind == "event" for s in have)
    for a, b in zip(want, have, strict=True):
        np.testing.assert_array_equal(a.block.samples, b.block.samples)
        assert a.facts.beats_seq == b.facts.beats_seq  # QRS saw one continuous stream
        assert b.facts.recorded_samples == b.block.n
    assert p.reorder.stats.filled == len(hole) * 25 and p.reorder.stats.late == 0
    live = [o for o in got if isinstance(o, LiveChunk)]
    assert all(c.block.seq >= int(37 * fs) or c.block.end_seq <= int(25 * fs) for c in live)


def test_lost_range_releases_analysis_at_once() -> None:
    fs = 250.0
    blocks = _blocks(fs, 40, 25)
    p = DevicePipeline("p", _cfg(backfill_wait_s=600.0))
    out = _with_hole(p, blocks, fs, (5, 6))
    assert _strips(out) == [] and p.reorder.held_samples > 0  # waiting for the backfill
    out += p.on_gap(Gap("p", int(5 * fs), int(6 * fs), T0 + 5, T0 + 6, "not in memory", True))
    (strip,) = _strips(out)[:1]
    assert strip.block.seq == 0 and len(strip.gaps) == 1
    assert strip.facts.recorded_samples == strip.block.n - int(fs)


def test_a_strip_waiting_for_its_beats_when_the_stream_jumps_keeps_its_samples() -> None:
    """The strip at 20-30 s still waits for its beats to settle when the next block comes an
    hour later (a hole nothing will fill): it goes out whole, with its beats (before, the
    jump pruned its samples from the history and the strip was silently dropped)."""
    fs = 250.0
    blocks = _blocks(fs, 32, 25)
    p = DevicePipeline("p", _cfg())
    out = [o for b in blocks for o in p.on_block(b)]
    assert [s.block.seq for s in _strips(out)] == [0]  # 20-30 s: beats not final yet
    hour = int(3600 * fs)
    out += p.on_block(SampleBlock(blocks[0].samples, fs, T0 + 3600, hour, ("ECG",), "p"))
    strip = _strips(out)[-1]
    assert strip.block.seq == int(20 * fs) and strip.facts.recorded_samples == strip.block.n
    assert len(strip.facts.beats_seq) >= 10 and strip.facts.quality is not None


def test_backfill_slower_than_the_wait_still_completes_strips_and_the_event() -> None:
    """A 40 s hole whose backfill comes only after analysis gave up waiting (10 s): the
    strips and the post-symptom event inside the hole are held aside and sent complete,
    samples as recorded, facts measured on the window; nothing is sent with a hole."""
    fs = 250.0
    blocks = _blocks(fs, 120, 25)
    press = _press("p", T0 + 40, int(40 * fs), 7)
    in_hole = [b for b in blocks if 20 * fs <= b.seq < 60 * fs]
    rest = [b for b in blocks if not 20 * fs <= b.seq < 60 * fs]
    at = next(i for i, b in enumerate(rest) if b.seq >= 90 * fs)
    order = rest[:at] + in_hole + rest[at:]  # backfilled 30 s after the link came back

    def run(blocks_in: list, wait_s: float, told_s: float) -> tuple[list, DevicePipeline]:
        p = DevicePipeline("p", _cfg(backfill_wait_s=wait_s))
        out = []
        for b in blocks_in:
            out += p.on_block(b)
            if b.seq == int(told_s * fs):
                out += p.on_event(press)
        return out + p.flush(), p

    expected, _ = run(blocks, 0.0, 41.0)
    got, p = run(order, 10.0, 61.0)  # the press notification comes after the reconnect
    assert p.reorder.stats.gave_up == 1 and p.reorder.stats.late == len(in_hole) * 25
    want = {(s.kind, s.block.seq): s for s in _strips(expected)}
    have = {(s.kind, s.block.seq): s for s in _strips(got)}
    assert sorted(have) == sorted(want)
    late = [k for k, s in have.items() if s.trigger.analysed_late]
    held = [("event", int(35 * fs)), ("strip", int(20 * fs)), ("strip", int(40 * fs))]
    assert sorted(late) == held
    assert p.counters["analysed_late"] == 3
    for key, s in have.items():
        np.testing.assert_array_equal(s.block.samples, want[key].block.samples)
        assert s.facts.recorded_samples == s.block.n and s.gaps == ()
        ref = np.array(want[key].facts.beats_seq)
        got_beats = np.array(s.facts.beats_seq)
        assert len(got_beats) == len(ref)  # the fresh detector finds the same beats
        assert np.abs(got_beats - ref).max() <= int(0.01 * fs)
        assert abs(s.facts.heart_rate_bpm - 70) < 3
    event = have[("event", int(35 * fs))]
    assert event.trigger.press_id == 7 and event.trigger.pre_available_s is None


def test_late_samples_declared_lost_release_what_was_held_and_make_no_empty_strip() -> None:
    """A hole (25-52 s) analysis gave up waiting for, then declared lost: the strip partly
    inside it (20-30 s) and the event wholly inside it (30-40 s) were held and go out as
    they stand, with the gap; the strip wholly inside it (40-50 s) holds no sample and is
    no strip at all (as if the loss had been known in time)."""
    fs = 250.0
    blocks = _blocks(fs, 80, 25)
    p = DevicePipeline("p", _cfg(backfill_wait_s=5.0))
    out = _with_hole(p, blocks[: int(60 * fs) // 25], fs, (25, 52))
    out += p.on_event(_press("p", T0 + 35, int(35 * fs), 3))
    out += _with_hole(p, blocks[int(60 * fs) // 25 :], fs, (25, 52))
    assert not [s for s in _strips(out) if 20 * fs <= s.block.seq < 60 * fs]  # held
    out += p.on_gap(Gap("p", int(25 * fs), int(52 * fs), T0 + 25, T0 + 52, "overwritten", True))
    out += p.flush()
    got = {(s.kind, s.block.seq): s for s in _strips(out)}
    assert ("strip", int(40 * fs)) not in got and p._s.windows.created_late == 0
    strip, event = got[("strip", int(20 * fs))], got[("event", int(30 * fs))]
    assert strip.trigger.analysed_late and strip.facts.recorded_samples == int(5 * fs)
    assert event.trigger.analysed_late and event.facts.recorded_samples == 0
    assert [g.reason for g in strip.gaps] == [g.reason for g in event.gaps] == ["overwritten"]
    assert event.facts.quality is None and event.facts.beats_seq == ()  # nothing measured
    strips = sorted(k for k in got if k[0] == "strip")
    assert strips == [("strip", int(t * fs)) for t in (0, 20, 60)]
    body = build_strip_body(
        event.block,
        gateway_id="gw1",
        kind=event.kind,
        trigger=event.trigger,
        facts=event.facts,
        gaps=list(event.gaps),
        created=T0,
    )
    json.dumps(body, allow_nan=False)  # storable as is


def test_a_failing_st_measurement_never_costs_the_event(monkeypatch) -> None:
    """Whatever goes wrong in a measurement, the post-symptom event still goes out, with the
    error in its facts and counted."""
    import gateway.pipeline.facts as facts

    def broken(*args, **kwargs):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(facts, "st_levels", broken)
    fs = 130.0
    p = DevicePipeline("p1", _cfg())
    out = _feed(p, fs, 12, 13)
    out += p.on_event(_press("p1", T0 + 6, int(6 * fs), 1))
    out += p.flush()
    events = [o for o in out if isinstance(o, StripReady) and o.kind == "event"]
    assert len(events) == 1
    assert "synthetic failure" in events[0].facts.st["error"]
    assert p.counters["st_errors"] >= 1


def _four_silent_seconds() -> tuple[float, np.ndarray]:
    """A minute of synthetic sinus rhythm at 250 Hz, 4 s of flat zeros, 50 s more."""
    fs = 250.0
    synth = EcgSynth(fs, ("ECG",), hr_bpm=70, seed=3)
    x = np.concatenate(
        [synth.generate(int(60 * fs)), np.zeros((int(4 * fs), 1)), synth.generate(int(50 * fs))]
    )
    return fs, x


def test_a_pause_raises_an_auto_event_around_its_onset() -> None:
    """4 s without a beat: an event the gateway raises by itself (trigger.type auto, reason
    pause) with the configured window around the pause's onset, its facts measured."""
    fs, x = _four_silent_seconds()
    p = DevicePipeline("p", _cfg(auto_pre_s=20.0, auto_post_s=10.0))
    out = []
    for i in range(0, len(x), 25):
        out += p.on_block(SampleBlock(x[i : i + 25], fs, T0 + i / fs, i, ("ECG",), "p"))
    out += p.flush()
    (event,) = [o for o in out if isinstance(o, StripReady) and o.kind == "event"]
    t = event.trigger
    assert t.type == "auto" and t.reason == "pause"
    assert 60 * fs - fs <= t.seq <= 60 * fs + 0.2 * fs  # the last beat before the silence
    assert event.block.seq == t.seq - int(20 * fs) and event.block.n == int(30 * fs)
    assert t.details["episode"].kind == "pause"
    # flat silence: beats may have been there unseen; marked, still raised (no lead-off)
    assert t.details["episode"].details["signal_lost_s"] >= 3.0
    assert event.facts.beat_labels and len(event.facts.beat_labels) == len(event.facts.beats_seq)
    body = build_strip_body(
        event.block,
        gateway_id="g",
        kind="event",
        trigger=t,
        facts=event.facts,
        gaps=list(event.gaps),
        created=T0,
    )
    assert body["trigger"]["reason"] == "pause" and body["trigger"]["details"]["episode"]
    json.dumps(body, allow_nan=False)


def test_a_pause_while_the_electrodes_were_off_raises_no_event() -> None:
    """The same 4 s of silence, but the patch said its electrode was off meanwhile: no
    pause of the heart, no auto event (the lead-off is reported as such); counted."""
    fs, x = _four_silent_seconds()
    p = DevicePipeline("p", _cfg(auto_pre_s=20.0, auto_post_s=10.0))
    out = []
    contact = {int(60 * fs): ("ECG",), int(64 * fs): ()}
    for i in range(0, len(x), 25):
        if i in contact:
            out += p.on_event(LeadOff(source="p", time=T0 + i / fs, seq=i, leads=contact[i]))
        out += p.on_block(SampleBlock(x[i : i + 25], fs, T0 + i / fs, i, ("ECG",), "p"))
    out += p.flush()
    assert [o for o in out if isinstance(o, StripReady) and o.kind == "event"] == []
    assert p.stats()["pauses_lead_off"] == 1 and p.counters["auto_events"] == 0


def test_an_episode_early_in_a_stream_gets_the_window_that_exists() -> None:
    """A pause 8 s into the stream with 45 s wanted before it: the event starts at the
    stream's first sample and says how much was available, also when cut at shutdown."""
    fs = 250.0
    synth = EcgSynth(fs, ("ECG",), hr_bpm=70, seed=5)
    x = np.concatenate(
        [synth.generate(int(8 * fs)), np.zeros((int(4 * fs), 1)), synth.generate(int(10 * fs))]
    )
    p = DevicePipeline("p", _cfg(auto_pre_s=45.0, auto_post_s=30.0))
    out = []
    for i in range(0, len(x), 25):
        out += p.on_block(SampleBlock(x[i : i + 25], fs, T0 + i / fs, i, ("ECG",), "p"))
    out += p.flush()
    (event,) = [o for o in out if isinstance(o, StripReady) and o.kind == "event"]
    assert event.block.seq == 0 and event.block.end_seq == len(x)
    assert event.trigger.pre_available_s == round(event.trigger.seq / fs, 3)
    assert event.trigger.truncated_at_shutdown


def test_patient_presses_are_never_limited_but_auto_events_are() -> None:
    fs = 250.0
    synth = EcgSynth(fs, ("ECG",), hr_bpm=70, seed=4)
    parts = []
    for _ in range(5):  # five pauses within minutes
        parts += [synth.generate(int(30 * fs)), np.zeros((int(4 * fs), 1))]
    parts.append(synth.generate(int(40 * fs)))
    x = np.concatenate(parts)
    p = DevicePipeline("p", _cfg(auto_pre_s=5.0, auto_post_s=5.0, auto_merge_s=0.0))
    out = []
    for i in range(0, len(x), 50):
        b = SampleBlock(x[i : i + 50], fs, T0 + i / fs, i, ("ECG",), "p")
        out += p.on_block(b)
        if i % int(20 * fs) == 0:
            out += p.on_event(_press("p", T0 + i / fs, i, i))
    out += p.flush()
    events = [o for o in out if isinstance(o, StripReady) and o.kind == "event"]
    auto = [e for e in events if e.trigger.type == "auto"]
    presses = [e for e in events if e.trigger.type == "button"]
    # at most three per reason a day: a fourth only if longer, naming the one it replaces
    assert len(auto) >= 3
    assert all("supersedes_episode" in e.trigger.details for e in auto[3:])
    assert len(presses) == len(range(0, len(x), int(20 * fs)))  # every press, never limited


def test_a_lost_range_ahead_in_one_advance_queues_no_strip_inside_it() -> None:
    """A final gap of an hour that begins after the next periodic strip: one advance
    over it queues the strips around it, none inside (work does not grow with the gap)."""
    from gateway.pipeline.windows import WindowScheduler

    fs, hour = 250.0, 3600 * 250
    s = PipelineSettings(strip_period_s=2.0, strip_duration_s=1.0)
    w = WindowScheduler(s, fs, 0)
    w.lost(1000, 1000 + hour)
    w.advance(1000 + hour + 1000)
    strips = w.ready(1000 + hour + 1000, 0)
    assert w.created == len(strips) <= 6
    assert not [p for p in strips if p.first_seq >= 1000 and p.end_seq <= 1000 + hour]
    assert [p.first_seq for p in strips][:2] == [0, 500]  # before the loss as usual
    w.advance(1000 + hour + 3000)  # and periodic again after it: 2,000 samples, 4 strips
    assert w.created == len(strips) + 4


def test_an_event_before_any_sample_is_held_starts_at_sample_0() -> None:
    """A press (or an episode) a few samples into a stream while nothing is held yet (a
    patch's memory still on its way): its window starts at sample 0, not before it, and
    says how much came before the press. (Found by the patch fuzz: a window starting
    at a negative sample number made the pipeline raise when its late samples came.)"""
    from gateway.pipeline.windows import WindowScheduler

    fs = 250.0
    w = WindowScheduler(_cfg(), fs, 0)
    w.button(_press("p", T0, 100, 1), 100, None)
    w.auto("pause", 50, T0, {}, None)
    w.stage_ended(StageChanged(source="p", time=T0, stage="1"), None, 40, T0, None)
    windows = w.pending
    assert [p.first_seq for p in windows] == [0, 0, 0]
    assert [p.trigger.pre_available_s for p in windows[:2]] == [0.4, 0.2]


def test_a_window_with_no_sample_builds_no_detector(monkeypatch) -> None:
    """A strip wholly over a loss (held for backfill, then given up) is nothing to
    measure: no detector is built for it (that was the whole cost, per window)."""
    from gateway.pipeline import analysis

    def boom(*_a, **_k):
        raise AssertionError("a detector was built for an empty window")

    monkeypatch.setattr(analysis, "QrsDetector", boom)
    block = SampleBlock(np.full((250, 2), np.nan, dtype=np.float32), 250.0, 0.0, 0, ("I", "II"))
    got = analysis.analyse_window(block, np.zeros(250, dtype=bool), 0, PipelineSettings())
    assert got == analysis.WindowAnalysis([], [], [], [])


def test_a_cart_is_classified_on_lead_ii_and_v1_a_patch_on_its_lead() -> None:
    """The two-lead beat forest (VEB Se/+P 93.6/93.6 held out, against 90.8/91.1 on one
    lead) runs where a stream has V1 beside its QRS lead; a patch keeps one lead."""
    from drivers.cart_protocol import LEADS_12
    from gateway.pipeline.analysis import StreamAnalysis, beat_classifier, qrs_lead

    cart = StreamAnalysis(500.0, LEADS_12, PipelineSettings())
    assert cart.classifier.leads == (LEADS_12.index("II"), LEADS_12.index("V1"))
    assert StreamAnalysis(250.0, ("ECG",), PipelineSettings()).classifier.leads == (0,)
    assert beat_classifier(250.0, ("V1", "V5"), qrs_lead(("V1", "V5"))).leads == (1, 0)
    assert beat_classifier(250.0, ("V1",), 0).leads == (0,)


def test_a_press_before_the_first_sample_waits_for_it_and_is_never_dropped() -> None:
    """A device that kept a press while no gateway listened may notify it before any ECG:
    the press has no sample number and nothing to date it by yet. It becomes an event
    once the first block arrives (placed by its date: 3 s before the stream's first
    sample, so 2 s of its 5 s after the press were recorded); one before it is kept too."""
    fs = 250.0
    p = DevicePipeline("p", _cfg())
    out = p.on_event(ButtonPressed(source="p", time=T0 - 3.0, seq=None, press_id=1))
    out += p.on_event(ButtonPressed(source="p", time=T0 + 4.0, seq=None, press_id=2))
    for b in _blocks(fs, 30, 25):
        out += p.on_block(b)
    out += p.flush()
    events = sorted((s for s in _strips(out) if s.kind == "event"), key=lambda s: s.block.seq)
    assert [e.trigger.press_id for e in events] == [1, 2]
    early, later = events
    assert early.block.seq == 0 and early.block.n == int(2 * fs)  # what exists after it
    assert early.trigger.seq == int(-3 * fs)
    assert later.trigger.seq == int(4 * fs)  # its 5 s before, from the first sample on
    assert later.block.seq == 0 and later.block.n == int(9 * fs)
