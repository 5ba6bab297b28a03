"""One device's processing, from received blocks to what gets transmitted (pure).

The app feeds :class:`DevicePipeline` what a driver reports and takes back what to
send; it never does I/O, so it is tested with arrays. Its parts, each in its module:

- :mod:`~gateway.pipeline.live`: the head of the stream, display-filtered, in chunks;
- :mod:`~gateway.pipeline.reorder`: samples put back in order (a patch backfills holes
  while live samples keep coming), waiting up to ``backfill_wait_s`` for a hole;
- :mod:`~gateway.pipeline.analysis`: QRS, heart rate, quality and rhythm, in order;
- :mod:`~gateway.pipeline.windows`: when periodic strips, post-symptom events (CPT
  93012) and stage-end strips (CPT 93017) are due;
- :mod:`~gateway.pipeline.late`: windows whose samples came after analysis moved on;
- :mod:`~gateway.pipeline.facts`: the typed trigger and facts of each strip.

Strips and events carry the samples *as recorded* (unfiltered), NaN where a sample
never arrived, with every missing range listed as a gap. The gateway never interprets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from core.block import SampleBlock
from core.counters import Counters
from core.events import (
    BloodPressure,
    ButtonPressed,
    DeviceEvent,
    Gap,
    LeadOff,
    RecordingStarted,
    StageChanged,
)
from core.ranges import runs_of, subtract
from dsp.auto_trigger import AutoTrigger
from dsp.episodes import EpisodeChange
from dsp.quality import QualityWindow
from gateway.pipeline.analysis import StreamAnalysis, analyse_window, qrs_lead
from gateway.pipeline.facts import StripFacts, Trigger, episode_facts, measure_strip
from gateway.pipeline.late import LateWindow, LateWindows
from gateway.pipeline.live import LiveChunk, LiveChunker
from gateway.pipeline.reorder import BlockReorderer
from gateway.pipeline.settings import PipelineSettings
from gateway.pipeline.windows import PendingWindow, WindowScheduler

__all__ = ["DevicePipeline", "PipelineOutput", "StripReady"]

_GAPS_KEPT = 1000
_UNPLACED_MAX = 256  # presses kept before the first block (a patient presses a few)


@dataclass(frozen=True, slots=True)
class StripReady:
    """A rhythm strip or post-symptom event, complete and ready to be stored and sent."""

    kind: Literal["strip", "event"]
    block: SampleBlock
    trigger: Trigger
    facts: StripFacts
    gaps: tuple[Gap, ...]


PipelineOutput = LiveChunk | StripReady


class _Stream:
    """The parts that need the stream's rate and leads, built once from its first block."""

    def __init__(self, block: SampleBlock, settings: PipelineSettings) -> None:
        self.fs, self.leads = block.fs, block.leads
        self.live = LiveChunker(block.fs, block.n_leads, settings)
        self.analysis = StreamAnalysis(block.fs, block.leads, settings)
        self.windows = WindowScheduler(settings, block.fs, block.seq)
        self.late = LateWindows(block.fs)


