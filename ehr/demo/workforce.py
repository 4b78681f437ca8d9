"""Doctors and nurses of the demo city: Practitioner and PractitionerRole
(http://hl7.org/fhir/R4/practitioner.html, http://hl7.org/fhir/R4/practitionerrole.html).

Every department of every facility gets its doctors (one unless the facility says more), every
facility its nurses; each person has one role. Family doctors (家庭医生) are the general
practitioners of the community health centres.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from ehr.codesystems import department_coding
from ehr.demo.city import FACILITIES, SPECIALTY, WEEKDAYS, Facility
from ehr.demo.elements import SNOMED, coding, concept, iso_date, meta, ref
from ehr.demo.names import Name, human_names, pick_given, pick_surname
from ehr.demo.vocab import QUALIFICATION_SYSTEM, QUALIFICATIONS, TITLE_SYSTEM, TITLES
from ehr.identifiers import PRACTITIONER_LICENCE_SYSTEM

PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"


@dataclass(frozen=True)
class Staff:
    prac_id: str
    role_id: str
    name: Name
    female: bool
    birth: date
    nurse: bool
    facility: Facility
    dept: str  # department code ("" for a ward nurse of a hospital)
    title: str
    licence: str

    @property
    def is_family_doctor(self) -> bool:
        return not self.nurse and not self.facility.is_hospital and self.dept == "02"


def _title(age: int, nurse: bool) -> str:
    if nurse:
        return "charge-nurse" if age >= 40 else "senior-nurse" if age >= 28 else "nurse"
    if age >= 50:
        return "chief-physician"
    if age >= 42:
        return "associate-chief-physician"
    return "attending-physician" if age >= 33 else "resident-physician"


def roster(rng: random.Random, anchor: date) -> list[Staff]:
    """The staff of every facility, in facility and department order."""
    staff: list[Staff] = []

    def add(f: Facility, dept: str, nurse: bool) -> None:
        n = len(staff) + 1
        female = rng.random() < (0.93 if nurse else 0.55)
        age = rng.randint(24, 40) if nurse else rng.randint(28, 60)
        birth = date(anchor.year - age, rng.randint(1, 12), rng.randint(1, 28))
        name = Name(pick_surname(rng), pick_given(rng, birth.year, female))
        digits = 12 if nurse else 15
        licence = f"{rng.randrange(10 ** (digits - 1), 10**digits)}"
        staff.append(
            Staff(
                f"prac-{n:03d}",
                f"role-{n:03d}",
                name,
                female,
                birth,
                nurse,
                f,
                dept,
                _title(age, nurse),
                licence,
            )
        )

    for f in FACILITIES:
        for dept in f.departments:
            for _ in range(f.doctors.get(dept, 1)):
                add(f, dept, nurse=False)
        for i in range(f.nurses):
            # a hospital's first nurse works its first ward; community nurses vaccinate
            dept = "01" if not f.is_hospital else (f.wards[0][0] if i == 0 and f.wards else "")
            add(f, dept, nurse=True)
    return staff


def practitioner(s: Staff) -> dict[str, Any]:
    qual = "nurse" if s.nurse else "physician"
    start = date(s.birth.year + (21 if s.nurse else 25), 7, 1)
    return {
        "resourceType": "Practitioner",
        "id": s.prac_id,
        "meta": meta(),
        "identifier": [
            {"use": "official", "system": PRACTITIONER_LICENCE_SYSTEM, "value": s.licence}
        ],
        "active": True,
        "name": human_names(s.name),
        "gender": "female" if s.female else "male",
        "birthDate": iso_date(s.birth),
        "qualification": [
            {
                "identifier": [{"system": PRACTITIONER_LICENCE_SYSTEM, "value": s.licence}],
                "code": concept(
                    coding(QUALIFICATION_SYSTEM, qual, QUALIFICATIONS[qual]),
                    text=QUALIFICATIONS[qual],
                ),
                "period": {"start": iso_date(start)},
            }
        ],
        "communication": [concept(coding("urn:ietf:bcp:47", "zh-CN", "Chinese (China)"))],
    }


def practitioner_role(s: Staff) -> dict[str, Any]:
    f = s.facility
    kind = "nurse" if s.nurse else "doctor"
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": s.role_id,
        "meta": meta(),
        "active": True,
        "practitioner": ref("Practitioner", s.prac_id, s.name.text),
        "organization": ref("Organization", f.org_id, f.name),
        "code": [
            concept(coding(PRACTITIONER_ROLE, kind, kind.capitalize())),
            concept(coding(TITLE_SYSTEM, s.title, TITLES[s.title]), text=TITLES[s.title]),
        ],
    }
    if s.dept:
        specialty = [department_coding(s.dept)]
        if s.dept in SPECIALTY:
            specialty.append(coding(SNOMED, *SPECIALTY[s.dept]))
        role["specialty"] = [concept(*specialty)]
        ward = f.ward_id(s.dept) if s.nurse else None
        role["location"] = [ref("Location", ward or f.clinic_id(s.dept))]
        if not (s.nurse and ward):
            role["healthcareService"] = [ref("HealthcareService", f.service_id(s.dept))]
    else:
        role["location"] = [ref("Location", f"{f.site_id}-opd")]
    if s.dept == "20" or (s.nurse and f.ward_id(s.dept)):
        role["availableTime"] = [{"allDay": True}]
    else:
        role["availableTime"] = [
            {
                "daysOfWeek": WEEKDAYS,
                "availableStartTime": "08:00:00",
                "availableEndTime": "17:30:00",
            }
        ]
    return role


class Staffing:
    """Who works where, for picking the doctor and nurse of a visit."""

    def __init__(self, staff: list[Staff]) -> None:
        self.doctors: dict[tuple[str, str], list[Staff]] = {}
        self.nurses: dict[str, list[Staff]] = {}
        self.all_doctors: dict[str, list[Staff]] = {}
        for s in staff:
            if s.nurse:
                self.nurses.setdefault(s.facility.key, []).append(s)
            else:
                self.doctors.setdefault((s.facility.key, s.dept), []).append(s)
                self.all_doctors.setdefault(s.facility.key, []).append(s)

    def doctor(self, rng: random.Random, f: Facility, dept: str) -> Staff:
        return rng.choice(self.doctors.get((f.key, dept)) or self.all_doctors[f.key])

    def nurse(self, rng: random.Random, f: Facility) -> Staff:
        return rng.choice(self.nurses[f.key])

    def family_doctors(self, f: Facility) -> list[Staff]:
        return self.doctors.get((f.key, "02"), [])
