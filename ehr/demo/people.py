"""Citizens of the demo city, in households: demographics, Patient and RelatedPerson
(http://hl7.org/fhir/R4/patient.html, http://hl7.org/fhir/R4/relatedperson.html).

Households are families with children, couples, and people living alone; a child takes the
father's surname and the household's address and ethnicity. A parent who is also a citizen of
the demo gets a RelatedPerson for each child under 18 ("parent acting for child"). The
RelatedPerson carries the parent's protected citizen-ID identifier, so a parent who signs in with
their own ID finds the children they may act for by identifier, without a reference from the
parent's Patient (which would point forward in the load order).

Clear citizen IDs exist only inside this module's :class:`Person` objects; resources carry the
protected form (:func:`ehr.identifiers.citizen_id_identifier`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ehr.codesystems import ethnicity_extension, sex_extension
from ehr.demo.city import COMMUNITY_OF_DISTRICT, DISTRICT_BY_CODE, DISTRICTS, address
from ehr.demo.elements import coding, concept, iso_date, meta, ref
from ehr.demo.names import Name, human_names, pick_given, pick_surname
from ehr.identifiers import (
    HEALTH_RECORD_SYSTEM,
    citizen_id_identifier,
    make_citizen_id,
    mrn_system,
)

V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
MARITAL = {"M": "Married", "S": "Never Married", "W": "Widowed", "D": "Divorced"}

#: invented birth-place prefectures of people who moved to the city (no real GB/T 2260 code)
MIGRANT_REGIONS = ("419902", "419903", "519904", "519905")

# ethnicity weights (per mille) for the non-Han minority that lives in a Jiangsu city
_ETHNIC_WEIGHTS = {
    "01": 930,
    "03": 18,
    "11": 14,
    "08": 8,
    "06": 7,
    "15": 7,
    "02": 6,
    "10": 3,
    "07": 3,
    "04": 2,
    "05": 2,
}


@dataclass
class Person:
    idx: int
    name: Name
    female: bool
    birth: date
    ethnicity: str
    district: str
    street: int
    line: str
    citizen_id: str
    phone: str | None
    marital: str | None
    household: int
    parents: list[int] = field(default_factory=list)  # idx of parents among the citizens
    pid: str = ""

    def age_on(self, d: date) -> int:
        return d.year - self.birth.year - ((d.month, d.day) < (self.birth.month, self.birth.day))


def _age_birth(rng: random.Random, anchor: date, lo: int, hi: int) -> date:
    days = rng.randint(lo * 365, hi * 365 + 364)
    return anchor - timedelta(days=days + 1)


class _Registry:
    """Hands out unique citizen IDs and phone numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: set[str] = set()
        self.phones: set[str] = set()

    def citizen_id(self, region: str, birth: date, female: bool) -> str:
        while True:
            seq = self.rng.randrange(0, 500) * 2 + (0 if female else 1)
            cid = make_citizen_id(region, birth, seq, female)
            if cid not in self.ids:
                self.ids.add(cid)
                return cid

    def phone(self) -> str:
        # 140 is an IoT-only prefix whose numbers have 13 digits: no 11-digit 140 number
        # reaches a subscriber, so an SMS reminder sent in a demo cannot reach a real phone
        while True:
            p = f"140{self.rng.randrange(10**8):08d}"
            if p not in self.phones:
                self.phones.add(p)
                return p


def make_people(rng: random.Random, n: int, anchor: date) -> list[Person]:
    """``n`` citizens in households, numbered 1..n in household order."""
    reg = _Registry(rng)
    people: list[Person] = []
    household = 0
    districts = list(DISTRICTS)
    ethnic_codes = list(_ETHNIC_WEIGHTS)

    def add(
        female: bool,
        birth: date,
        surname: str,
        ethnicity: str,
        home: tuple[str, int, str],
        marital: str | None,
        local: bool,
    ) -> Person:
        age = anchor.year - birth.year
        region = home[0] if local else rng.choice(MIGRANT_REGIONS)
        p = Person(
            idx=len(people) + 1,
            name=Name(surname, pick_given(rng, birth.year, female)),
            female=female,
            birth=birth,
            ethnicity=ethnicity,
            district=home[0],
            street=home[1],
            line=home[2],
            citizen_id=reg.citizen_id(region, birth, female),
            phone=reg.phone() if age >= 16 or (age >= 12 and rng.random() < 0.5) else None,
            marital=marital,
            household=household,
        )
        people.append(p)
        return p

    while len(people) < n:
        household += 1
        left = n - len(people)
        d = rng.choices(districts, weights=[x.weight for x in districts])[0]
        s_idx = rng.randrange(len(d.streets))
        street = d.streets[s_idx]
        road = rng.choice(street.roads)
        if street.rural:
            line = f"{road}{rng.randint(1, 9)}组{rng.randint(1, 60)}号"
        else:
            line = (
                f"{road}{rng.randint(1, 300)}号{rng.randint(1, 20)}栋{rng.randint(1, 4)}单元"
                f"{rng.randint(1, 18)}{rng.randint(1, 4):02d}室"
            )
        home = (d.code, s_idx, line)
        eth = rng.choices(ethnic_codes, weights=[_ETHNIC_WEIGHTS[c] for c in ethnic_codes])[0]
        local = rng.random() < 0.85
        r = rng.random()
        if r < 0.36 and left >= 3:
            father_b = _age_birth(rng, anchor, 27, 48)
            mother_b = father_b + timedelta(days=rng.randint(-3 * 365, 4 * 365))
            father = add(False, father_b, pick_surname(rng), eth, home, "M", local)
            mother = add(True, mother_b, pick_surname(rng), eth, home, "M", local)
            oldest = min(17, anchor.year - mother_b.year - 22)
            kids = 1 if left == 3 or oldest < 3 or rng.random() < 0.6 else 2
            for _ in range(kids):
                child_b = _age_birth(rng, anchor, 0, max(0, oldest))
                surname = father.name.family if rng.random() < 0.95 else mother.name.family
                child = add(rng.random() < 0.48, child_b, surname, eth, home, None, True)
                child.parents = [father.idx, mother.idx]
        elif r < 0.56 and left >= 2:
            b = _age_birth(rng, anchor, 60, 85)
            add(False, b, pick_surname(rng), eth, home, "M", local)
            add(
                True,
                b + timedelta(days=rng.randint(-4 * 365, 3 * 365)),
                pick_surname(rng),
                eth,
                home,
                "M",
                local,
            )
        elif r < 0.74 and left >= 2:
            b = _age_birth(rng, anchor, 24, 58)
            add(False, b, pick_surname(rng), eth, home, "M", local)
            add(
                True,
                b + timedelta(days=rng.randint(-3 * 365, 3 * 365)),
                pick_surname(rng),
                eth,
                home,
                "M",
                local,
            )
        elif r < 0.86:
            add(
                rng.random() < 0.62,
                _age_birth(rng, anchor, 65, 95),
                pick_surname(rng),
                eth,
                home,
                "W",
                local,
            )
        else:
            add(
                rng.random() < 0.5,
                _age_birth(rng, anchor, 18, 59),
                pick_surname(rng),
                eth,
                home,
                rng.choice("SSSD"),
                local,
            )
    width = max(4, len(str(n)))
    for p in people:
        p.pid = f"pat-{p.idx:0{width}d}"
    return people[:n]


