"""What one device's pipeline is told by the configuration (built by ``gateway.app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dsp.episodes import RhythmLimits

__all__ = ["PipelineSettings"]


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Filters, rhythm limits, strip/event windows and live batching for one device.

    Parameters
    ----------
    band, mains_hz
        Display filter of live ECG: ``monitoring`` 0.5-40 Hz or ``diagnostic``
        0.05-150 Hz, and the mains notch (Hz).
    rhythm
        What makes a rhythm episode (rate limits, pause length).
    strip_period_s, strip_duration_s
        A periodic strip of ``strip_duration_s`` every ``strip_period_s`` seconds.
    event_pre_s, event_post_s
        A post-symptom event's window around the button press, seconds.
    live_enabled, live_block_s
        Live ECG on or off, batched into messages of about ``live_block_s`` seconds.
    backfill_wait_s
        Seconds of stream analysis holds while a device with memory backfills a hole
        (0: nothing is held).
    auto_enabled, auto_pre_s, auto_post_s
        Auto-triggered events (a pause, VT, AF onset or rapid AF, brady, tachy, SVT
        begins): on or off, and their window around the episode's onset, seconds.
    auto_max_per_day, auto_merge_s, auto_min_duration_s
        Alarm fatigue: events per reason in any 24 h (more only if more significant),
        episodes this close (s) to a raised one join it, shortest episode per reason (s).
    """

    band: Literal["monitoring", "diagnostic"] = "monitoring"
    mains_hz: float = 50.0
    rhythm: RhythmLimits = field(default_factory=RhythmLimits)
    strip_period_s: float = 300.0
    strip_duration_s: float = 10.0
    event_pre_s: float = 30.0
    event_post_s: float = 30.0
    live_enabled: bool = True
    live_block_s: float = 1.0
    backfill_wait_s: float = 0.0
    auto_enabled: bool = True
    auto_pre_s: float = 45.0
    auto_post_s: float = 30.0
    auto_max_per_day: int = 3
    auto_merge_s: float = 60.0
    auto_min_duration_s: tuple[tuple[str, float], ...] = ()
