"""What a strip or event says about itself: why it was cut (:class:`Trigger`) and what was
measured on it (:class:`StripFacts`). Typed, frozen; only :mod:`gateway.payloads` turns
them into JSON (``docs/mqtt.md``).

The measurements (beats, heart rate, quality, rhythm, ST) are facts about the tracing
for staff to read, never an interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from core.block import SampleBlock
from core.events import BloodPressure, LeadOff, StageChanged
from dsp.episodes import EpisodeChange
from dsp.quality import USABLE, QualityWindow
from dsp.st import st_levels

__all__ = [
    "EpisodeFacts",
    "QualityFacts",
    "StripFacts",
    "Trigger",
    "TriggerType",
    "episode_facts",
    "measure_strip",
]

TriggerType = Literal["button", "periodic", "stage_end", "auto"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why a window of ECG was sent.

    ``pre_s``/``post_s``: seconds before/after the trigger instant (``seq``, ``time``);
    a periodic strip has no instant (``pre_s`` is its duration). ``stage`` is the stage
    that ended (stage_end). ``reason`` and ``details`` describe an auto trigger.
    """

    type: TriggerType
    pre_s: float
    post_s: float = 0.0
    time: float | None = None
    seq: int | None = None
    press_id: int | None = None
    stage: StageChanged | None = None
    pre_available_s: float | None = None
    truncated_at_shutdown: bool = False
    analysed_late: bool = False
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def but(self, **changes: Any) -> Trigger:
        """A copy with ``changes`` (e.g. ``truncated_at_shutdown=True``)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class QualityFacts:
    """Signal quality over a strip's 1-second windows (index 0 unusable … 1 clean)."""

    index_min: float
    index_mean: float
    unusable_s: float
    flat_leads: tuple[str, ...]
    saturated_leads: tuple[str, ...]
    window_s: float


@dataclass(frozen=True, slots=True)
class EpisodeFacts:
    """An automated rhythm measurement overlapping a strip (``end_seq`` None: ongoing)."""

    kind: str
    start_seq: int
    end_seq: int | None
    confidence: float
    details: dict[str, float]
    min_rate_bpm: float | None = None
    max_rate_bpm: float | None = None
    in_unusable_signal: bool = False


@dataclass(frozen=True, slots=True)
class StripFacts:
    """Measured on the strip's tracing (see ``docs/mqtt.md``)."""

    heart_rate_bpm: float | None = None
    beats_seq: tuple[int, ...] = ()
    beat_labels: str = ""
    """One letter per beat of ``beats_seq``: N (normal or other supraventricular), S
    (premature supraventricular), V (ventricular ectopic), Q (unclassifiable)."""
    recorded_samples: int = 0
    quality: QualityFacts | None = None
    beats_in_unusable_signal: tuple[int, ...] = ()
    rhythm_episodes: tuple[EpisodeFacts, ...] = ()
    st: dict[str, Any] | None = None
    stage: StageChanged | None = None
    blood_pressure: BloodPressure | None = None
    lead_off: LeadOff | None = None


def measure_strip(
    block: SampleBlock,
    missing: Sequence[tuple[int, int]],
    beats: Sequence[int],
    labels: Sequence[str],
    quality: Sequence[QualityWindow],
    episodes: Sequence[EpisodeChange],
) -> tuple[StripFacts, bool]:
    """The facts of a strip from its window and the analysis around it.

    Returns the facts and whether the ST measurement failed (it never costs the strip:
    its error goes into the facts).
    """
    first, end = block.seq, block.end_seq
    st, st_failed = _st_facts(block, beats)
    facts = StripFacts(
        heart_rate_bpm=_mean_hr(beats, block.fs),
        beats_seq=tuple(int(b) for b in beats),
        beat_labels="".join(labels),
        recorded_samples=int(block.n - sum(b - a for a, b in missing)),
        quality=_quality_facts(first, end, quality, block.leads, block.fs),
        beats_in_unusable_signal=_flag_beats(beats, quality),
        rhythm_episodes=_rhythm_facts(first, end, episodes),
        st=st,
    )
    return facts, st_failed


def _st_facts(block: SampleBlock, beats: Sequence[int]) -> tuple[dict[str, Any] | None, bool]:
    r = np.asarray(beats, dtype=np.int64) - block.seq
    try:
        st = st_levels(block.samples, block.fs, r, block.leads)
    except Exception as exc:  # a measurement must never cost the strip or event itself
        return {"error": f"ST measurement failed: {type(exc).__name__}: {exc}"[:200]}, True
    return (None if st is None else st.as_facts()), False


def _flag_beats(beats: Sequence[int], quality: Sequence[QualityWindow]) -> tuple[int, ...]:
    """Beats that fall in windows whose quality index is under 0.5 on every lead."""
    bad = [(w.first_seq, w.end_seq) for w in quality if not w.usable]
    return tuple(int(b) for b in beats if any(a <= b < e for a, e in bad))


def _quality_facts(
    first: int, end: int, quality: Sequence[QualityWindow], leads: Sequence[str], fs: float
) -> QualityFacts | None:
    """Signal quality over [first, end): index range, unusable seconds, flat/clipped leads."""
    wins = [w for w in quality if w.end_seq > first and w.first_seq < end]
    if not wins:
        return None
    idx = np.stack([w.index for w in wins])  # windows x leads
    best = idx.max(axis=1)
    window_s = (wins[0].end_seq - wins[0].first_seq) / fs
    flat = np.stack([w.flat for w in wins]).any(axis=0)
    clipped = np.stack([w.saturated for w in wins]).any(axis=0)
    return QualityFacts(
        index_min=round(float(best.min()), 3),
        index_mean=round(float(best.mean()), 3),
        unusable_s=round(float((best < USABLE).sum()) * window_s, 3),
        flat_leads=tuple(n for n, f in zip(leads, flat, strict=True) if f),
        saturated_leads=tuple(n for n, c in zip(leads, clipped, strict=True) if c),
        window_s=round(window_s, 3),
    )


def episode_facts(e: EpisodeChange) -> EpisodeFacts:
    """One episode's facts as strips and events carry them."""
    return EpisodeFacts(
        e.kind,
        e.start_seq,
        e.end_seq,
        round(e.confidence, 2),
        {k: round(float(v), 3) for k, v in e.details.items()},
        _rate(e.min_rate_bpm),
        _rate(e.max_rate_bpm),
        bool(e.in_unusable_signal),
    )


def _rate(bpm: float) -> float | None:
    return round(float(bpm), 1) if np.isfinite(bpm) else None


def _rhythm_facts(
    first: int, end: int, episodes: Sequence[EpisodeChange]
) -> tuple[EpisodeFacts, ...]:
    """Automated rhythm episodes overlapping [first, end) (measurements, not a diagnosis)."""
    out = []
    for e in episodes:
        e_end = e.end_seq if e.end_seq is not None else end
        if e_end > first and e.start_seq < end:
            out.append(episode_facts(e))
    return tuple(out)


def _mean_hr(beats_seq: Sequence[int], fs: float) -> float | None:
    """Mean heart rate over a strip from its beats, bpm (None with fewer than 2 beats)."""
    if len(beats_seq) < 2:
        return None
    rr = np.diff(np.asarray(beats_seq, dtype=np.float64)) / fs
    return round(float(60.0 / rr.mean()), 1)
