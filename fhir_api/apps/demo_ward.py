"""A ward for the demo nurse (``demo.nurse``), so the nurse station has something to do: three
demo patients admitted to beds of the nurse's ward (in-progress inpatient Encounters of the
nurse's hospital, which also makes them the nurse's patients, see
:mod:`ehr.security.treatment`), each with a wristband record number (MRN), and due work:

* bed 1: ceftriaxone (头孢曲松, ATC J01DD04), due in 30 minutes;
* bed 2: insulin (胰岛素, ATC A10AB01, a high-alert drug: 双人核对), due in an hour;
* bed 3: a vital-signs round, already overdue.

The orders are MedicationRequests with a ``fulfill`` Task each, as the doctor workstation's
``$orders`` makes them (:mod:`appointments.workstation`). The hospital's second nurse (the
``demo.nurse2`` login, :func:`~.demo_accounts.ensure_second_nurse`: added when the hospital has only
one) signs the double check of the high-alert drug. Everything has a fixed id and is written only
when missing, so running it again changes nothing (a completed Task stays completed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ehr.identifiers import mrn_system
from ehr.store import Store

from .demo_accounts import DemoAccount, _all, _read, _ref_id, ensure_second_nurse

__all__ = ["DemoAdmission", "DemoWard", "ensure_demo_ward"]

PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"

#: bed number -> (ATC code, drug, dose, instructions, due in minutes) or None (a vitals round)
ORDERS: dict[int, tuple[str, str, dict[str, Any] | None, str, int] | None] = {
    1: ("J01DD04", "头孢曲松", None, "静滴 qd", 30),
    2: ("A10AB01", "胰岛素注射液", {"value": 4, "unit": "U", "system": UCUM, "code": "[IU]"},
        "餐前皮下注射", 60),
    3: None,
}  # fmt: skip


@dataclass(frozen=True)
class DemoAdmission:
    patient: str
    name: str
    mrn: str  #: the wristband's value (system: :attr:`DemoWard.mrn_system`)
    encounter: str
    bed: str  #: Location id
    bed_name: str
    order: str | None  #: the MedicationRequest id, if any
    drug: str | None  #: its ATC code


@dataclass(frozen=True)
class DemoWard:
    ward: str
    organization: str
    mrn_system: str
    second_nurse: str | None
    admissions: list[DemoAdmission] = field(default_factory=list)


def _put_once(store: Store, resource: dict[str, Any]) -> None:
    if not store.exists(resource["resourceType"], resource["id"]):
        store.update(resource["resourceType"], resource["id"], resource)


def _is_ward(loc: dict[str, Any] | None) -> bool:
    codes = ((loc or {}).get("physicalType") or {}).get("coding") or ()
    return any(c.get("code") == "wa" for c in codes)


def _ward_of(store: Store, role: dict[str, Any], org: str) -> str:
    """The role's ward, else one of the organization's (added to the role), else a new one."""
    for loc in role.get("location") or ():
        lid = _ref_id(loc, "Location")
        if lid and _is_ward(_read(store, "Location", lid)):
            return lid
    wards = sorted(
        (x for x in _all(store, "Location", [("organization", f"Organization/{org}")])
         if _is_ward(x)),
        key=lambda x: x["id"],
    )  # fmt: skip
    if wards:
        ward = wards[0]["id"]
    else:
        ward = f"loc-{org}-ward-demo"
        _put_once(store, {
            "resourceType": "Location", "id": ward, "status": "active", "name": "住院病区",
            "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "wa", "display": "Ward"}]},
            "managingOrganization": {"reference": f"Organization/{org}"},
        })  # fmt: skip
    role["location"] = [*(role.get("location") or []), {"reference": f"Location/{ward}"}]
    store.update("PractitionerRole", role["id"], role)
    return ward


def _name(p: dict[str, Any]) -> str:
    n = (p.get("name") or [{}])[0]
    return str(n.get("text") or n.get("family", "") + "".join(n.get("given", [])))


def _wristband(store: Store, patient: dict[str, Any], system: str, number: int) -> str:
    """The patient's MRN at this hospital, given one (``ZY`` + number) when they have none."""
    for ident in patient.get("identifier") or ():
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    value = f"ZY{number:06d}"
    patient["identifier"] = [*(patient.get("identifier") or []), {
        "use": "usual", "system": system, "value": value,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]},
    }]  # fmt: skip
    store.update("Patient", patient["id"], patient)
    return value


