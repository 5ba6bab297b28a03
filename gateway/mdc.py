"""IEEE 11073-10101 (MDC) codes for ECG leads, as used in FHIR ECG Observations.

Codes are in the MDC partition 2 (SCADA) as FHIR's ECG examples carry them,
system ``urn:oid:2.16.840.1.113883.6.24``. A lead name not listed (a patch's
single bipolar channel, labelled e.g. ``ECG``) gets the generic
``MDC_ECG_ELEC_POTL`` 131328.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MDC_SYSTEM", "MdcCode", "mdc_lead"]

MDC_SYSTEM = "urn:oid:2.16.840.1.113883.6.24"


@dataclass(frozen=True, slots=True)
class MdcCode:
    code: int
    refid: str
    display: str


_GENERIC = MdcCode(131328, "MDC_ECG_ELEC_POTL", "ECG electric potential")

_LEADS: dict[str, MdcCode] = {
    "I": MdcCode(131329, "MDC_ECG_LEAD_I", "Lead I"),
    "II": MdcCode(131330, "MDC_ECG_LEAD_II", "Lead II"),
    "V1": MdcCode(131331, "MDC_ECG_LEAD_V1", "Lead V1"),
    "V2": MdcCode(131332, "MDC_ECG_LEAD_V2", "Lead V2"),
    "V3": MdcCode(131333, "MDC_ECG_LEAD_V3", "Lead V3"),
    "V4": MdcCode(131334, "MDC_ECG_LEAD_V4", "Lead V4"),
    "V5": MdcCode(131335, "MDC_ECG_LEAD_V5", "Lead V5"),
    "V6": MdcCode(131336, "MDC_ECG_LEAD_V6", "Lead V6"),
    "III": MdcCode(131389, "MDC_ECG_LEAD_III", "Lead III"),
    "AVR": MdcCode(131390, "MDC_ECG_LEAD_AVR", "Lead aVR"),
    "AVL": MdcCode(131391, "MDC_ECG_LEAD_AVL", "Lead aVL"),
    "AVF": MdcCode(131392, "MDC_ECG_LEAD_AVF", "Lead aVF"),
}


def mdc_lead(name: str) -> MdcCode:
    """The MDC code of a lead name (case-insensitive: ``aVR``, ``AVR``, ``II``...)."""
    return _LEADS.get(name.strip().upper(), _GENERIC)
