"""Small constructors for FHIR R4 data types as plain dicts (http://hl7.org/fhir/R4/datatypes.html).

Everything the demo writes goes through these, so every resource is marked as test data with the
``HTEST`` security label (http://hl7.org/fhir/R4/security-labels.html, v3-ActReason "test health
data") and every time carries the China Standard Time offset.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from ehr.sitetime import CST

__all__ = [
    "CST",
    "UCUM",
    "LOINC",
    "SNOMED",
    "ICD10",
    "CVX",
    "ATC",
    "meta",
    "coding",
    "concept",
    "ref",
    "quantity",
    "iso_date",
    "iso_datetime",
]

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CVX = "http://hl7.org/fhir/sid/cvx"
ATC = "http://www.whocc.no/atc"

_HTEST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}


def meta(*profiles: str) -> dict[str, Any]:
    """``meta`` of a demo resource: the HTEST label, plus the profiles it claims."""
    m: dict[str, Any] = {}
    if profiles:
        m["profile"] = list(profiles)
    m["security"] = [dict(_HTEST)]
    return m


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    if display is not None:
        c["display"] = display
    return c


def concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {}
    if codings:
        cc["coding"] = list(codings)
    if text is not None:
        cc["text"] = text
    return cc


def ref(rtype: str, rid: str, display: str | None = None) -> dict[str, Any]:
    r = {"reference": f"{rtype}/{rid}"}
    if display is not None:
        r["display"] = display
    return r


def quantity(value: float | int, unit: str, code: str | None = None) -> dict[str, Any]:
    """A UCUM Quantity; ``unit`` is the human form, ``code`` the UCUM code (defaults to unit)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def iso_date(d: date) -> str:
    return d.isoformat()


def iso_datetime(dt: datetime) -> str:
    """``2025-07-21T09:30:00+08:00`` (seconds precision, CST)."""
    return dt.astimezone(CST).replace(microsecond=0).isoformat()