class DevicePipeline:
    """Live chunks, periodic strips and event strips for one device.

    Parameters
    ----------
    device_id
        Device the blocks come from.
    settings
        Windows, filters, rhythm limits and the backfill wait.
    """

    def __init__(self, device_id: str, settings: PipelineSettings) -> None:
        self.device_id = device_id
        self.settings = settings
        self.reorder = BlockReorderer(settings.backfill_wait_s)
        self.counters = Counters(
            "blocks samples strips events analysed_late st_errors new_streams auto_events",
            "owed_strips_made owed_strips_never_made",  # of the streams before this one
            "presses_dropped",  # more than _UNPLACED_MAX presses before any sample
            "pauses_lead_off",  # pauses while the electrodes were off: no auto event
        )
        self._s: _Stream | None = None
        self._gaps: deque[Gap] = deque(maxlen=_GAPS_KEPT)
        self._head: SampleBlock | None = None  # newest live block: times of presses
        self._judged_s = self._usable_s = 0.0  # quality seconds not yet taken
        self._stage: StageChanged | None = None
        self._stage_start: int | None = None
        self._stages: deque[tuple[int, StageChanged]] = deque(maxlen=64)  # (first seq, stage)
        self._bp: BloodPressure | None = None
        self._bps: deque[tuple[int, BloodPressure]] = deque(maxlen=64)  # (seq, measurement)
        self._lead_off: LeadOff | None = None
        self._unplaced: list[ButtonPressed] = []  # presses waiting for a first block

    def stats(self) -> dict[str, int]:
        """The counters now, the owed periodic strips (:mod:`~gateway.pipeline.windows`:
        strips of a hole analysis gave up waiting for, made when late samples fill it, or
        never made when none come in time) counted over every stream so far."""
        out = self.counters.snapshot()
        if self._s is not None:
            out["owed_strips_made"] += self._s.windows.created_late
            out["owed_strips_never_made"] += self._s.windows.owed_dropped
            out["pauses_lead_off"] += self._s.analysis.pauses_lead_off
        return out

    def take_quality_s(self) -> tuple[float, float]:
        """Seconds of signal judged for quality since the last call and how many of them
        were usable (analysable): the study's progress (the caller keeps the totals)."""
        taken = (self._judged_s, self._usable_s)
        self._judged_s = self._usable_s = 0.0
        return taken

    @property
    def heart_rate_bpm(self) -> float | None:
        return None if self._s is None else self._s.analysis.heart_rate_bpm

    # --- inputs -----------------------------------------------------------------------------
    def on_block(self, block: SampleBlock) -> list[PipelineOutput]:
        """Take one received block; return what is ready to send."""
        if block.n == 0:
            return []
        out: list[PipelineOutput] = []
        s = self._s
        if s is not None and (block.fs != s.fs or block.leads != s.leads):
            # a new stream (the device changed its rate or leads): what the old one owed
            # goes out as it stands, then everything starts afresh
            out += self.flush()
            self.counters.add("new_streams")
            self.counters.add("owed_strips_made", s.windows.created_late)
            self.counters.add("owed_strips_never_made", s.windows.owed_dropped)
            self.counters.add("pauses_lead_off", s.analysis.pauses_lead_off)
            self.reorder = BlockReorderer(self.settings.backfill_wait_s)
            s = None
        if s is None:
            s = self._s = _Stream(block, self.settings)
        self.counters.add("blocks")
        self.counters.add("samples", block.n)
        if s.live.is_new(block):
            self._head = block
            if self.settings.live_enabled:
                out += s.live.add(block, s.analysis.heart_rate_bpm)
        for p in s.windows.owed(block.seq, block.end_seq):  # late samples in a hole
            self._hold_late(s, p, _unlost([(p.first_seq, p.end_seq)], self._gaps))
        if s.late:
            s.late.take(block)
            out += self._send_late(s)
        for ordered in self.reorder.push(block):
            self._analyse(s, ordered, out)
        if self._unplaced and self._head is not None:  # presses from before the first block
            held, self._unplaced = self._unplaced, []
            for press in held:
                self._on_button(press)
        return out

    def on_event(self, event: DeviceEvent) -> list[PipelineOutput]:
        """Take a device event (button, stage, blood pressure, lead-off, recording start)."""
        if isinstance(event, ButtonPressed):
            self._on_button(event)
        elif isinstance(event, StageChanged):
            self._on_stage(event)
        elif isinstance(event, BloodPressure):
            self._bp = event
            seq = self._seq_at(event)
            if seq is not None:
                self._bps.append((seq, event))
        elif isinstance(event, LeadOff):
            self._lead_off = event
            self._contact(event)
        elif isinstance(event, RecordingStarted):
            # a patch with memory: analysis starts at its oldest sample, which arrives
            # by backfill after the first live ones
            self.reorder.start_at(event.first_seq)
        return [] if self._s is None else self._flush_ready(self._s)

    def on_gap(self, gap: Gap) -> list[PipelineOutput]:
        """Samples that did not arrive (shown in the strips that overlap them); a final
        gap also tells analysis to stop waiting for them."""
        self._gaps.append(gap)
        s = self._s
        if not gap.final or s is None:
            return []
        out: list[PipelineOutput] = []
        s.windows.lost(gap.first_seq, gap.end_seq)
        s.late.lost(gap.first_seq, gap.end_seq)
        out += self._send_late(s)
        for ordered in self.reorder.lost(gap.first_seq, gap.end_seq):
            self._analyse(s, ordered, out)
        return out

    def flush(self) -> list[PipelineOutput]:
        """At shutdown: the partial live chunk and every begun window, cut short."""
        s = self._s
        if s is None:
            return []
        out: list[PipelineOutput] = list(s.live.flush(s.analysis.heart_rate_bpm))
        for ordered in self.reorder.flush():
            self._analyse(s, ordered, out)
        end = s.analysis.end_seq
        if end is not None:
            out += self._strips(s, s.windows.cut_short(end), set_aside=False)
        s.late.cut_short()
        return out + self._send_late(s, force=True)

    # --- analysis and windows ---------------------------------------------------------------
    def _analyse(self, s: _Stream, block: SampleBlock, out: list[PipelineOutput]) -> None:
        for t in s.analysis.add(block):
            self._auto(s, t, block)
        for w in s.analysis.new_windows:
            seconds = (w.end_seq - w.first_seq) / s.fs
            self._judged_s += seconds
            self._usable_s += seconds if w.usable else 0.0
        end = s.analysis.end_seq or block.end_seq
        s.windows.advance(end, self.reorder.gave_up_ranges)
        out += self._flush_ready(s)

    def _auto(self, s: _Stream, t: AutoTrigger, block: SampleBlock) -> None:
        """An episode began that the alarm-fatigue rules let through: an event around it."""
        episode = s.analysis.episode(t.episode_id)
        details: dict[str, Any] = {"significance": round(t.significance, 3)}
        if episode is not None:
            details["episode"] = episode_facts(episode)
        if t.supersedes is not None:
            details["supersedes_episode"] = t.supersedes
        self.counters.add("auto_events")
        when = float(block.time_of(t.start_seq))
        s.windows.auto(t.reason, t.start_seq, when, details, s.analysis.history.first_seq)

    def _contact(self, event: LeadOff) -> None:
        """The device's electrode contact, for the rhythm analysis (a pause while the
        analysed lead was off is no pause of the heart): off when that lead is named."""
        s, seq = self._s, self._seq_at(event)
        if s is None or seq is None:
            return  # before any sample: no beat yet for a pause to begin at
        lead = s.leads[qrs_lead(s.leads)]
        s.analysis.tracker.contact(seq, in_contact=lead not in event.leads)

    def _seq_at(self, event: DeviceEvent) -> int | None:
        if event.seq is not None:
            return int(event.seq)
        b = self._head
        if b is None:
            return None
        return b.seq + int(round((event.time - b.start) * b.fs))

    def _on_button(self, press: ButtonPressed) -> None:
        """An event window around the press; one that cannot be placed yet (no sample
        number, and no live block to date it by) waits for the first block: a patient's
        press is never dropped."""
        seq = self._seq_at(press)
        if seq is None or self._s is None:
            if len(self._unplaced) < _UNPLACED_MAX:
                self._unplaced.append(press)
            else:
                self.counters.add("presses_dropped")
            return
        self._s.windows.button(press, seq, self._s.analysis.history.first_seq)

    def _on_stage(self, event: StageChanged) -> None:
        seq = self._seq_at(event)
        s = self._s
        if seq is not None and self._stage is not None and s is not None:
            s.windows.stage_ended(self._stage, self._stage_start, seq, event.time, self._bp)
        self._stage, self._stage_start = event, seq
        if seq is not None:
            self._stages.append((seq, event))

    def _stage_at(self, seq: int) -> StageChanged | None:
        """The stage in progress at sample ``seq`` (a strip belongs to the stage it shows)."""
        current = None
        for first, stage in self._stages:
            if first <= seq:
                current = stage
        return current if self._stages else self._stage

    def _bp_at(self, seq: int) -> BloodPressure | None:
        """The latest blood pressure measured at or before sample ``seq`` (a strip shows
        what was known by its end, not a measurement made after it)."""
        if not self._bps:
            return self._bp
        current = None
        for at, bp in self._bps:
            if at <= seq:
                current = bp
        return current

    def _flush_ready(self, s: _Stream) -> list[PipelineOutput]:
        end = s.analysis.end_seq
        if end is None:
            return []
        out = self._strips(s, s.windows.ready(end, s.analysis.settle), set_aside=True)
        return out + self._send_late(s)

    def _strips(
        self, s: _Stream, windows: list[PendingWindow], *, set_aside: bool
    ) -> list[PipelineOutput]:
        out: list[PipelineOutput] = []
        for p in windows:
            if set_aside and self._set_aside(s, p):
                continue
            win = s.analysis.history.window(p.first_seq, p.end_seq)
            if win is None:
                continue
            if p.kind == "event":  # at once, measured on its own window
                have = np.ones(win.block.n, dtype=bool)
                for a, b in win.missing:
                    have[a - p.first_seq : b - p.first_seq] = False
                alone = analyse_window(win.block, have, s.analysis.qrs.lead, self.settings)
                beats, labels = alone.beats, alone.labels
                quality, episodes = alone.quality, s.analysis.episodes()
            else:
                beats, labels = s.analysis.beats_in(p.first_seq, p.end_seq)
                quality, episodes = list(s.analysis.windows), s.analysis.episodes()
            out.append(self._strip(p, win.block, win.missing, beats, labels, quality, episodes))
        return out

    # --- windows whose samples come late -----------------------------------------------------
    def _set_aside(self, s: _Stream, p: PendingWindow) -> bool:
        """If analysis gave up waiting for part of ``p``'s window, hold it for the late
        samples instead of sending it with a hole; True if it was held."""
        awaited = [
            (max(a, p.first_seq), min(b, p.end_seq))
            for a, b in self.reorder.gave_up_ranges
            if a < p.end_seq and b > p.first_seq
        ]
        awaited = _unlost(awaited, self._gaps)
        if awaited:
            self._hold_late(s, p, awaited)
        return bool(awaited)

    def _hold_late(self, s: _Stream, p: PendingWindow, awaited: list[tuple[int, int]]) -> None:
        """Hold ``p`` for the samples of ``awaited`` (what the history has of it copied)."""
        win = s.analysis.history.window(p.first_seq, p.end_seq)
        assert self._head is not None  # a window exists only after a block arrived
        head = s.analysis.end_seq or p.end_seq
        s.late.hold(LateWindow.of(p, win, len(s.leads), self._head, awaited, head))

    def _send_late(self, s: _Stream, force: bool = False) -> list[PipelineOutput]:
        """The held windows that are complete or waited long enough (or all: force)."""
        if not s.late:
            return []
        out: list[PipelineOutput] = []
        for w in s.late.due(s.analysis.end_seq, force=force):
            p = w.pending
            block = w.block(s.fs, s.leads, self.device_id)
            alone = analyse_window(block, w.have, s.analysis.qrs.lead, self.settings)
            p.trigger = p.trigger.but(analysed_late=True)
            self.counters.add("analysed_late")
            missing = runs_of(~w.have, p.first_seq)
            args = (alone.beats, alone.labels, alone.quality, alone.episodes)
            out.append(self._strip(p, block, missing, *args))
        return out

    # --- one strip ---------------------------------------------------------------------------
    def _strip(
        self,
        p: PendingWindow,
        block: SampleBlock,
        missing: tuple[tuple[int, int], ...],
        beats: list[int],
        labels: list[str],
        quality: list[QualityWindow],
        episodes: list[EpisodeChange],
    ) -> StripReady:
        """A strip of ``block`` (the window, NaN in the ``missing`` runs) and its facts."""
        facts, st_failed = measure_strip(block, missing, beats, labels, quality, episodes)
        if st_failed:
            self.counters.add("st_errors")
        facts = replace(
            facts,
            stage=self._stage_at(block.end_seq - 1) if p.trigger.type != "stage_end" else None,
            blood_pressure=p.blood_pressure or self._bp_at(block.end_seq - 1),
            lead_off=self._lead_off,
        )
        kind: Literal["strip", "event"] = "event" if p.kind == "event" else "strip"
        self.counters.add("events" if kind == "event" else "strips")
        return StripReady(kind, block, p.trigger, facts, self._gaps_in(block, missing))

    def _gaps_in(self, block: SampleBlock, missing: tuple[tuple[int, int], ...]) -> tuple[Gap, ...]:
        """The reported gaps overlapping ``block``, plus its missing runs nobody reported
        (e.g. dropped by the history bound): nothing is missing silently."""
        first, end = block.seq, block.end_seq
        gaps = [g for g in self._gaps if g.end_seq > first and g.first_seq < end]
        reported = {(g.first_seq, g.end_seq) for g in gaps}
        for a, b in missing:
            covered = any(g.first_seq <= a and b <= g.end_seq for g in gaps)
            if not covered and (a, b) not in reported:
                t_a, t_b = float(block.time_of(a)), float(block.time_of(b))
                gaps.append(Gap(self.device_id, a, b, t_a, t_b, reason="not recorded"))
        return tuple(gaps)


def _unlost(ranges: list[tuple[int, int]], gaps: Iterable[Gap]) -> list[tuple[int, int]]:
    """``ranges`` less what the final ``gaps`` declared lost (nothing to wait for there)."""
    for g in gaps:
        if g.final:
            ranges = subtract(ranges, g.first_seq, g.end_seq)
    return ranges
