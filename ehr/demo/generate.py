"""Assemble the demo city: every resource, in load order, and as a transaction Bundle
(http://hl7.org/fhir/R4/http.html#transaction, http://hl7.org/fhir/R4/bundle.html).

Determinism: every random choice comes from a ``random.Random`` seeded with a string derived
from the seed (``"2026/people"``, ``"2026/clinical/17"`` ...); str seeds are hashed with SHA-512,
independent of ``PYTHONHASHSEED``. Dates count back from :func:`anchor_date`, never from today.
The same seed and size give byte-identical JSON.

Load order: Organization, Location (parents first), HealthcareService, Practitioner,
PractitionerRole, Patient, RelatedPerson, Encounter, Condition, Observation,
AllergyIntolerance, MedicationRequest, Immunization. Every reference points at a resource
earlier in the list, so the list can be loaded in chunks, in order, by a store that checks
references.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from ehr.demo.city import (
    COMMUNITY_OF_DISTRICT,
    FACILITIES,
    FACILITY_BY_KEY,
    healthcare_services,
    locations,
    organization,
)
from ehr.demo.clinical import History, history
from ehr.demo.elements import ref
from ehr.demo.people import Person, make_people, patient, related_person
from ehr.demo.workforce import Staffing, practitioner, practitioner_role, roster

__all__ = [
    "DEMO_CITIZEN_ID_KEY",
    "RESOURCE_ORDER",
    "anchor_date",
    "generate_city",
    "city_bundle",
    "demo_citizen_ids",
]

#: HMAC key of the demo's citizen-ID hashes. Demo only: a deployment loads the demo with its own
#: key from settings (``generate_city(..., id_key=settings_key)``) so presented IDs match.
DEMO_CITIZEN_ID_KEY = b"ehr-demo-only: citizen-id hmac key, never use in production"

RESOURCE_ORDER = (
    "Organization",
    "Location",
    "HealthcareService",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
    "Encounter",
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "MedicationRequest",
    "Immunization",
)


def anchor_date(seed: int) -> date:
    """The demo's "today": a day in 2025 chosen by the seed (seed 2026 -> 2025-07-21)."""
    return date(2025, 1, 1) + timedelta(days=seed % 365)


def _people(seed: int, citizens: int) -> list[Person]:
    return make_people(random.Random(f"{seed}/people"), citizens, anchor_date(seed))


def demo_citizen_ids(seed: int = 2026, citizens: int = 300) -> dict[str, str]:
    """Patient id -> the clear citizen ID of that synthetic person (for tests and demos that
    present an ID at a counter). None of these is ever in :func:`generate_city`'s output."""
    return {p.pid: p.citizen_id for p in _people(seed, citizens)}


def generate_city(
    seed: int = 2026, citizens: int = 300, *, id_key: bytes = DEMO_CITIZEN_ID_KEY
) -> list[dict[str, Any]]:
    """The demo city's resources as plain R4 JSON dicts with client-assigned ids, in load order."""
    if citizens < 0:
        raise ValueError("citizens must be >= 0")
    anchor = anchor_date(seed)
    staff = roster(random.Random(f"{seed}/staff"), anchor)
    staffing = Staffing(staff)
    people = _people(seed, citizens)
    by_idx = {p.idx: p for p in people}

    histories: list[History] = [
        history(random.Random(f"{seed}/clinical/{p.idx}"), p, staffing, anchor) for p in people
    ]

    out: dict[str, list[dict[str, Any]]] = {t: [] for t in RESOURCE_ORDER}
    for f in FACILITIES:
        out["Organization"].append(organization(f))
        out["Location"].extend(locations(f))
        out["HealthcareService"].extend(healthcare_services(f))
    for s in staff:
        out["Practitioner"].append(practitioner(s))
        out["PractitionerRole"].append(practitioner_role(s))

    gp_rng = random.Random(f"{seed}/family-doctors")
    mrn_seq: dict[str, int] = {}
    record_seq: dict[str, int] = {}
    for p, h in zip(people, histories, strict=True):
        mrns = []
        for key in h.hospitals:
            mrn_seq[key] = mrn_seq.get(key, 0) + 1
            f = FACILITY_BY_KEY[key]
            mrns.append((f.org_id, f.name, f"{key.upper()}{mrn_seq[key]:08d}"))
        record_seq[p.district] = record_seq.get(p.district, 0) + 1
        age = p.age_on(anchor)
        signed = gp_rng.random() < (0.7 if h.chronic or age >= 65 or age < 7 else 0.3)
        gp = None
        if signed:
            doc = gp_rng.choice(staffing.family_doctors(COMMUNITY_OF_DISTRICT[p.district]))
            gp = ref("PractitionerRole", doc.role_id, f"{doc.name.text}（家庭医生）")
        out["Patient"].append(patient(p, id_key, anchor, record_seq[p.district], mrns, gp))
    for p in people:
        if p.age_on(anchor) < 18:
            for parent_idx in p.parents:
                out["RelatedPerson"].append(related_person(p, by_idx[parent_idx], id_key, anchor))
    for h in histories:
        out["Encounter"].extend(h.encounters)
        out["Condition"].extend(h.conditions)
        out["Observation"].extend(h.observations)
        out["AllergyIntolerance"].extend(h.allergies)
        out["MedicationRequest"].extend(h.medications)
        out["Immunization"].extend(h.immunizations)
    return [r for t in RESOURCE_ORDER for r in out[t]]


def city_bundle(
    seed: int = 2026,
    citizens: int = 300,
    *,
    id_key: bytes = DEMO_CITIZEN_ID_KEY,
    base: str | None = None,
) -> dict[str, Any]:
    """The demo city as one transaction Bundle of ``PUT Type/id`` entries. With ``base`` (the
    server's base URL) each entry also gets ``fullUrl = base/Type/id``."""
    entries = []
    for r in generate_city(seed, citizens, id_key=id_key):
        url = f"{r['resourceType']}/{r['id']}"
        entry: dict[str, Any] = {}
        if base:
            entry["fullUrl"] = f"{base.rstrip('/')}/{url}"
        entry["resource"] = r
        entry["request"] = {"method": "PUT", "url": url}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
