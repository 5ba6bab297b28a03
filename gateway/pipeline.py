"""One device's processing, from received blocks to what gets transmitted.

Pure and synchronous: the app feeds it what a driver reports and takes back
outputs to send. It never does I/O, so it is tested with arrays.

- live ECG: received blocks are batched into chunks of about ``live.block_s``
  seconds (filtered for display with the configured band and mains notch);
- periodic rhythm strips: ``strips.duration_s`` seconds every
  ``strips.period_s`` seconds, the first one as soon as one is recorded;
- post-symptom events (CPT 93012): the recorded samples from ``events.pre_s``
  before to ``events.post_s`` after each button press;
- stress tests (CPT 93017): a strip of the last ``strips.duration_s`` seconds of
  each stage when the cart reports the next stage, tagged with stage and blood
  pressure.

Strips and events carry the samples *as recorded* (unfiltered), NaN where a
sample never arrived, plus facts measured on them (beats, heart rate, gaps).
The gateway never interprets.

Blocks may arrive out of order (a patch backfilling what a dropped connection
missed while live samples keep coming). Live ECG shows what arrives at the head
of the stream at once (older, backfilled samples are not "live"); analysis
(QRS, rhythm, quality, strips, events) takes the samples in order through a
:class:`~gateway.reorder.BlockReorderer`, waiting up to ``backfill_wait_s`` of
stream for a hole to be filled or declared lost, so strips and events contain
the backfilled samples. When a backfill is slower than that wait (a patch back
after a day away), analysis moves on; a strip or event whose window it moved past
is then held aside and completed from the late samples as they arrive (its facts
measured on the window alone, ``trigger.analysed_late``), or sent as it stands once
the missing samples are declared lost, ``late_wait_s`` of stream has passed, or at
shutdown. A press while the patient was away still yields its strip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from drivers.events import DeviceEvent, Gap
from dsp.block import SampleBlock, concat_blocks
from dsp.filters import EcgFilter
from dsp.heart_rate import HeartRateTracker
from dsp.qrs import Beats, QrsDetector
from dsp.quality import USABLE, QualityTracker, QualityWindow
from dsp.rhythm import RhythmEpisode, RhythmTracker
from dsp.st import st_levels
from gateway.config import GatewayConfig
from gateway.history import SampleHistory, runs_of
from gateway.reorder import BlockReorderer

__all__ = ["DevicePipeline", "LiveChunk", "PipelineOutput", "StripReady"]

# Leads the QRS detector prefers, best first (lead II shows the tallest R in most people).
_QRS_LEAD_PREFERENCE = ("II", "ECG", "I", "V5", "V2")
_MAX_BEATS_KEPT = 4096
_LATE_WAIT_S = 6 * 3600.0  # longest a strip waits for late samples, seconds of stream
_LATE_MAX = 256  # strips waiting for late samples at once (oldest sent as they stand)


@dataclass(frozen=True, slots=True)
class LiveChunk:
    """About ``live.block_s`` seconds of display-filtered ECG for the live topic."""

    block: SampleBlock
    hr_bpm: float | None


@dataclass(frozen=True, slots=True)
class StripReady:
    """A rhythm strip or post-symptom event, complete and ready to be stored and sent."""

    kind: Literal["strip", "event"]
    block: SampleBlock
    trigger: dict[str, Any]
    facts: dict[str, Any]
    gaps: tuple[Gap, ...]


PipelineOutput = LiveChunk | StripReady


@dataclass(slots=True)
class _Pending:
    kind: Literal["strip", "event"]
    first_seq: int
    end_seq: int
    trigger: dict[str, Any]
    extra_facts: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Late:
    """A strip or event whose window analysis moved past before all its samples came."""

    pending: _Pending
    samples: np.ndarray  # (n, leads) float32, NaN where nothing arrived (yet)
    have: np.ndarray  # bool (n,): samples that arrived
    awaited: list[tuple[int, int]]  # ranges still expected (neither arrived nor lost)
    start: float  # UTC POSIX s of the window's first sample
    head_seq: int  # the analysis head when the window was set aside

    def take(self, block: SampleBlock) -> None:
        """Copy the part of ``block`` inside the window."""
        first = self.pending.first_seq
        lo, hi = max(block.seq, first), min(block.end_seq, self.pending.end_seq)
        if lo < hi:
            self.samples[lo - first : hi - first] = block.samples[lo - block.seq : hi - block.seq]
            self.have[lo - first : hi - first] = True

    def lost(self, first_seq: int, end_seq: int) -> None:
        """``[first_seq, end_seq)`` will never arrive: stop waiting for it."""
        self.awaited = _minus(self.awaited, first_seq, end_seq)

    @property
    def complete(self) -> bool:
        first = self.pending.first_seq
        return all(self.have[a - first : b - first].all() for a, b in self.awaited)


class DevicePipeline:
    """Live chunks, periodic strips and event strips for one device.

    Parameters
    ----------
    device_id
        Device the blocks come from.
    cfg
        Gateway configuration (dsp, strips, events, live sections are used).
    backfill_wait_s
        How much stream, seconds, analysis holds while waiting for missing samples the
        device may still backfill (0 for devices without memory: nothing is held).
    """

    def __init__(self, device_id: str, cfg: GatewayConfig, backfill_wait_s: float = 0.0) -> None:
        self.device_id = device_id
        self.cfg = cfg
        self.reorder = BlockReorderer(backfill_wait_s)
        self._live_next: int | None = None
        self._fs: float | None = None
        self._leads: tuple[str, ...] = ()
        self._filter: EcgFilter | None = None
        self._qrs: QrsDetector | None = None
        self._hr = HeartRateTracker()
        self._quality: QualityTracker | None = None
        self._quality_windows: list[QualityWindow] = []
        self._rhythm: RhythmTracker | None = None
        self._history: SampleHistory | None = None
        self._live: list[SampleBlock] = []
        self._pending: list[_Pending] = []
        self._next_periodic: int | None = None
        self._beats_seq: list[int] = []
        self._gaps: list[Gap] = []
        self._last_hr: float | None = None
        self._stage: dict[str, Any] | None = None
        self._stage_start_seq: int | None = None
        self._bp: dict[str, Any] | None = None
        self._lead_off: dict[str, Any] | None = None
        self._last_block: SampleBlock | None = None
        self._late: list[_Late] = []
        self.counters = {
            "blocks": 0,
            "samples": 0,
            "beats": 0,
            "strips": 0,
            "events": 0,
            "analysed_late": 0,  # strips and events completed from late samples
            "st_errors": 0,  # ST measurements that failed (the strip went out without)
        }

    # --- setup ------------------------------------------------------------
    def _start(self, block: SampleBlock) -> None:
        self._fs = block.fs
        self._leads = block.leads
        lead = next((block.leads.index(n) for n in _QRS_LEAD_PREFERENCE if n in block.leads), 0)
        self._filter = EcgFilter(
            block.fs, block.n_leads, band=self.cfg.dsp.band, mains_hz=self.cfg.dsp.mains_hz
        )
        self._qrs = QrsDetector(block.fs, lead=lead)
        ev = self.cfg.events
        keep = max(ev.pre_s + ev.post_s, self.cfg.strips.duration_s) + 10.0 + self._qrs.latency_s
        self._history = SampleHistory(keep)
        self._quality = QualityTracker(block.fs, block.n_leads)
        d = self.cfg.dsp
        self._rhythm = RhythmTracker(
            block.fs, brady_bpm=d.brady_bpm, tachy_bpm=d.tachy_bpm, pause_s=d.pause_s
        )
        self._next_periodic = block.seq

    def _samples(self, seconds: float) -> int:
        assert self._fs is not None
        return int(round(seconds * self._fs))

    # --- inputs -------------------------------------------------------------
    def on_block(self, block: SampleBlock) -> list[PipelineOutput]:
        """Take one received block; return what is ready to send."""
        if block.n == 0:
            return []
        if self._fs is None:
            self._start(block)
        elif block.fs != self._fs or block.leads != self._leads:
            raise ValueError(
                f"{self.device_id}: stream changed from {self._fs} Hz {self._leads} "
                f"to {block.fs} Hz {block.leads}"
            )
        self.counters["blocks"] += 1
        self.counters["samples"] += block.n
        out: list[PipelineOutput] = []
        if self._live_next is None or block.end_seq > self._live_next:
            self._last_block = block  # the head of the stream: times of button presses
            if self.cfg.live.enabled:
                self._add_live(block, out)
        if self._late:
            for late in self._late:
                late.take(block)
            self._send_late(out)
        for ordered in self.reorder.push(block):
            self._analyse(ordered, out)
        return out

    def _add_live(self, block: SampleBlock, out: list[PipelineOutput]) -> None:
        """Display-filter the new part of ``block`` into live chunks (contiguous each)."""
        assert self._filter is not None
        if self._live_next is not None and block.seq < self._live_next:
            block = block.slice_seq(self._live_next, block.end_seq)
        self._live_next = block.end_seq
        shown = self._filter.process(block)
        if self._live and self._live[-1].end_seq != shown.seq:
            # A gap: send what came before it as its own chunk; chunks stay contiguous.
            out.append(LiveChunk(concat_blocks(self._live), self._last_hr))
            self._live = []
        self._live.append(shown)
        if sum(b.n for b in self._live) >= self._samples(self.cfg.live.block_s):
            out.append(LiveChunk(concat_blocks(self._live), self._last_hr))
            self._live = []

    def _analyse(self, block: SampleBlock, out: list[PipelineOutput]) -> None:
        """Samples in order: history, quality, QRS, heart rate, rhythm; then ready strips."""
        assert self._qrs and self._history and self._quality is not None
        self._history.add(block)
        self._quality_windows.extend(self._quality.process(block))
        horizon = block.end_seq - int(self._history.keep_s * block.fs)
        if self._quality_windows and self._quality_windows[0].end_seq < horizon:
            self._quality_windows = [w for w in self._quality_windows if w.end_seq >= horizon]
        beats = self._qrs.process(block)
        if len(beats):
            self._note_beats(beats, block.end_seq)
        self._schedule_periodic()
        out.extend(self._flush_ready())

    def on_event(self, event: DeviceEvent) -> list[PipelineOutput]:
        """Take a device event (button, stage, blood pressure, lead-off...)."""
        if event.kind == "button":
            self._on_button(event)
        elif event.kind == "stage":
            self._on_stage(event)
        elif event.kind == "blood_pressure":
            self._bp = {"time": event.time, **event.data}
        elif event.kind == "lead_off":
            self._lead_off = {"time": event.time, **event.data}
        elif event.kind == "recording" and event.seq is not None:
            # a patch with memory: analysis starts at its oldest sample, which arrives
            # by backfill after the first live ones
            self.reorder.start_at(int(event.seq))
        return self._flush_ready()

    def on_gap(self, gap: Gap) -> list[PipelineOutput]:
        """Record samples that did not arrive (reported in strips that overlap them).

        A final gap also tells analysis to stop waiting for those samples.
        """
        self._gaps.append(gap)
        if len(self._gaps) > 1000:
            del self._gaps[:-1000]
        out: list[PipelineOutput] = []
        if gap.final and self._fs is not None:
            for late in self._late:
                late.lost(gap.first_seq, gap.end_seq)
            self._send_late(out)
            for ordered in self.reorder.lost(gap.first_seq, gap.end_seq):
                self._analyse(ordered, out)
        return out

    def flush(self) -> list[PipelineOutput]:
        """At shutdown: send the partial live chunk and every pending strip, cut short."""
        out: list[PipelineOutput] = []
        if self._live:
            out.append(LiveChunk(concat_blocks(self._live), self._last_hr))
            self._live = []
        for ordered in self.reorder.flush():
            self._analyse(ordered, out)
        if self._history is not None and self._history.end_seq is not None:
            end = self._history.end_seq
            for p in self._pending:
                if p.first_seq < end:
                    p.trigger = {**p.trigger, "truncated_at_shutdown": True}
                    p.end_seq = min(p.end_seq, end)
            out.extend(self._flush_ready(force=True))
        for late in self._late:
            late.pending.trigger = {**late.pending.trigger, "truncated_at_shutdown": True}
        self._send_late(out, force=True)
        return out

    # --- state --------------------------------------------------------------
    @property
    def heart_rate_bpm(self) -> float | None:
        return self._last_hr

    def _note_beats(self, beats: Beats, now_seq: int) -> None:
        self._beats_seq.extend(int(s) for s in beats.seq)
        if len(self._beats_seq) > _MAX_BEATS_KEPT:
            del self._beats_seq[:-_MAX_BEATS_KEPT]
        self.counters["beats"] += len(beats)
        hr = self._hr.process(beats, now_seq)
        if self._rhythm is not None:
            self._rhythm.process(beats)
            if len(self._rhythm.episodes) > 1000:
                del self._rhythm.episodes[:-1000]
        bpm = float(hr.average_bpm)
        self._last_hr = None if np.isnan(bpm) else round(bpm, 1)

    def _seq_at(self, event: DeviceEvent) -> int | None:
        if event.seq is not None:
            return int(event.seq)
        b = self._last_block
        if b is None:
            return None
        return b.seq + int(round((event.time - b.start) * b.fs))

    def _on_button(self, event: DeviceEvent) -> None:
        seq = self._seq_at(event)
        if seq is None or self._fs is None:
            return  # no stream yet: nothing recorded around the press
        ev = self.cfg.events
        first = seq - self._samples(ev.pre_s)
        held = self._history.first_seq if self._history else None
        trigger: dict[str, Any] = {
            "type": "button",
            "time": event.time,
            "seq": seq,
            "press_id": event.data.get("press_id"),
            "pre_s": ev.pre_s,
            "post_s": ev.post_s,
        }
        if held is not None and first < held:
            trigger["pre_available_s"] = round((seq - held) / self._fs, 3)
            first = held
        self._pending.append(_Pending("event", first, seq + self._samples(ev.post_s), trigger))

    def _on_stage(self, event: DeviceEvent) -> None:
        seq = self._seq_at(event)
        if seq is not None and self._stage is not None and self._fs is not None:
            first = seq - self._samples(self.cfg.strips.duration_s)
            if self._stage_start_seq is not None:
                first = max(first, self._stage_start_seq)
            trigger = {
                "type": "stage_end",
                "time": event.time,
                "seq": seq,
                "stage": self._stage,
                "pre_s": round((seq - first) / self._fs, 3),
                "post_s": 0.0,
            }
            extra = {"blood_pressure": self._bp} if self._bp else {}
            self._pending.append(_Pending("strip", first, seq, trigger, extra))
        self._stage = dict(event.data)
        self._stage_start_seq = seq

    def _schedule_periodic(self) -> None:
        assert self._next_periodic is not None and self._history is not None
        end = self._history.end_seq or 0
        dur = self._samples(self.cfg.strips.duration_s)
        period = max(self._samples(self.cfg.strips.period_s), 1)
        while self._next_periodic + dur <= end:
            first = self._next_periodic
            trigger = {
                "type": "periodic",
                "time": None,
                "seq": None,
                "pre_s": self.cfg.strips.duration_s,
                "post_s": 0.0,
            }
            self._pending.append(_Pending("strip", first, first + dur, trigger))
            self._next_periodic += period

    def _flush_ready(self, force: bool = False) -> list[PipelineOutput]:
        if self._history is None or self._qrs is None or not self._pending:
            return []
        end = self._history.end_seq or 0
        settle = self._samples(self._qrs.latency_s)  # beats near the end must be final first
        ready = [p for p in self._pending if force or p.end_seq + settle <= end]
        if not ready:
            return []
        self._pending = [p for p in self._pending if p not in ready]
        out: list[PipelineOutput] = []
        for p in ready:
            if not force and self._set_aside(p):
                continue
            strip = self._make_strip(p)
            if strip is not None:
                out.append(strip)
                self.counters["strips" if p.kind == "strip" else "events"] += 1
        self._send_late(out)
        return out

    # --- strips whose samples come late --------------------------------------------
    def _set_aside(self, p: _Pending) -> bool:
        """If analysis gave up waiting for part of ``p``'s window, hold ``p`` for the late
        samples instead of sending it with a hole; True if it was held."""
        assert self._history is not None and self._fs is not None
        awaited = [
            (max(a, p.first_seq), min(b, p.end_seq))
            for a, b in self.reorder.gave_up_ranges
            if a < p.end_seq and b > p.first_seq
        ]
        for g in self._gaps:  # declared lost already: nothing to wait for there
            if g.final:
                awaited = _minus(awaited, g.first_seq, g.end_seq)
        if not awaited:
            return False
        n = p.end_seq - p.first_seq
        win = self._history.window(p.first_seq, p.end_seq)
        if win is not None:
            samples = np.array(win.block.samples)
            have = ~np.isnan(samples).any(axis=1)
            start = win.block.start
        else:
            samples = np.full((n, len(self._leads)), np.nan, dtype=np.float32)
            have = np.zeros(n, dtype=bool)
            ref = self._last_block
            assert ref is not None
            start = ref.start + (p.first_seq - ref.seq) / ref.fs
        head = self._history.end_seq or p.end_seq
        self._late.append(_Late(p, samples, have, awaited, start, head))
        return True

    def _send_late(self, out: list[PipelineOutput], force: bool = False) -> None:
        """Send the held strips that are complete, or waited long enough (or all: force)."""
        if not self._late or self._fs is None:
            return
        head = self._history.end_seq if self._history is not None else None
        wait = self._samples(_LATE_WAIT_S)
        keep: list[_Late] = []
        for i, late in enumerate(self._late):
            overdue = head is not None and head - late.head_seq > wait
            crowded = len(self._late) - i > _LATE_MAX
            if force or late.complete or overdue or crowded:
                out.append(self._late_strip(late))
                self.counters["strips" if late.pending.kind == "strip" else "events"] += 1
                self.counters["analysed_late"] += 1
            else:
                keep.append(late)
        self._late = keep

    def _late_strip(self, late: _Late) -> StripReady:
        """The held strip, its facts measured on the window alone (fresh detectors)."""
        assert self._fs is not None and self._qrs is not None
        p = late.pending
        block = SampleBlock(
            late.samples, self._fs, late.start, p.first_seq, self._leads, self.device_id
        )
        # the recorded runs only, each after a gap for the detectors (no NaN fed to them)
        qrs = QrsDetector(self._fs, lead=self._qrs.lead)
        tracker = QualityTracker(self._fs, len(self._leads))
        parts: list[Beats] = []
        quality: list[QualityWindow] = []
        for a, b in runs_of(late.have, p.first_seq):
            run = block.slice_seq(a, b)
            parts.append(qrs.process(run))
            quality += tracker.process(run)
        found = Beats.concat([*parts, qrs.finish()], self._fs)
        d = self.cfg.dsp
        rhythm = RhythmTracker(
            self._fs, brady_bpm=d.brady_bpm, tachy_bpm=d.tachy_bpm, pause_s=d.pause_s
        )
        rhythm.process(found)
        rhythm.finish(p.end_seq)
        missing = runs_of(~late.have, p.first_seq)
        p.trigger = {**p.trigger, "analysed_late": True}
        return self._strip(p, block, missing, found.seq.tolist(), quality, rhythm.episodes)

    def _make_strip(self, p: _Pending) -> StripReady | None:
        assert self._history is not None and self._fs is not None
        win = self._history.window(p.first_seq, p.end_seq)
        if win is None:
            return None
        beats = [s for s in self._beats_seq if p.first_seq <= s < p.end_seq]
        episodes = self._rhythm.episodes if self._rhythm is not None else []
        return self._strip(p, win.block, win.missing, beats, self._quality_windows, episodes)

    def _strip(
        self,
        p: _Pending,
        block: SampleBlock,
        missing: tuple[tuple[int, int], ...],
        beats: list[int],
        quality: list[QualityWindow],
        episodes: list[RhythmEpisode],
    ) -> StripReady:
        """A strip of ``block`` (the window, NaN in the ``missing`` runs) and its facts."""
        assert self._fs is not None
        gaps = [g for g in self._gaps if g.end_seq > p.first_seq and g.first_seq < p.end_seq]
        # Samples missing from the window that no driver reported (e.g. dropped by the
        # history bound) are reported too: nothing is missing silently.
        reported = {(g.first_seq, g.end_seq) for g in gaps}
        for a, b in missing:
            if (
                not any(g.first_seq <= a and b <= g.end_seq for g in gaps)
                and (a, b) not in reported
            ):
                gaps.append(
                    Gap(
                        self.device_id,
                        a,
                        b,
                        float(block.time_of(a)),
                        float(block.time_of(b)),
                        reason="not recorded",
                    )
                )
        facts: dict[str, Any] = {
            "heart_rate_bpm": _mean_hr(beats, self._fs),
            "beats_seq": beats,
            "recorded_samples": int(block.n - sum(b - a for a, b in missing)),
            "quality": self._quality_facts(p.first_seq, p.end_seq, quality),
            "beats_in_unusable_signal": self._flag_beats(beats, quality),
            "rhythm_episodes": self._rhythm_facts(p.first_seq, p.end_seq, episodes),
            "st": self._st_facts(block, beats),
        }
        if self._stage is not None and p.trigger.get("type") != "stage_end":
            facts["stage"] = self._stage
        if self._bp is not None:
            facts["blood_pressure"] = self._bp
        if self._lead_off is not None:
            facts["lead_off"] = self._lead_off
        facts.update(p.extra_facts)
        return StripReady(p.kind, block, p.trigger, facts, tuple(gaps))

    def _st_facts(self, block: SampleBlock, beats: list[int]) -> dict[str, Any] | None:
        """ST levels per lead on the strip's median beat (None when not measurable)."""
        r = np.asarray(beats, dtype=np.int64) - block.seq
        try:
            st = st_levels(block.samples, block.fs, r, block.leads)
        except Exception as exc:  # a measurement must never cost the strip or event itself
            self.counters["st_errors"] += 1
            return {"error": f"ST measurement failed: {type(exc).__name__}: {exc}"[:200]}
        return None if st is None else st.as_facts()

    def _flag_beats(self, beats: list[int], quality: list[QualityWindow]) -> list[int]:
        """Beats that fall in windows whose quality index is under 0.5 on every lead."""
        bad = [(w.first_seq, w.end_seq) for w in quality if not w.usable]
        return [b for b in beats if any(a <= b < e for a, e in bad)]

    def _quality_facts(
        self, first: int, end: int, quality: list[QualityWindow]
    ) -> dict[str, Any] | None:
        """Signal quality over [first, end): index range, unusable seconds, flat/clipped leads."""
        wins = [w for w in quality if w.end_seq > first and w.first_seq < end]
        if not wins or self._fs is None:
            return None
        idx = np.stack([w.index for w in wins])  # windows x leads
        best = idx.max(axis=1)
        window_s = (wins[0].end_seq - wins[0].first_seq) / self._fs
        flat = np.stack([w.flat for w in wins]).any(axis=0)
        clipped = np.stack([w.saturated for w in wins]).any(axis=0)
        return {
            "index_min": round(float(best.min()), 3),
            "index_mean": round(float(best.mean()), 3),
            "unusable_s": round(float((best < USABLE).sum()) * window_s, 3),
            "flat_leads": [n for n, f in zip(self._leads, flat, strict=True) if f],
            "saturated_leads": [n for n, c in zip(self._leads, clipped, strict=True) if c],
            "window_s": round(window_s, 3),
        }

    def _rhythm_facts(
        self, first: int, end: int, episodes: list[RhythmEpisode]
    ) -> list[dict[str, Any]]:
        """Automated rhythm episodes overlapping [first, end) (measurements, not a diagnosis)."""
        out = []
        for e in episodes:
            e_end = e.end_seq if e.end_seq is not None else end
            if e_end > first and e.start_seq < end:
                out.append(
                    {
                        "kind": e.kind,
                        "start_seq": e.start_seq,
                        "end_seq": e.end_seq,
                        "confidence": round(e.confidence, 2),
                        **e.details,
                    }
                )
        return out


def _minus(ranges: list[tuple[int, int]], first: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` (half-open sample ranges) without ``[first, end)``."""
    left: list[tuple[int, int]] = []
    for a, b in ranges:
        if end <= a or b <= first:
            left.append((a, b))
            continue
        if a < first:
            left.append((a, first))
        if end < b:
            left.append((end, b))
    return left


def _mean_hr(beats_seq: list[int], fs: float) -> float | None:
    """Mean heart rate over a strip from its beats, bpm (None with fewer than 2 beats)."""
    if len(beats_seq) < 2:
        return None
    rr = np.diff(np.asarray(beats_seq, dtype=np.float64)) / fs
    return round(float(60.0 / rr.mean()), 1)