def health_record_number(p: Person, seq: int) -> str:
    """城乡居民健康档案编号: county 6 + street 3 + community 3 + sequence 5."""
    street = DISTRICT_BY_CODE[p.district].streets[p.street]
    return f"{p.district}{street.code}001{seq:05d}"


def patient(
    p: Person,
    key: bytes,
    anchor: date,
    record_seq: int,
    mrns: list[tuple[str, str, str]],
    general_practitioner: dict[str, Any] | None,
) -> dict[str, Any]:
    """The Patient. ``mrns`` are (organization id, organization name, MRN) of the hospitals
    the person visited; ``general_practitioner`` the family doctor's PractitionerRole reference."""
    centre = COMMUNITY_OF_DISTRICT[p.district]
    identifiers = [
        citizen_id_identifier(p.citizen_id, key, today=anchor),
        {
            "use": "official",
            "type": {"text": "城乡居民健康档案编号"},
            "system": HEALTH_RECORD_SYSTEM,
            "value": health_record_number(p, record_seq),
            "assigner": ref("Organization", centre.org_id, centre.name),
        },
    ]
    for org_id, org_name, mrn in mrns:
        identifiers.append(
            {
                "use": "usual",
                "type": concept(
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "MR",
                        "Medical record number",
                    ),
                    text="病案号",
                ),
                "system": mrn_system(org_id),
                "value": mrn,
                "assigner": ref("Organization", org_id, org_name),
            }
        )
    sex = "2" if p.female else "1"
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": p.pid,
        "meta": meta(),
        "extension": [sex_extension(sex), ethnicity_extension(p.ethnicity)],
        "identifier": identifiers,
        "active": True,
        "name": human_names(p.name),
    }
    if p.phone:
        res["telecom"] = [{"system": "phone", "value": p.phone, "use": "mobile", "rank": 1}]
    res["gender"] = "female" if p.female else "male"
    res["birthDate"] = iso_date(p.birth)
    res["address"] = [address(p.district, p.street, p.line, "home")]
    if p.marital:
        res["maritalStatus"] = concept(coding(V3_MARITAL, p.marital, MARITAL[p.marital]))
    res["communication"] = [
        {
            "language": concept(coding("urn:ietf:bcp:47", "zh-CN", "Chinese (China)")),
            "preferred": True,
        }
    ]
    if general_practitioner:
        res["generalPractitioner"] = [general_practitioner]
    res["managingOrganization"] = ref("Organization", centre.org_id, centre.name)
    return res


def related_person(child: Person, parent: Person, key: bytes, anchor: date) -> dict[str, Any]:
    """The parent, acting for ``child``, as a RelatedPerson of the child."""
    rel = ("MTH", "mother", "母亲") if parent.female else ("FTH", "father", "父亲")
    n = child.parents.index(parent.idx) + 1
    res: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": f"rp-{child.pid.removeprefix('pat-')}-{n}",
        "meta": meta(),
        "identifier": [citizen_id_identifier(parent.citizen_id, key, today=anchor)],
        "active": True,
        "patient": ref("Patient", child.pid, child.name.text),
        "relationship": [
            concept(coding(V3_ROLE, rel[0], rel[1]), text=rel[2]),
            concept(coding(V3_ROLE, "GUARD", "guardian"), text="监护人"),
        ],
        "name": human_names(parent.name),
    }
    if parent.phone:
        res["telecom"] = [{"system": "phone", "value": parent.phone, "use": "mobile"}]
    res["gender"] = "female" if parent.female else "male"
    res["birthDate"] = iso_date(parent.birth)
    res["address"] = [address(parent.district, parent.street, parent.line, "home")]
    res["period"] = {"start": iso_date(child.birth)}
    return res


__all__ = [
    "Person",
    "make_people",
    "patient",
    "related_person",
    "health_record_number",
]
