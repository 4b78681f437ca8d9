"""A small hospital for the appointment tests (no tests here; imported by test_appointments_*).

云泽市第一人民医院 (``org-h1``, as in the demo city) with an endocrinology clinic (two doctors)
and a paediatric clinic, four patients (a parent who may act for their child through a
RelatedPerson, another adult, and one without a citizen ID), a booking policy and a clock fixed
at Monday 2025-07-21 09:00 CST (the demo's anchor day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from appointments import (
    Actor,
    Appointments,
    Availability,
    BookingPolicy,
    Eligibility,
    LogSender,
    Session,
    availability_extension,
    generate_slots,
    install,
    policy_resource,
)
from appointments.fhirdata import CST
from ehr.demo import DEMO_CITIZEN_ID_KEY
from ehr.identifiers import citizen_id_identifier, make_citizen_id
from ehr.store import Store

MONDAY = date(2025, 7, 21)
NOW = datetime(2025, 7, 21, 9, 0, tzinfo=CST)
ORG = "org-h1"

POLICY = BookingPolicy(
    release_days_ahead=7,
    release_time=time(8, 0),
    max_active_bookings=3,
    max_per_department_per_day=1,
    cancel_cutoff_hours=2,
    no_show_limit=2,
    no_show_window_days=90,
    blacklist_days=30,
    hold_minutes=10,
)

ENDO = Availability(
    ORG,
    (
        Session(
            "am",
            ("mon", "tue", "wed", "thu", "fri", "sat"),
            time(8, 0),
            time(11, 30),
            slot_minutes=30,
            visit_type="expert",
        ),
        Session(
            "pm",
            ("mon", "tue", "wed", "thu", "fri"),
            time(13, 30),
            time(17, 0),
            slot_count=5,
            visit_type="general",
        ),
    ),
)
PAED = Availability(
    ORG,
    (Session("am", ("mon", "tue", "wed", "thu", "fri"), time(8, 0), time(12, 0), slot_minutes=60),),
    eligibility=Eligibility(max_age=14),
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


def cid(seq: int, born: date, female: bool) -> str:
    return make_citizen_id("329902", born, seq, female)


def patient(
    pid: str, family: str, born: date, female: bool, seq: int | None, phone: str
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "active": True,
        "name": [{"text": family, "family": family}],
        "telecom": [{"system": "phone", "value": phone, "use": "mobile"}],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
    }
    if seq is not None:
        res["identifier"] = [
            citizen_id_identifier(cid(seq, born, female), DEMO_CITIZEN_ID_KEY, today=MONDAY)
        ]
    return res


def schedule(sid: str, role: str, service: str, av: Availability, specialty: str) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": sid,
        "extension": [availability_extension(av)],
        "active": True,
        "serviceType": [
            {
                "coding": [
                    {"system": "https://ehr.example.cn/fhir/CodeSystem/department", "code": service}
                ]
            }
        ],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": specialty}]}],
        "actor": [
            {"reference": f"PractitionerRole/{role}"},
            {"reference": f"HealthcareService/{service}"},
            {"reference": "Location/loc-h1-opd"},
        ],
    }


def world_resources() -> list[dict[str, Any]]:
    parent_born, child_born = date(1988, 3, 2), date(2019, 5, 6)
    parent = patient("pat-1", "王丽", parent_born, True, 2, "14000000001")
    parent_cid = cid(2, parent_born, True)
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": ORG, "active": True, "name": "云泽市第一人民医院"},
        {
            "resourceType": "Location",
            "id": "loc-h1-opd",
            "status": "active",
            "name": "门诊楼",
            "managingOrganization": {"reference": f"Organization/{ORG}"},
        },
        {
            "resourceType": "Location",
            "id": "loc-h1-w03",
            "status": "active",
            "name": "内科病区",
            "managingOrganization": {"reference": f"Organization/{ORG}"},
        },
        {
            "resourceType": "HealthcareService",
            "id": "hs-endo",
            "active": True,
            "name": "内分泌科",
            "providedBy": {"reference": f"Organization/{ORG}"},
        },
        {
            "resourceType": "HealthcareService",
            "id": "hs-paed",
            "active": True,
            "name": "儿科",
            "providedBy": {"reference": f"Organization/{ORG}"},
        },
    ]
    for n, (role, svc) in enumerate(
        (("role-a", "hs-endo"), ("role-b", "hs-endo"), ("role-c", "hs-paed")), 1
    ):
        out.append(
            {
                "resourceType": "Practitioner",
                "id": f"prac-{n}",
                "active": True,
                "name": [{"text": f"医生{n}"}],
            }
        )
        out.append(
            {
                "resourceType": "PractitionerRole",
                "id": role,
                "active": True,
                "practitioner": {"reference": f"Practitioner/prac-{n}"},
                "organization": {"reference": f"Organization/{ORG}"},
                "healthcareService": [{"reference": f"HealthcareService/{svc}"}],
            }
        )
    out += [
        {
            "resourceType": "Practitioner",
            "id": "nurse-1",
            "active": True,
            "name": [{"text": "护士1"}],
        },
        {
            "resourceType": "Practitioner",
            "id": "nurse-2",
            "active": True,
            "name": [{"text": "护士2"}],
        },
        parent,
        patient("pat-2", "李建国", date(1970, 1, 9), False, 11, "14000000002"),
        patient("pat-child", "王小雨", child_born, False, 13, "14000000003"),
        patient("pat-noid", "赵敏", date(1990, 8, 1), True, None, "14000000004"),
        {
            "resourceType": "RelatedPerson",
            "id": "rp-child-1",
            "active": True,
            "identifier": [citizen_id_identifier(parent_cid, DEMO_CITIZEN_ID_KEY, today=MONDAY)],
            "patient": {"reference": "Patient/pat-child"},
            "relationship": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                            "code": "MTH",
                        }
                    ]
                }
            ],
            "telecom": [{"system": "phone", "value": "14000000001"}],
            "period": {"start": child_born.isoformat()},
        },
        schedule("sch-a", "role-a", "hs-endo", ENDO, "394583002"),
        schedule("sch-b", "role-b", "hs-endo", ENDO, "394583002"),
        schedule("sch-c", "role-c", "hs-paed", PAED, "394537008"),
        {**policy_resource(ORG, POLICY), "id": "policy-h1"},
    ]
    return out


@dataclass
class World:
    store: Store
    svc: Appointments
    clock: Clock
    sender: LogSender

    @property
    def parent(self) -> Actor:
        return Actor.citizen("pat-1")

    @property
    def doctor(self) -> Actor:
        return Actor.clinician("prac-1", "role-a", ORG)

    @property
    def nurse(self) -> Actor:
        return Actor.clinician("nurse-1", None, ORG)

    def slot(self, schedule: str, day: date, session: str, n: int) -> str:
        return f"{schedule}-{day:%Y%m%d}-{session}-{n:02d}"

    def resource(self, rtype: str, rid: str) -> dict[str, Any]:
        return self.store.read(rtype, rid).resource()

    def count(self, rtype: str, params: list[tuple[str, str]] | None = None) -> int:
        page = self.store.search(rtype, [*(params or []), ("_summary", "count")])
        return int(page.total)

    def versions(self, rtype: str, rid: str) -> int:
        return self.store.read(rtype, rid).version


def build_world(
    store: Store, days: int = 9, schedules: tuple[str, ...] = ("sch-a", "sch-b", "sch-c")
) -> World:
    with store.write() as ctx:
        for r in world_resources():
            ctx.update(r["resourceType"], r["id"], r)
    clock = Clock(NOW)
    sender = LogSender()
    svc = install(store, sender=sender, clock=clock)
    for s in schedules:
        generate_slots(svc, s, MONDAY, days)
    return World(store, svc, clock, sender)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), CST)


def plus(days: int) -> date:
    return MONDAY + timedelta(days=days)
