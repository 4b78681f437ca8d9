"""Vital signs as the FHIR vital-signs profiles want them
(http://hl7.org/fhir/R4/observation-vitalsigns.html): category ``vital-signs``, the profile's
LOINC code, a UCUM quantity in the profile's unit; blood pressure as the 85354-9 panel with
systolic / diastolic components.

Each kind has a plausible range. A value outside it is stored anyway and reported as a
``warning`` issue: the nurse sees "is that right?" but the bedside record is never blocked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ehr.errors import Issue, Unprocessable

from .fhirdata import fmt_instant, ref

__all__ = ["VITALS", "LOINC", "UCUM", "Vital", "check_plausible", "vital_observation"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_SD = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Vital:
    kind: str
    loinc: str
    display: str
    zh: str
    unit: str  # UCUM code
    low: float
    high: float
    profile: str


VITALS: dict[str, Vital] = {
    v.kind: v
    for v in (
        Vital("heart-rate", "8867-4", "Heart rate", "心率", "/min", 25, 220, "heartrate"),
        Vital("respiratory-rate", "9279-1", "Respiratory rate", "呼吸", "/min", 5, 60, "resprate"),
        Vital(
            "body-temperature", "8310-5", "Body temperature", "体温", "Cel", 34, 42.5, "bodytemp"
        ),
        Vital(
            "oxygen-saturation",
            "2708-6",
            "Oxygen saturation in Arterial blood",
            "血氧饱和度",
            "%",
            60,
            100,
            "oxygensat",
        ),
        Vital("body-height", "8302-2", "Body height", "身高", "cm", 30, 250, "bodyheight"),
        Vital("body-weight", "29463-7", "Body weight", "体重", "kg", 0.5, 300, "bodyweight"),
        Vital(
            "bmi", "39156-5", "Body mass index (BMI) [Ratio]", "体重指数", "kg/m2", 10, 70, "bmi"
        ),
        Vital(
            "head-circumference",
            "9843-4",
            "Head Occipital-frontal circumference",
            "头围",
            "cm",
            25,
            65,
            "headcircum",
        ),
        Vital("systolic", "8480-6", "Systolic blood pressure", "收缩压", "mm[Hg]", 60, 260, "bp"),
        Vital("diastolic", "8462-4", "Diastolic blood pressure", "舒张压", "mm[Hg]", 30, 160, "bp"),
    )
}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional", "血压")


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _number(kind: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unprocessable(f"Vital sign {kind}: {value!r} is not a number", "value")
    return value


def check_plausible(kind: str, value: float) -> Issue | None:
    v = VITALS[kind]
    if v.low <= value <= v.high:
        return None
    return Issue(
        "value",
        f"{v.zh} {value} {v.unit} is outside the plausible range {v.low}–{v.high} {v.unit}: please check",
        "warning",
        (f"{kind}",),
    )


def vital_observation(
    kind: str,
    value: Any,
    *,
    patient: str,
    encounter: str | None,
    effective: datetime,
    performer: dict[str, Any] | None,
    identifier: dict[str, Any],
) -> tuple[dict[str, Any], list[Issue]]:
    """One Observation for ``kind`` (``blood-pressure`` takes ``(systolic, diastolic)``) and
    the warnings it raises. Unknown kinds and non-numbers are a 422."""
    issues: list[Issue] = []
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if kind == "blood-pressure":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise Unprocessable("Vital sign blood-pressure needs [systolic, diastolic]", "value")
        sys_v, dia_v = _number("systolic", value[0]), _number("diastolic", value[1])
        code, display, zh = BP_PANEL
        profile = "bp"
        for k, v in (("systolic", sys_v), ("diastolic", dia_v)):
            if (w := check_plausible(k, v)) is not None:
                issues.append(w)
        if dia_v >= sys_v:
            issues.append(
                Issue(
                    "value",
                    f"舒张压 {dia_v} is not below 收缩压 {sys_v}: please check",
                    "warning",
                    (kind,),
                )
            )
        components = [
            {
                "code": {
                    "coding": [
                        {"system": LOINC, "code": VITALS[k].loinc, "display": VITALS[k].display}
                    ]
                },
                "valueQuantity": _quantity(v, "mm[Hg]"),
            }
            for k, v in (("systolic", sys_v), ("diastolic", dia_v))
        ]
    elif kind in VITALS and kind not in ("systolic", "diastolic"):
        vt = VITALS[kind]
        num = _number(kind, value)
        code, display, zh, profile = vt.loinc, vt.display, vt.zh, vt.profile
        if (w := check_plausible(kind, num)) is not None:
            issues.append(w)
        components = []
    else:
        known = sorted(k for k in VITALS if k not in ("systolic", "diastolic")) + ["blood-pressure"]
        raise Unprocessable(
            f"Unknown vital sign {kind!r}; known: {', '.join(known)}", "code-invalid"
        )
    obs["meta"] = {"profile": [_SD + profile]}
    obs["identifier"] = [identifier]
    obs["status"] = "final"
    obs["category"] = [
        {
            "coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
            "text": "Vital Signs",
        }
    ]
    obs["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}], "text": zh}
    obs["subject"] = ref("Patient", patient)
    if encounter:
        obs["encounter"] = ref("Encounter", encounter)
    obs["effectiveDateTime"] = fmt_instant(effective)
    if performer:
        obs["performer"] = [performer]
    if components:
        obs["component"] = components
    else:
        obs["valueQuantity"] = _quantity(num, VITALS[kind].unit)
    return obs, issues
