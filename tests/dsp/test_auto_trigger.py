"""Auto-trigger policy: minimum durations, merging, the day's quota keeping the most
significant; "now" is always the caller's."""

from __future__ import annotations

from types import MappingProxyType

from dsp.auto_trigger import AutoTriggerPolicy
from dsp.episodes import EpisodeEnded, EpisodeStarted, EpisodeUpdated

FS = 100.0
DAY = 86_400.0


def started(i: int, kind: str, start_s: float, end_s: float | None = None, hi: float = 0.0):
    end = None if end_s is None else int(end_s * FS)
    details = MappingProxyType({})
    return EpisodeStarted(i, kind, int(start_s * FS), end, 60.0, hi, 1.0, details, False)


def ended(c: EpisodeStarted, end_s: float) -> EpisodeEnded:
    return EpisodeEnded(
        c.id, c.kind, c.start_seq, int(end_s * FS), c.min_rate_bpm, c.max_rate_bpm,
        c.confidence, c.details, c.in_unusable_signal,
    )  # fmt: skip


def test_af_must_last_30_s() -> None:
    p = AutoTriggerPolicy(FS)
    short = started(1, "af", 100.0)
    assert p.update([short], 1000.0, int(100 * FS)) == []
    assert p.update([], 1010.0, int(115 * FS)) == []
    assert p.update([ended(short, 120.0)], 1020.0, int(121 * FS)) == []  # 20 s: never
    long = started(2, "af", 500.0)
    assert p.update([long], 1400.0, int(500 * FS)) == []
    [event] = p.update([], 1430.0, int(530 * FS))  # 30 s in, still open
    assert (event.reason, event.episode_id, event.start_seq) == ("af_onset", 2, 50_000)
    assert event.at == 1430.0
    assert p.update([EpisodeUpdated(*[getattr(long, f) for f in (
        "id", "kind", "start_seq", "end_seq", "min_rate_bpm", "max_rate_bpm", "confidence",
        "details", "in_unusable_signal")])], 1500.0, int(600 * FS)) == []  # fmt: skip


def test_vt_inside_af_joins_its_event_and_kinds_without_reason_are_ignored() -> None:
    p = AutoTriggerPolicy(FS)
    af = started(1, "af", 0.0)
    p.update([af], 0.0, 0)
    assert [e.reason for e in p.update([], 40.0, int(40 * FS))] == ["af_onset"]
    vt = started(2, "vt", 50.0, hi=160.0)
    assert p.update([vt, started(3, "bigeminy", 55.0)], 50.0, int(50 * FS)) == []
    assert p.merged == 1
    later = started(4, "vt", 900.0, hi=170.0)
    p.update([ended(af, 200.0)], 200.0, int(200 * FS))
    assert [e.reason for e in p.update([later], 900.0, int(900 * FS))] == ["vt"]


def test_three_per_day_keeping_the_longest_pauses() -> None:
    p = AutoTriggerPolicy(FS)
    events = []
    pauses = [(0, 3.1), (1000, 3.5), (2000, 3.2), (3000, 4.0), (4000, 3.0)]
    for i, (at, length) in enumerate(pauses):
        c = started(i + 1, "pause", at, at + length)
        events += p.update([c, ended(c, at + length)], float(at), int((at + length) * FS))
    assert [e.episode_id for e in events] == [1, 2, 3, 4]
    assert events[3].supersedes == 1 and p.suppressed == 1  # 4.0 s replaces 3.1 s; 3.0 s not
    c = started(9, "pause", DAY + 3010, DAY + 3013)  # a day after the quota's events
    [event] = p.update([c], DAY + 3010, int((DAY + 3013) * FS))
    assert event.supersedes is None


def test_brady_quota_keeps_the_slowest() -> None:
    p = AutoTriggerPolicy(FS, max_per_day=1, merge_s=0)
    a = EpisodeStarted(1, "brady", 0, None, 38.0, 40.0, 1.0, MappingProxyType({}), False)
    b = EpisodeStarted(2, "brady", 50_000, None, 30.0, 35.0, 1.0, MappingProxyType({}), False)
    assert [e.episode_id for e in p.update([a], 0.0, 1500)] == [1]
    p.update([ended(a, 100.0)], 100.0, 10_000)
    [event] = p.update([b], 600.0, 51_500)
    assert event.episode_id == 2 and event.supersedes == 1


def test_same_input_same_decisions() -> None:
    def decide() -> list:
        p = AutoTriggerPolicy(FS)
        out = []
        for i in range(6):
            c = started(i + 1, "tachy", 100.0 * i, None, hi=150.0 + i)
            out += p.update([c], 100.0 * i, int((100 * i + 20) * FS))
        return out

    assert decide() == decide()


def _pause(i: int, at: float, length: float, unusable: bool = False, **details: float):
    c = EpisodeStarted(
        i, "pause", int(at * FS), int((at + length) * FS), 60.0, 60.0, 1.0,
        MappingProxyType({"duration_s": length, **details}), unusable,
    )  # fmt: skip
    return [c, ended(c, at + length)]


def test_a_pause_while_the_electrodes_were_off_raises_nothing() -> None:
    """The device said its electrodes were off: a technical condition, not a pause."""
    p = AutoTriggerPolicy(FS)
    assert p.update(_pause(1, 0, 40.0, True, lead_off_s=38.0), 0.0, int(40 * FS)) == []
    assert p.lead_off == 1 and p.suppressed == 0
    [event] = p.update(_pause(2, 500, 3.5), 500.0, int(504 * FS))
    assert event.episode_id == 2 and not event.in_unusable_signal


def test_a_pause_in_unusable_signal_never_takes_a_real_ones_place() -> None:
    """With the day's quota full, a long 'pause' over lost signal ranks below every pause
    in usable signal, however long: it is the first replaced and replaces none."""
    p = AutoTriggerPolicy(FS, max_per_day=2)
    fired = p.update(_pause(1, 0, 30.0, True, signal_lost_s=29.0), 0.0, int(30 * FS))
    fired += p.update(_pause(2, 1000, 3.2), 1000.0, int(1004 * FS))
    assert [e.episode_id for e in fired] == [1, 2] and fired[0].in_unusable_signal
    [real] = p.update(_pause(3, 2000, 3.1), 2000.0, int(2004 * FS))
    assert real.supersedes == 1  # 3.1 s in usable signal over 30 s of lost signal
    assert p.update(_pause(4, 3000, 60.0, True, signal_lost_s=59.0), 3000.0, int(3060 * FS)) == []
    assert p.suppressed == 1
