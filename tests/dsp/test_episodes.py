"""Episodes from labelled beat trains: runs, patterns, pause, rates, AF, quality; chunking;
MIT-BIH development records (reference beats) when the shared data is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.beat_class import ClassifiedBeats
from dsp.episodes import (
    EpisodeChange,
    EpisodeEnded,
    EpisodeStarted,
    EpisodeTracker,
    EpisodeUpdated,
    RhythmLimits,
)
from dsp.quality import QualityWindow

FS = 250.0
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def train(parts: list[tuple[str, float, int]], rng=None) -> ClassifiedBeats:
    """Beats from (label, RR s, count) parts; RR jittered by ``rng`` (uniform 0.4-1.1 s
    where RR is 0, i.e. AF)."""
    rr, labels = [], []
    for label, rr_s, n in parts:
        for _ in range(n):
            v = rr_s if rr_s else rng.uniform(0.4, 1.1)
            rr.append(v)
            labels.append(label)
    seq = np.cumsum(np.round(np.array(rr) * FS)).astype(np.int64)
    rr_s = np.concatenate([[np.nan], np.diff(seq) / FS])
    return ClassifiedBeats(seq, tuple(labels), FS, rr_s)


def run(b: ClassifiedBeats, quality=(), **kw) -> tuple[list[EpisodeChange], EpisodeTracker]:
    t = EpisodeTracker(FS, RhythmLimits(**kw))
    out = t.process(b, quality)
    out += t.finish(int(b.seq[-1]))
    return out, t


def ended(changes: list[EpisodeChange], kind: str) -> list[EpisodeChange]:
    return [c for c in changes if isinstance(c, EpisodeEnded) and c.kind == kind]


def test_vt_run_couplet_triplet_counted() -> None:
    b = train(
        [("N", 0.8, 20), ("V", 0.5, 2), ("N", 0.8, 10), ("V", 0.45, 3), ("N", 0.8, 10),
         ("V", 0.4, 6), ("N", 0.8, 10)]
    )  # fmt: skip
    changes, t = run(b)
    vt = ended(changes, "vt")
    assert len(vt) == 2  # the triplet and the 6-beat run, both faster than 100 bpm
    run6 = vt[1]
    assert run6.end_seq - run6.start_seq == round(5 * 0.4 * FS)
    assert run6.details["beats"] == 6 and run6.details["rate_bpm"] == 150.0
    c = t.counts
    assert (c.couplets, c.triplets, c.v_runs, c.ventricular) == (1, 1, 2, 11)
    started = [x for x in changes if isinstance(x, EpisodeStarted) and x.kind == "vt"]
    assert [x.trigger_reason for x in started] == ["vt", "vt"]


def test_slow_ventricular_run_is_not_vt() -> None:
    changes, t = run(train([("N", 0.8, 20), ("V", 1.2, 6), ("N", 0.8, 10)]))
    assert not ended(changes, "vt") and t.counts.v_runs == 1


def test_bigeminy_and_trigeminy() -> None:
    big = train([("N", 0.8, 10)] + [("N", 1.0, 1), ("V", 0.5, 1)] * 10 + [("N", 0.8, 10)])
    (ep,) = ended(run(big)[0], "bigeminy")
    assert ep.details["ventricular_share"] == 1.0
    tri = train([("N", 0.8, 10)] + [("N", 1.0, 1), ("N", 0.8, 1), ("S", 0.5, 1)] * 8)
    changes = run(tri)[0]
    assert len(ended(changes, "trigeminy")) == 1 and not ended(changes, "bigeminy")


def test_svt_run() -> None:
    changes, t = run(train([("N", 0.8, 20), ("S", 0.4, 3), ("N", 0.4, 20), ("N", 0.8, 20)]))
    (ep,) = ended(changes, "svt")
    assert ep.details["beats"] == 23 and t.counts.s_runs == 1


def test_pause_brady_tachy_with_extremes() -> None:
    b = train([("N", 0.8, 20), ("N", 3.5, 1), ("N", 1.8, 20), ("N", 0.3, 30), ("N", 0.8, 10)])
    changes = run(b)[0]
    (pause,) = ended(changes, "pause")
    assert pause.details["duration_s"] == 3.5 and pause.trigger_reason == "pause"
    (brady,) = ended(changes, "brady")
    (tachy,) = ended(changes, "tachy")
    assert brady.min_rate_bpm == pytest.approx(60 / 1.8, abs=0.1)
    assert tachy.max_rate_bpm == pytest.approx(200.0, abs=0.1)


def test_af_and_af_with_rapid_rate() -> None:
    rng = np.random.default_rng(3)
    slow = train([("N", 0.8, 60), ("N", 0, 300), ("N", 0.8, 100)], rng)
    changes = run(slow)[0]
    assert len(ended(changes, "af")) == 1 and not ended(changes, "af_rvr")
    fast = train([("N", 0.8, 60), ("N", 0, 300), ("N", 0.8, 100)], rng)
    fast = ClassifiedBeats(fast.seq // 2, fast.labels, FS, fast.rr_s / 2)  # twice as fast
    changes = run(fast)[0]
    (af,) = ended(changes, "af")
    (rvr,) = ended(changes, "af_rvr")
    assert af.start_seq <= rvr.start_seq and rvr.end_seq <= af.end_seq
    assert af.details["mean_rate_bpm"] > 110 and af.max_rate_bpm > af.min_rate_bpm


def test_episode_in_unusable_signal_is_flagged() -> None:
    b = train([("N", 0.8, 20), ("V", 0.4, 8), ("N", 0.8, 20)])
    a, e = int(b.seq[19]), int(b.seq[28])
    bad = [
        QualityWindow(s, s + 250, np.zeros(1), np.zeros(1, bool), np.ones(1, bool), np.zeros(1))
        for s in range(a - a % 250, e + 250, 250)
    ]
    (noisy,) = ended(run(b, bad)[0], "vt")
    (clean,) = ended(run(b)[0], "vt")
    assert noisy.in_unusable_signal and not clean.in_unusable_signal


def test_updates_when_extremes_move() -> None:
    rng = np.random.default_rng(4)
    b = train([("N", 0.8, 40), ("N", 0, 200)], rng)
    faster = ClassifiedBeats(b.seq, b.labels, FS, b.rr_s)
    changes = run(faster)[0]
    af = [c for c in changes if c.kind == "af"]
    assert isinstance(af[0], EpisodeStarted) and isinstance(af[-1], EpisodeEnded)
    assert all(c.id == af[0].id for c in af)
    updates = [c for c in af if isinstance(c, EpisodeUpdated)]
    assert all(c.end_seq is None for c in updates)


def test_gap_ends_open_episodes() -> None:
    b = train([("N", 0.3, 30)])
    rr = b.rr_s.copy()
    rr[20] = np.nan  # beat 20 starts a new stream
    changes = run(ClassifiedBeats(b.seq, b.labels, FS, rr))[0]
    tachy = ended(changes, "tachy")
    assert len(tachy) == 2 and tachy[0].end_seq == b.seq[19]


def _mixed() -> ClassifiedBeats:
    rng = np.random.default_rng(21)
    return train(
        [("N", 0.8, 30), ("V", 0.4, 5), ("N", 0.8, 10), ("N", 0, 120), ("N", 0.8, 40),
         ("N", 4.0, 1), ("N", 1.0, 1), ("V", 0.5, 1), ("N", 1.0, 1), ("V", 0.5, 1),
         ("N", 1.0, 1), ("V", 0.5, 1), ("N", 1.0, 1), ("V", 0.5, 1), ("N", 0.8, 20),
         ("S", 0.4, 5), ("N", 0.8, 20), ("N", 0.25, 30)],
        rng,
    )  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_chunked_equals_whole(sizes: list[int]) -> None:
    b = _mixed()
    whole, _ = run(b)
    t = EpisodeTracker(FS)
    parts: list[EpisodeChange] = []
    pos, i = 0, 0
    while pos < len(b):
        n = sizes[i % len(sizes)]
        sl = slice(pos, pos + n)
        parts += t.process(ClassifiedBeats(b.seq[sl], b.labels[sl], FS, b.rr_s[sl]))
        pos, i = pos + n, i + 1
    parts += t.finish(int(b.seq[-1]))
    assert parts == whole
    kinds = {c.kind for c in whole}
    assert {"vt", "af", "pause", "bigeminy", "svt", "tachy"} <= kinds


def _reference(record: str) -> tuple[ClassifiedBeats, list[tuple[int, str]]]:
    wfdb = pytest.importorskip("wfdb")
    path = SHARED / "mitdb" / record
    if not path.with_suffix(".atr").exists():
        pytest.skip("shared MIT-BIH data not here")
    ann = wfdb.rdann(str(path), "atr")
    beats = ClassifiedBeats.from_annotations(ann.sample, ann.symbol, 360.0)
    notes = zip(ann.sample, ann.symbol, ann.aux_note, strict=True)
    rhythm = [(int(s), a.strip("\x00")) for s, y, a in notes if y == "+"]
    return beats, rhythm


def _mask(spans: list[tuple[int, int]], n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    for a, b in spans:
        m[a:b] = True
    return m


def _annotated(rhythm: list[tuple[int, str]], label: str, n: int) -> np.ndarray:
    ends = [s for s, _ in rhythm[1:]] + [n]
    return _mask([(s, e) for (s, a), e in zip(rhythm, ends, strict=True) if a == label], n)


def test_mitdb_119_bigeminy_and_trigeminy_where_annotated() -> None:
    """From the reference beats of 119: the patterns found lie where the annotators
    marked them, and cover most of it."""
    beats, rhythm = _reference("119")
    t = EpisodeTracker(360.0)
    changes = t.process(beats) + t.finish(int(beats.seq[-1]))
    n = int(beats.seq[-1]) + 1
    for kind, label in (("bigeminy", "(B"), ("trigeminy", "(T")):
        found = _mask([(e.start_seq, e.end_seq) for e in ended(changes, kind)], n)
        ref = _annotated(rhythm, label, n)
        assert (found & ref).sum() >= 0.8 * found.sum()
        assert (found & ref).sum() >= 0.5 * ref.sum()  # 119: 59 % of (B, 94 % of (T


def test_mitdb_207_vt_from_reference_beats() -> None:
    beats, rhythm = _reference("207")
    t = EpisodeTracker(360.0)
    changes = t.process(beats) + t.finish(int(beats.seq[-1]))
    vt = ended(changes, "vt")
    ref = [s for s, a in rhythm if a == "(VT"]
    assert ref and vt
    assert all(any(abs(e.start_seq - s) < 720 for e in vt) for s in ref)
    assert t.counts.couplets > 0


def _windows(end: int, bad: list[tuple[int, int]]) -> list[QualityWindow]:
    """1-s quality windows (250 samples) up to ``end``; those meeting a ``bad`` span are
    unusable."""
    out = []
    for s in range(0, end + 250, 250):
        unusable = any(a < s + 250 and s < b for a, b in bad)
        index = np.zeros(1) if unusable else np.ones(1)
        out.append(QualityWindow(s, s + 250, index, np.zeros(1, bool), np.zeros(1, bool), index))
    return out


def _quality_run(b: ClassifiedBeats, windows: list[QualityWindow]) -> list[EpisodeChange]:
    t = EpisodeTracker(FS, quality=True)
    return t.process(b, windows) + t.finish(int(b.seq[-1]))


def test_af_is_not_called_from_beats_in_unusable_signal() -> None:
    """Irregular beats in noise (false detections, missed beats) are no AF: their
    intervals are left out; the same beats in usable signal are AF."""
    b = train([("N", 0.8, 60), ("N", 0, 300), ("N", 0.8, 60)], np.random.default_rng(5))
    noise = [(int(b.seq[60]), int(b.seq[360]))]
    assert len(ended(_quality_run(b, _windows(int(b.seq[-1]), [])), "af")) == 1
    assert ended(_quality_run(b, _windows(int(b.seq[-1]), noise)), "af") == []


def test_af_holds_through_a_stretch_of_noise() -> None:
    b = train([("N", 0.8, 60), ("N", 0, 400), ("N", 0.8, 80)], np.random.default_rng(6))
    noise = [(int(b.seq[200]), int(b.seq[260]))]  # 60 beats of noise inside the AF
    (af,) = ended(_quality_run(b, _windows(int(b.seq[-1]), noise)), "af")
    (clean,) = ended(_quality_run(b, _windows(int(b.seq[-1]), [])), "af")
    assert af.start_seq == clean.start_seq and abs(af.end_seq - clean.end_seq) < 10 * FS


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(50, 3000), min_size=1, max_size=12), st.integers(0, 400))
def test_quality_waiting_chunked_equals_whole(sizes: list[int], lag: int) -> None:
    """Blocks of any size, the quality windows of each block as they complete and the
    beats ``lag`` samples (plus a beat) behind, as a classifier gives them: the same
    changes as all at once."""
    b = _mixed()
    end = int(b.seq[-1]) + 1
    bad = [(int(b.seq[20]), int(b.seq[40])), (int(b.seq[90]), int(b.seq[110]))]
    windows = _windows(end, bad)
    whole = _quality_run(b, windows)
    t = EpisodeTracker(FS, quality=True)
    parts: list[EpisodeChange] = []
    pos, i, wi, bi = 0, 0, 0, 0
    while pos < end:
        pos = min(pos + sizes[i % len(sizes)], end)
        i += 1
        done = [w for w in windows[wi:] if w.end_seq <= pos]
        wi += len(done)
        ready = int(np.searchsorted(b.seq, pos - lag, side="left"))
        ready = max(min(ready, len(b) - 1), bi)  # one beat behind: its class waits
        sl = slice(bi, ready)
        parts += t.process(ClassifiedBeats(b.seq[sl], b.labels[sl], FS, b.rr_s[sl]), done)
        bi = ready
    sl = slice(bi, len(b))
    parts += t.process(ClassifiedBeats(b.seq[sl], b.labels[sl], FS, b.rr_s[sl]), windows[wi:])
    parts += t.finish(int(b.seq[-1]))
    assert parts == whole
    assert any(c.in_unusable_signal for c in whole)


def _flat_windows(end: int, flat: list[tuple[int, int]], noisy: list[tuple[int, int]]):
    """1-s windows up to ``end``: inside ``flat`` spans no signal at all (flat); inside
    ``noisy`` ones unusable but not flat (the silence of a real pause reads so)."""
    out = []
    for s in range(0, end + 250, 250):
        lost = any(a <= s and s + 250 <= b for a, b in flat)
        bad = lost or any(a <= s and s + 250 <= b for a, b in noisy)
        index = np.zeros(1) if bad else np.ones(1)
        out.append(QualityWindow(s, s + 250, index, np.full(1, lost), np.zeros(1, bool), index))
    return out


def test_a_pause_over_lost_signal_is_flagged_and_a_quiet_one_is_not() -> None:
    """Seconds with no signal at all inside a pause: beats may have been there, unseen.
    The QRS-free silence of a real pause (unusable by its index, not flat) is a pause."""
    b = train([("N", 0.8, 20), ("N", 6.0, 1), ("N", 0.8, 20)])
    a, e = int(b.seq[19]), int(b.seq[20])
    (lost,) = ended(_quality_run(b, _flat_windows(e + 5000, [(a, e)], [])), "pause")
    assert lost.in_unusable_signal and 5.0 <= lost.details["signal_lost_s"] <= 6.0
    (quiet,) = ended(_quality_run(b, _flat_windows(e + 5000, [], [(a, e)])), "pause")
    assert not quiet.in_unusable_signal and "signal_lost_s" not in quiet.details
    assert quiet.details["duration_s"] == lost.details["duration_s"] == 6.0


def test_a_pause_while_the_device_said_its_electrodes_were_off() -> None:
    b = train([("N", 0.8, 20), ("N", 6.0, 1), ("N", 0.8, 20)])
    a = int(b.seq[19])
    t = EpisodeTracker(FS, quality=True)
    first = ClassifiedBeats(b.seq[:20], b.labels[:20], FS, b.rr_s[:20])
    rest = ClassifiedBeats(b.seq[20:], b.labels[20:], FS, b.rr_s[20:])
    out = t.process(first, _windows(a + 250, []))
    t.contact(a + 250, in_contact=False)
    t.contact(a + 1250, in_contact=True)
    out += t.process(rest, _windows(int(b.seq[-1]), [])[len(_windows(a + 250, [])) :])
    out += t.finish(int(b.seq[-1]))
    (pause,) = ended(out, "pause")
    assert pause.details["lead_off_s"] == 4.0 and pause.in_unusable_signal
    assert "signal_lost_s" not in pause.details