def _order(store: Store, adm_id: str, pid: str, enc: str, bed: int, now: datetime) -> str | None:
    spec = ORDERS.get(bed)
    task: dict[str, Any] = {
        "resourceType": "Task", "id": f"task-{adm_id}", "status": "requested", "intent": "order",
        "for": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{enc}"},
        "authoredOn": now.isoformat(),
    }  # fmt: skip
    if spec is None:
        task["description"] = "测量生命体征"
        task["executionPeriod"] = {"start": (now - timedelta(minutes=15)).isoformat()}
        _put_once(store, task)
        return None
    code, drug, dose, text, due = spec
    mr_id = f"mr-{adm_id}"
    dosage: dict[str, Any] = {"text": text}
    if dose:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    _put_once(store, {
        "resourceType": "MedicationRequest", "id": mr_id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": code, "display": drug}],
                                      "text": drug},
        "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{enc}"},
        "authoredOn": now.isoformat(), "dosageInstruction": [dosage],
    })  # fmt: skip
    task["code"] = {"coding": [{"system": TASK_CODE, "code": "fulfill"}]}
    task["description"] = f"给药：{drug}"
    task["focus"] = {"reference": f"MedicationRequest/{mr_id}"}
    task["executionPeriod"] = {"start": (now + timedelta(minutes=due)).isoformat()}
    _put_once(store, task)
    return mr_id


def ensure_demo_ward(
    store: Store,
    nurse: DemoAccount,
    *,
    exclude: tuple[str, ...] = (),
    now: datetime | None = None,
) -> DemoWard | None:
    """Admit three adult demo patients (not those in ``exclude``, ``Patient/x`` or ``x``) to the
    demo nurse's ward; None when the nurse has no role or organization."""
    now = now or datetime.now(UTC)
    role = _read(store, "PractitionerRole", (nurse.practitioner_role or "").split("/")[-1])
    org = _ref_id((role or {}).get("organization"), "Organization")
    if role is None or org is None:
        return None
    ward = _ward_of(store, role, org)
    system = mrn_system(org)
    second = ensure_second_nurse(
        store, org, _ref_id(role.get("practitioner"), "Practitioner"), ward
    )
    skip = {x.split("/")[-1] for x in exclude}
    adults = sorted(
        (p for p in _all(store, "Patient", [("birthdate", "le2000-01-01")])
         if p["id"] not in skip),
        key=lambda p: p["id"],
    )  # fmt: skip
    out = DemoWard(ward, org, system, second)
    for bed, patient in enumerate(adults[: len(ORDERS)], start=1):
        bed_id, bed_name = f"{ward}-bed-{bed}", f"{bed}床"
        _put_once(store, {
            "resourceType": "Location", "id": bed_id, "status": "active", "name": bed_name,
            "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "bd", "display": "Bed"}]},
            "managingOrganization": {"reference": f"Organization/{org}"},
            "partOf": {"reference": f"Location/{ward}"},
        })  # fmt: skip
        adm_id = f"demo-ward-{bed}"
        enc = f"enc-{adm_id}"
        mrn = _wristband(store, patient, system, bed)
        _put_once(store, {
            "resourceType": "Encounter", "id": enc, "status": "in-progress",
            "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "serviceProvider": {"reference": f"Organization/{org}"},
            "location": [{"location": {"reference": f"Location/{bed_id}", "display": bed_name},
                          "status": "active"}],
            "period": {"start": (now - timedelta(days=bed)).isoformat()},
        })  # fmt: skip
        order = _order(store, adm_id, patient["id"], enc, bed, now)
        spec = ORDERS.get(bed)
        out.admissions.append(
            DemoAdmission(
                patient["id"], _name(patient), mrn, enc, bed_id, bed_name, order,
                spec[0] if spec else None,
            )
        )  # fmt: skip
    return out
