"""A small reader of the strips' FHIR R4 ``valueSampledData`` (no FHIR library needed).

Each Observation component is one lead: ``code.text`` is its name as written (``aVR``,
``V1``), ``valueSampledData`` has ``origin.value`` (µV), ``factor``, ``period`` (ms between
samples) and ``data``: decimals separated by single spaces, where ``E`` is no sample (a gap)
and ``L``/``U`` are beyond the device's limits. Value in µV = origin + factor × decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FhirError", "Lead", "read_leads"]


class FhirError(ValueError):
    """The Observation has no readable sampled data."""


@dataclass(frozen=True)
class Lead:
    """One lead's samples in µV (None: no sample), and its sampling period in ms."""

    name: str
    period_ms: float
    samples_uv: list[float | None]


def _value(token: str, origin: float, factor: float) -> float | None:
    if token in ("E", "L", "U"):
        return None
    v = origin + factor * float(token)
    return int(v) if v.is_integer() else round(v, 3)


def read_leads(observation: dict[str, Any]) -> list[Lead]:
    """Every component with ``valueSampledData``, in order; FhirError when there is none."""
    leads = []
    for comp in observation.get("component") or []:
        sd = comp.get("valueSampledData") if isinstance(comp, dict) else None
        if not isinstance(sd, dict):
            continue
        name = (comp.get("code") or {}).get("text") or "?"
        try:
            origin = float((sd.get("origin") or {}).get("value", 0))
            factor = float(sd.get("factor", 1))
            period = float(sd["period"])
            tokens = str(sd.get("data", "")).split()
            samples = [_value(tok, origin, factor) for tok in tokens]
        except (KeyError, TypeError, ValueError) as exc:
            raise FhirError(f"lead {name}: unreadable sampled data ({exc})") from None
        if period <= 0:
            raise FhirError(f"lead {name}: period must be positive")
        leads.append(Lead(str(name), period, samples))
    if not leads:
        raise FhirError("no component with valueSampledData")
    return leads
