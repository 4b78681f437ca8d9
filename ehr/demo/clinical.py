"""The clinical history of one demo citizen: plan the visits (:mod:`ehr.demo.plan`), sort them
in time and give ids (``enc-0001-01`` is the person's first visit), then write Encounter,
Condition, Observation, AllergyIntolerance, MedicationRequest and Immunization
(:mod:`ehr.demo.records`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from ehr.demo.body import Body
from ehr.demo.elements import (
    CST,
    iso_date,
    iso_datetime,
)
from ehr.demo.people import Person
from ehr.demo.plan import Planner, choose_chronic, maintenance_drugs
from ehr.demo.records import (
    allergy,
    condition,
    encounter,
    immunizations,
    laboratory,
    medication_request,
    vital_signs,
)
from ehr.demo.vocab import ALLERGENS
from ehr.demo.workforce import Staff, Staffing

__all__ = ["History", "history"]


@dataclass
class History:
    encounters: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    allergies: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    immunizations: list[dict[str, Any]] = field(default_factory=list)
    hospitals: list[str] = field(default_factory=list)  # facility keys, first visit first
    chronic: list[str] = field(default_factory=list)


def history(rng: random.Random, p: Person, staffing: Staffing, anchor: date) -> History:
    """Plan and write the clinical record of ``p``."""
    h = History()
    age = p.age_on(anchor)
    chronic = choose_chronic(rng, age)
    h.chronic = chronic
    allergies: list[str] = []
    if rng.random() < 0.12:
        pool = [a for a in ALLERGENS if age < 10 or a != "egg"]
        weights = {
            "penicillin": 30,
            "cephalosporin": 8,
            "sulfonamide": 6,
            "seafood": 20,
            "peanut": 6,
            "egg": 8,
            "pollen": 12,
            "dust-mite": 12,
        }
        allergies.append(rng.choices(pool, weights=[weights[a] for a in pool])[0])
        if rng.random() < 0.2:
            second = rng.choices(pool, weights=[weights[a] for a in pool])[0]
            if second not in allergies:
                allergies.append(second)
    maintenance = maintenance_drugs(rng, chronic, age)
    body = Body(rng, p, chronic)

    plan = Planner(rng, p, anchor, allergies)
    plan.chronic_care(chronic)
    plan.acute()
    if p.female and 22 <= age <= 40 and rng.random() < 0.08:
        plan.pregnancy()
    if age <= 6:
        plan.child_checks()
    plan.health_checks()

    visits = sorted(plan.visits, key=lambda v: (v.start, v.order))
    pnum = p.pid.removeprefix("pat-")
    doctors: list[Staff] = []
    for i, v in enumerate(visits, 1):
        v.eid = f"enc-{pnum}-{i:02d}"
        doctors.append(staffing.doctor(rng, v.fac, v.dept))
        h.encounters.append(encounter(p, v, doctors[-1]))
        if v.fac.is_hospital and v.fac.key not in h.hospitals:
            h.hospitals.append(v.fac.key)

    # conditions: chronic ones at the first visit that names them, acute ones where diagnosed
    cond_ids: dict[str, str] = {}
    n_cond = 0
    for code in chronic:
        idx = next((i for i, v in enumerate(visits) if code in v.reasons), 0 if visits else None)
        if idx is None:
            continue
        v, doc = visits[idx], doctors[idx]
        n_cond += 1
        cid = f"cond-{pnum}-{n_cond:02d}"
        cond_ids[code] = cid
        min_age = 3 if code == "J45.9" else 7 if code == "H52.1" else 18
        onset = v.start.date() - timedelta(days=rng.randint(30, 3650))
        onset = min(max(onset, p.birth + timedelta(days=365 * min_age)), v.start.date())
        h.conditions.append(
            condition(cid, p, code, v, doc, chronic=True, onset=iso_date(onset), abated=None)
        )
    visit_cond: dict[tuple[int, str], str] = {}
    last_moment = datetime.combine(anchor, time(0, 0), CST)
    for i, v in enumerate(visits):
        for code in v.new_conditions:
            n_cond += 1
            cid = f"cond-{pnum}-{n_cond:02d}"
            visit_cond[(i, code)] = cid
            onset = v.start - timedelta(hours=rng.randint(2, 96))
            abated: datetime | None = v.end + timedelta(days=rng.randint(5, 21))
            if code == "Z34.9" or (abated and abated >= last_moment):
                abated = None
            h.conditions.append(
                condition(
                    cid,
                    p,
                    code,
                    v,
                    doctors[i],
                    chronic=False,
                    onset=iso_datetime(onset),
                    abated=abated,
                )
            )

    # observations
    for v in visits:
        if v.vitals:
            h.observations.extend(vital_signs(p, v, body, staffing.nurse(rng, v.fac)))
        h.observations.extend(laboratory(p, v, body))

    # medication requests: maintenance medicines renewed at every care visit, the last one active
    last_care: dict[str, int] = {}
    for i, v in enumerate(visits):
        if v.chronic_meds:
            for code in v.reasons:
                if code in maintenance:
                    last_care[code] = i
    n_med = 0
    for i, v in enumerate(visits):
        orders: list[tuple[str, str | None, str, bool]] = []
        if v.chronic_meds:
            for code in v.reasons:
                for drug in maintenance.get(code, []):
                    status = "active" if last_care.get(code) == i else "completed"
                    orders.append((drug, cond_ids.get(code), status, True))
        for drug, code in v.meds:
            reason = visit_cond.get((i, code)) or cond_ids.get(code)
            long_term = drug == "folic-acid"
            orders.append((drug, reason, "active" if long_term else "completed", long_term))
        for drug, reason, status, continuous in orders:
            n_med += 1
            h.medications.append(
                medication_request(
                    f"medrx-{pnum}-{n_med:02d}",
                    p,
                    v,
                    doctors[i],
                    drug,
                    reason,
                    status=status,
                    continuous=continuous,
                )
            )

    # allergies, recorded at the first visit
    for j, code in enumerate(allergies, 1):
        if visits:
            when, recorder = visits[0].start, doctors[0]
        else:
            when, recorder = datetime.combine(plan.first, time(9, 0), CST), None
        h.allergies.append(allergy(f"alg-{pnum}-{j:02d}", p, code, when, recorder, rng))

    h.immunizations = immunizations(rng, p, anchor, staffing)
    return h
