"""The small FHIR SampledData reader and the strip viewer's data (gaps stay gaps)."""

from __future__ import annotations

import pytest

from center.fhir import FhirError, read_leads
from center.web.ecg import ecg_view
from tests.center.conftest import load


def _obs(data: str, origin: float = 0, factor: float = 1, period: float = 4.0) -> dict:
    return {
        "component": [
            {
                "code": {"text": "aVR"},
                "valueSampledData": {
                    "origin": {"value": origin},
                    "factor": factor,
                    "period": period,
                    "data": data,
                },
            }
        ]
    }


def test_values_gaps_and_limits() -> None:
    (lead,) = read_leads(_obs("1 -2 E 3 L U", origin=10, factor=2))
    assert lead.name == "aVR" and lead.period_ms == 4.0
    assert lead.samples_uv == [12, 6, None, 16, None, None]


@pytest.mark.parametrize("obs", [{}, {"component": []}, _obs("1 x 2"), _obs("1", period=0)])
def test_unreadable_is_an_error(obs: dict) -> None:
    with pytest.raises(FhirError):
        read_leads(obs)


def test_viewer_data_of_a_recorded_cart_strip() -> None:
    view = ecg_view(load("cart-strip"))
    assert view["fs"] == 500.0 and len(view["leads"]) == 12 and view["leads"][3] == "aVR"
    assert all(len(d) == 5000 for d in view["data"])
    assert view["facts"]["blood_pressure"]["systolic_mmhg"] == 135
    assert view["trigger"]["type"] == "stage_end"
