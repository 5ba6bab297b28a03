"""The sink one device's driver delivers to (see :mod:`core.events` for the contract).

A :class:`DeviceChannel` records every block into the device's full recording, keeps
the gap ledger and the study facts, runs the device's pure
:class:`~gateway.pipeline.DevicePipeline`, and hands what it produces to ``emit`` (the
app stores strips and events in the outbox and publishes live ECG). Nothing raised in
here reaches the driver: a failure is counted and logged. Everything a device can cause
over and over (bad frames, gaps, reconnections, failures on its data) is logged at most
once a minute per kind, with how many were left out (:mod:`core.ratelog`); the counters
count every one.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import events as ev
from core.block import SampleBlock
from core.counters import Counters
from core.ratelog import RateLimitedLog
from core.units import iso_utc
from gateway.acks import AckLedger
from gateway.payloads import StudyFacts, event_facts
from gateway.pipeline import DevicePipeline, LiveChunk, PipelineOutput
from gateway.recording import RecordingStore

__all__ = ["DeviceChannel"]

log = logging.getLogger(__name__)

_LEDGER_KEPT = 50
_LOGGED = (
    ev.Connected, ev.Disconnected, ev.StageChanged, ev.LeadOff, ev.DeviceRestarted,
    ev.SignalStrength,
)  # fmt: skip


class DeviceChannel:
    """What one device delivers, recorded, analysed and handed on (see module docstring).

    Parameters
    ----------
    device_id
        The device.
    pipeline
        Its pure processing.
    emit
        Called with each pipeline output (live chunk, strip, event).
    study_dir
        Where its gap ledger is appended (``<device>.gaps.jsonl``); None: not kept.
    recording
        Its full recording; None when recording is off.
    """

    def __init__(
        self,
        device_id: str,
        pipeline: DevicePipeline,
        emit: Callable[[str, PipelineOutput], None],
        study_dir: Path | None = None,
        recording: RecordingStore | None = None,
    ) -> None:
        self.device_id = device_id
        self.pipeline = pipeline
        self.study_dir = study_dir
        self.recording = recording
        self.gap_ledger: deque[dict[str, Any]] = deque(maxlen=_LEDGER_KEPT)
        self.study = StudyFacts()
        self.study_gaps: list[dict[str, Any]] = []  # ledger entries not yet in a study message
        self.last_event: dict[str, dict[str, Any]] = {}
        self.acks = AckLedger()
        self.counters = Counters(
            "samples",
            "blocks",
            "live_messages",
            "strips",
            "events",
            "gaps",
            "gap_samples",
            "button_presses",
            "errors",
            "recording_errors",
        )
        self._emit = emit
        self._log = RateLimitedLog(log)

    def stats(self) -> dict[str, Any]:
        """The channel's counters and the pipeline's, read now."""
        return {**self.counters.snapshot(), "pipeline": self.pipeline.stats()}

    # --- the sink ------------------------------------------------------------------------------
    def on_block(self, block: SampleBlock) -> None:
        self.counters.add("blocks")
        self.counters.add("samples", block.n)
        self.study.add_block(block.seq, block.end_seq, block.fs, block.start, block.end)
        self._record(block)
        self._run("block", lambda: self.pipeline.on_block(block))

    def on_event(self, event: ev.DeviceEvent) -> None:
        if isinstance(event, ev.ButtonPressed):
            n = self.counters.add("button_presses")
            self._log.log(
                "button",
                logging.WARNING,
                "%s: SYMPTOM BUTTON pressed (press %s, %d so far); event strip follows",
                self.device_id,
                event.press_id,
                n,
            )
        elif isinstance(event, _LOGGED):
            facts = event_facts(event)
            self._log.log(event.kind, logging.INFO, "%s: %s %s", self.device_id, event.kind, facts)
        elif isinstance(event, ev.DriverError):
            self._log.log(
                f"error:{event.what}",
                logging.WARNING,
                "%s: %s: %s (%d so far)",
                self.device_id,
                event.what,
                event.detail,
                event.count,
            )
        elif isinstance(event, ev.RrGapSeen):  # Heart Rate service beats never heard
            entry = {
                "kind": "rr",
                "start": event.start,
                "end": event.end,
                "duration_s": round(event.duration_s, 3),
                "beats_missing": event.beats_missing,
                "final": True,
            }
            self._record_gap(entry)
        self.last_event[event.kind] = event_facts(event)
        self._run(event.kind, lambda: self.pipeline.on_event(event))

    def on_gap(self, gap: ev.Gap) -> None:
        self.counters.add("gaps")
        self.counters.add("gap_samples", gap.n_samples)
        if gap.final:
            self.study.missing += gap.n_samples
        self._record_gap(
            {
                "first_seq": gap.first_seq,
                "end_seq": gap.end_seq,
                "n_samples": gap.n_samples,
                "start": iso_utc(gap.start),
                "end": iso_utc(gap.end),
                "reason": gap.reason,
                "final": gap.final,
            }
        )
        self._log.log(
            "gap",
            logging.WARNING,
            "%s: %d samples missing (seq %d..%d, %s; %d gaps so far)",
            self.device_id,
            gap.n_samples,
            gap.first_seq,
            gap.end_seq,
            gap.reason or "no reason given",
            self.counters["gaps"],
        )
        self._run("gap", lambda: self.pipeline.on_gap(gap))

    def flush(self) -> None:
        """At shutdown: the pipeline's last outputs; the recording synced and closed."""
        self._run("flush", self.pipeline.flush)
        if self.recording is not None:
            try:
                self.recording.close()
            except OSError:
                self.counters.add("recording_errors")
                log.exception("%s: could not close the recording", self.device_id)

    # --- internals ----------------------------------------------------------------------------
    def _run(self, what: str, step: Callable[[], list[PipelineOutput]]) -> None:
        try:
            outputs = step()
            self.study.add_quality(*self.pipeline.take_quality_s())
        except Exception:
            n = self.counters.add("errors")
            self._log.log(
                f"pipeline:{what}",
                logging.ERROR,
                "%s: pipeline failed on a %s (%d errors so far)",
                self.device_id,
                what,
                n,
                exc_info=True,
            )
            return
        for out in outputs:
            try:
                self._emit(self.device_id, out)
            except Exception:
                n = self.counters.add("errors")
                self._log.log(
                    "emit",
                    logging.ERROR,
                    "%s: could not hand on %s (%d errors so far)",
                    self.device_id,
                    type(out).__name__,
                    n,
                    exc_info=True,
                )
                continue
            if isinstance(out, LiveChunk):
                self.counters.add("live_messages")
            else:
                self.counters.add("events" if out.kind == "event" else "strips")

    def _record(self, block: SampleBlock) -> None:
        """Into the device's full recording (a full disk never stops the stream)."""
        if self.recording is None:
            return
        try:
            self.recording.write(block)
        except (OSError, ValueError):
            n = self.counters.add("recording_errors")
            self._log.log(
                "recording",
                logging.ERROR,
                "%s: could not record block seq %d (%d recording errors)",
                self.device_id,
                block.seq,
                n,
                exc_info=True,
            )

    def _record_gap(self, entry: dict[str, Any]) -> None:
        """Into the status ledger and the study record (what the report must show missing)."""
        self.gap_ledger.append(entry)
        self.study_gaps.append(entry)
        if self.study_dir is None:
            return
        try:
            self.study_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.study_dir / f"{self.device_id}.gaps.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError:
            self.counters.add("errors")
            self._log.log(
                "gap ledger",
                logging.ERROR,
                "%s: could not record a gap in the study record",
                self.device_id,
                exc_info=True,
            )
