"""FHIR R4 resources of the demo's clinical records, built from planned visits
(http://hl7.org/fhir/R4/encounter.html, condition.html, observation.html,
allergyintolerance.html, medicationrequest.html, immunization.html).

Vital signs claim and follow the R4 vital-signs profiles
(http://hl7.org/fhir/R4/observation-vitalsigns.html): category ``vital-signs``, the profile's
LOINC code, a UCUM quantity, blood pressure as systolic/diastolic components.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from typing import Any

from ehr.codesystems import department_coding
from ehr.demo.body import Body
from ehr.demo.city import COMMUNITY_OF_DISTRICT, FACILITY_BY_KEY, Facility
from ehr.demo.elements import (
    ATC,
    CST,
    CVX,
    ICD10,
    LOINC,
    SNOMED,
    coding,
    concept,
    iso_datetime,
    meta,
    quantity,
    ref,
)
from ehr.demo.people import Person
from ehr.demo.plan import Visit, random_day
from ehr.demo.vocab import (
    ALLERGEN_SYSTEM,
    ALLERGENS,
    BP_DIASTOLIC,
    BP_SYSTOLIC,
    CHILD_SCHEDULE,
    DRUG_SYSTEM,
    DRUGS,
    ICD10_NAMES,
    LAB_RANGES,
    LABS,
    MANIFESTATIONS,
    ROUTES,
    VACCINES,
    VITALS,
    ObsKind,
)
from ehr.demo.workforce import Staff, Staffing

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
AI_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
AI_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MR_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
MR_COURSE = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
V3_SITE = "http://terminology.hl7.org/CodeSystem/v3-ActSite"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
V2_0443 = "http://terminology.hl7.org/CodeSystem/v2-0443"
DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
V3_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"

CLASSES = {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient encounter"}
SITES = {"LA": "left arm", "RA": "right arm"}
ROUTE_NAMES = {
    "IM": "Injection, intramuscular",
    "SQ": "Injection, subcutaneous",
    "IDINJ": "Injection, intradermal",
}


def _subject(p: Person) -> dict[str, Any]:
    return ref("Patient", p.pid, p.name.text)


def _icd(code: str) -> dict[str, Any]:
    return concept(coding(ICD10, code, ICD10_NAMES[code]), text=ICD10_NAMES[code])


def encounter(p: Person, v: Visit, doctor: Staff) -> dict[str, Any]:
    f = v.fac
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": v.eid,
        "meta": meta(),
        "status": "finished",
        "class": coding(V3_ACT, v.cls, CLASSES[v.cls]),
        "serviceType": concept(department_coding(v.dept), text=f.dept_name(v.dept)),
    }
    if v.cls == "EMER":
        enc["priority"] = concept(coding(V3_PRIORITY, "EM", "emergency"))
    enc["subject"] = _subject(p)
    enc["participant"] = [
        {
            "type": [concept(coding(V3_PARTICIPATION, "ATND", "attender"))],
            "individual": ref("Practitioner", doctor.prac_id, doctor.name.text),
        }
    ]
    enc["period"] = {"start": iso_datetime(v.start), "end": iso_datetime(v.end)}
    enc["reasonCode"] = [_icd(c) for c in v.reasons]
    if v.cls == "IMP":
        enc["hospitalization"] = {
            "dischargeDisposition": concept(coding(DISCHARGE, "home", "Home"))
        }
    loc = f.ward_id(v.dept) if v.cls == "IMP" else f.clinic_id(v.dept)
    enc["location"] = [
        {
            "location": ref("Location", loc or f.clinic_id(v.dept)),
            "status": "completed",
            "period": dict(enc["period"]),
        }
    ]
    enc["serviceProvider"] = ref("Organization", f.org_id, f.name)
    return enc


def condition(
    cid: str,
    p: Person,
    code: str,
    v: Visit,
    doctor: Staff,
    *,
    chronic: bool,
    onset: str,
    abated: datetime | None,
) -> dict[str, Any]:
    status = "resolved" if abated else "active"
    cat = (
        ("problem-list-item", "Problem List Item")
        if chronic
        else ("encounter-diagnosis", "Encounter Diagnosis")
    )
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "meta": meta(),
        "clinicalStatus": concept(coding(COND_CLINICAL, status, status.capitalize())),
        "verificationStatus": concept(coding(COND_VERIFICATION, "confirmed", "Confirmed")),
        "category": [concept(coding(COND_CATEGORY, *cat))],
        "code": _icd(code),
        "subject": _subject(p),
        "encounter": ref("Encounter", v.eid),
        "onsetDateTime": onset,
    }
    if abated:
        cond["abatementDateTime"] = iso_datetime(abated)
    cond["recordedDate"] = iso_datetime(v.start)
    cond["recorder"] = ref("Practitioner", doctor.prac_id, doctor.name.text)
    cond["asserter"] = ref("Practitioner", doctor.prac_id, doctor.name.text)
    return cond


def _obs_code(k: ObsKind) -> dict[str, Any]:
    codings = [coding(LOINC, k.loinc, k.display)]
    codings += [coding(LOINC, c, d) for c, d in k.extra_codings]
    return concept(*codings, text=k.text)


def _vital_sign(
    oid: str, p: Person, v: Visit, k: ObsKind, nurse: Staff, value: dict[str, Any]
) -> dict[str, Any]:
    assert k.profile is not None
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "meta": meta(k.profile),
        "status": "final",
        "category": [concept(coding(OBS_CATEGORY, "vital-signs", "Vital Signs"), text="生命体征")],
        "code": _obs_code(k),
        "subject": _subject(p),
        "encounter": ref("Encounter", v.eid),
        "effectiveDateTime": iso_datetime(v.start + timedelta(minutes=5)),
        "performer": [ref("Practitioner", nurse.prac_id, nurse.name.text)],
    }
    obs.update(value)
    return obs


def vital_signs(p: Person, v: Visit, body: Body, nurse: Staff) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    temp = body.temperature(v.fever) if "temp" in v.vitals else None
    ht = body.height(v.start) if "ht" in v.vitals or "bmi" in v.vitals else None
    wt = body.weight(v.start) if "wt" in v.vitals or "bmi" in v.vitals else None
    for key in v.vitals:
        k = VITALS[key]
        oid = f"obs-{v.eid.removeprefix('enc-')}-{key}"
        if key == "bp":
            sys_, dia = body.blood_pressure(v.start)
            value: dict[str, Any] = {
                "component": [
                    {
                        "code": concept(
                            coding(LOINC, BP_SYSTOLIC[0], BP_SYSTOLIC[1]), text=BP_SYSTOLIC[2]
                        ),
                        "valueQuantity": quantity(sys_, "mmHg", "mm[Hg]"),
                    },
                    {
                        "code": concept(
                            coding(LOINC, BP_DIASTOLIC[0], BP_DIASTOLIC[1]), text=BP_DIASTOLIC[2]
                        ),
                        "valueQuantity": quantity(dia, "mmHg", "mm[Hg]"),
                    },
                ]
            }
        elif key == "hr":
            value = {"valueQuantity": quantity(body.heart_rate(v.start, temp), k.unit, k.ucum)}
        elif key == "temp":
            assert temp is not None
            value = {"valueQuantity": quantity(temp, k.unit, k.ucum)}
        elif key == "wt":
            assert wt is not None
            value = {"valueQuantity": quantity(wt, k.unit, k.ucum)}
        elif key == "ht":
            assert ht is not None
            value = {"valueQuantity": quantity(ht, k.unit, k.ucum)}
        elif key == "spo2":
            value = {"valueQuantity": quantity(body.spo2(v.hypoxia), k.unit, k.ucum)}
        else:  # bmi
            assert wt is not None and ht is not None
            value = {"valueQuantity": quantity(round(wt / (ht / 100) ** 2, 1), k.unit, k.ucum)}
        out.append(_vital_sign(oid, p, v, k, nurse, value))
    return out


def laboratory(p: Person, v: Visit, body: Body) -> list[dict[str, Any]]:
    out = []
    for key in v.labs:
        k = LABS[key]
        val = body.lab(key)
        lo, hi = LAB_RANGES[key]
        interp = ("H", "High") if val > hi else ("L", "Low") if val < lo else ("N", "Normal")
        out.append(
            {
                "resourceType": "Observation",
                "id": f"obs-{v.eid.removeprefix('enc-')}-{key}",
                "meta": meta(),
                "status": "final",
                "category": [
                    concept(coding(OBS_CATEGORY, "laboratory", "Laboratory"), text="检验")
                ],
                "code": _obs_code(k),
                "subject": _subject(p),
                "encounter": ref("Encounter", v.eid),
                "effectiveDateTime": iso_datetime(v.start + timedelta(minutes=20)),
                "issued": iso_datetime(v.start + timedelta(hours=3)),
                "performer": [ref("Organization", v.fac.org_id, v.fac.name)],
                "valueQuantity": quantity(val, k.unit, k.ucum),
                "interpretation": [concept(coding(V3_INTERPRETATION, *interp))],
                "referenceRange": [
                    {"low": quantity(lo, k.unit, k.ucum), "high": quantity(hi, k.unit, k.ucum)}
                ],
            }
        )
    return out


def medication_request(
    mid: str,
    p: Person,
    v: Visit,
    doctor: Staff,
    drug_code: str,
    reason: str | None,
    *,
    status: str,
    continuous: bool,
) -> dict[str, Any]:
    d = DRUGS[drug_code]
    codings = [coding(DRUG_SYSTEM, d.code, d.name)]
    if d.atc:
        codings.append(coding(ATC, d.atc, d.atc_display))
    category = (
        "inpatient" if v.cls == "IMP" else "community" if not v.fac.is_hospital else "outpatient"
    )
    route_code, route_display, route_text = ROUTES[d.route]
    route = (
        concept(coding(SNOMED, route_code, route_display), text=route_text)
        if route_code
        else concept(text=route_text)
    )
    dosage: dict[str, Any] = {
        "sequence": 1,
        "text": d.instruction,
        "timing": {"repeat": {"frequency": d.per_day, "period": 1, "periodUnit": "d"}},
        "route": route,
    }
    if d.dose:
        dosage["doseAndRate"] = [{"doseQuantity": quantity(d.dose[0], d.dose[1])}]
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "meta": meta(),
        "status": status,
        "intent": "order",
        "category": [concept(coding(MR_CATEGORY, category, category.capitalize()))],
        "medicationCodeableConcept": concept(*codings, text=d.name),
        "subject": _subject(p),
        "encounter": ref("Encounter", v.eid),
        "authoredOn": iso_datetime(v.end),
        "requester": ref("Practitioner", doctor.prac_id, doctor.name.text),
    }
    if reason:
        mr["reasonReference"] = [ref("Condition", reason)]
    course = (
        ("continuous", "Continuous long term therapy")
        if continuous
        else ("acute", "Short course (acute) therapy")
    )
    mr["courseOfTherapyType"] = concept(coding(MR_COURSE, *course))
    mr["dosageInstruction"] = [dosage]
    days = 30 if continuous else 7
    mr["dispenseRequest"] = {
        "expectedSupplyDuration": {
            "value": days,
            "unit": "days",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        }
    }
    return mr


def allergy(
    aid: str,
    p: Person,
    code: str,
    recorded: datetime,
    recorder: Staff | None,
    rng: random.Random,
) -> dict[str, Any]:
    a = ALLERGENS[code]
    codings = [coding(ALLERGEN_SYSTEM, a.code, a.name)]
    if a.snomed:
        codings.append(coding(SNOMED, *a.snomed))
    if a.category == "medication" and code == "penicillin" and rng.random() < 0.15:
        manifest, severity = "anaphylaxis", "severe"
    else:
        manifest = "urticaria" if rng.random() < 0.6 else "rash"
        severity = "moderate" if rng.random() < 0.3 else "mild"
    m = MANIFESTATIONS[manifest]
    res: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": aid,
        "meta": meta(),
        "clinicalStatus": concept(coding(AI_CLINICAL, "active", "Active")),
        "verificationStatus": concept(coding(AI_VERIFICATION, "confirmed", "Confirmed")),
        "type": "allergy",
        "category": [a.category],
        "criticality": "high" if severity == "severe" else a.criticality,
        "code": concept(*codings, text=a.name),
        "patient": _subject(p),
        "recordedDate": iso_datetime(recorded),
    }
    if recorder:
        res["recorder"] = ref("Practitioner", recorder.prac_id, recorder.name.text)
    res["reaction"] = [
        {"manifestation": [concept(coding(SNOMED, m[0], m[1]), text=m[2])], "severity": severity}
    ]
    return res


def immunizations(
    rng: random.Random, p: Person, anchor: date, staffing: Staffing
) -> list[dict[str, Any]]:
    last = anchor - timedelta(days=1)
    community = COMMUNITY_OF_DISTRICT[p.district]
    h3 = FACILITY_BY_KEY["h3"]
    doses: list[tuple[datetime, str, int, Facility]] = []
    if p.age_on(anchor) < 18:
        for vac, months, n in CHILD_SCHEDULE:
            if months == 0:
                d = p.birth + timedelta(days=rng.randint(0, 1))
            else:
                d = p.birth + timedelta(days=int(months * 30.44) + rng.randint(0, 10))
            if d <= last and rng.random() < 0.97:
                f = h3 if months == 0 else community
                doses.append((datetime.combine(d, time(rng.randint(9, 11), 0), CST), vac, n, f))
    first = max(p.birth, anchor - timedelta(days=3 * 365))
    for y in range(anchor.year - 3, anchor.year + 1):
        d = date(y, 10, 8) + timedelta(days=rng.randint(0, 45))
        if not first <= d <= last:
            continue
        age = p.age_on(d)
        if (age >= 60 and rng.random() < 0.4) or (0 < age < 18 and rng.random() < 0.25):
            doses.append(
                (datetime.combine(d, time(rng.randint(8, 11), 30), CST), "flu", 1, community)
            )
    if p.age_on(anchor) >= 65 and rng.random() < 0.2:
        d = random_day(rng, first, last)
        doses.append((datetime.combine(d, time(9, 30), CST), "ppsv23", 1, community))
    doses.sort(key=lambda x: (x[0], x[1]))
    out = []
    for i, (when, vac, n, f) in enumerate(doses, 1):
        vx = VACCINES[vac]
        nurse = staffing.nurse(rng, f)
        loc = f.ward_id("05.02") if f is h3 else f.clinic_id("01")
        imm: dict[str, Any] = {
            "resourceType": "Immunization",
            "id": f"imm-{p.pid.removeprefix('pat-')}-{i:02d}",
            "meta": meta(),
            "status": "completed",
            "vaccineCode": concept(coding(CVX, vx.cvx, vx.cvx_display), text=vx.name),
            "patient": _subject(p),
            "occurrenceDateTime": iso_datetime(when),
            "recorded": iso_datetime(when + timedelta(minutes=10)),
            "primarySource": True,
            "location": ref("Location", loc or f.site_id),
            "lotNumber": f"{when.year}{rng.randrange(10**6):06d}",
        }
        if vx.site:
            imm["site"] = concept(coding(V3_SITE, vx.site, SITES[vx.site]))
        imm["route"] = concept(coding(V3_ROUTE, vx.route, ROUTE_NAMES[vx.route]))
        imm["doseQuantity"] = quantity(vx.dose_ml, "mL")
        imm["performer"] = [
            {
                "function": concept(coding(V2_0443, "AP", "Administering Provider")),
                "actor": ref("Practitioner", nurse.prac_id, nurse.name.text),
            }
        ]
        imm["protocolApplied"] = [
            {
                "series": "国家免疫规划" if vac not in ("flu", "ppsv23") else "自愿接种",
                "doseNumberPositiveInt": n,
            }
        ]
        out.append(imm)
    return out
