"""Availability rules, slot generation for a rolling window, the release window and $find."""

from __future__ import annotations

from datetime import date, time

import orjson
import pytest
from test_appointments_support import ENDO, MONDAY, NOW, ORG, POLICY, World, build_world, plus

from appointments import (
    Actor,
    Availability,
    BookingPolicy,
    Closure,
    ExtraDay,
    FindRequest,
    Session,
    availability_extension,
    availability_of,
    book,
    find_slots,
    generate_slots,
    roll_window,
    save_policy,
)
from appointments.codes import SLOT_NUMBER_EXT
from appointments.fhirdata import ext_value
from appointments.policy import policy_from_resource, policy_resource
from ehr.errors import BadRequest, NotFound, Unprocessable
from ehr.store import Store


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def slots_on(world: World, schedule: str, day: date) -> list[dict]:
    page = world.store.search("Slot", [("schedule", f"Schedule/{schedule}"), ("start", day.isoformat()),
                                       ("_count", "100"), ("_sort", "start")])  # fmt: skip
    return [orjson.loads(h.data) for h in page.matches]


# -- rules -----------------------------------------------------------------------------------------


def test_rules_round_trip_through_the_schedule_extension() -> None:
    av = Availability(ORG, ENDO.sessions, (Closure(date(2025, 10, 1), None, "国庆节"),),
                      (ExtraDay(date(2025, 9, 28), "mon"),))  # fmt: skip
    assert (
        availability_of({"resourceType": "Schedule", "extension": [availability_extension(av)]})
        == av
    )
    p = BookingPolicy(
        release_days_ahead=14, release_time=time(15), closures=(Closure(date(2025, 10, 2)),)
    )
    assert policy_from_resource(policy_resource(ORG, p)) == p


def test_session_needs_length_or_count() -> None:
    with pytest.raises(Unprocessable, match="exactly one of slotMinutes and slotCount"):
        Session("am", ("mon",), time(8), time(12))
    with pytest.raises(Unprocessable, match="ends before"):
        Session("am", ("mon",), time(12), time(8), slot_minutes=10)


def test_malformed_rules_are_refused_on_plain_writes(world: World) -> None:
    sched = world.resource("Schedule", "sch-a")
    sched["extension"][0]["extension"] = [
        e for e in sched["extension"][0]["extension"] if e["url"] != "organization"
    ]
    with pytest.raises(Unprocessable, match="organization"):
        world.store.update("Schedule", "sch-a", sched)


# -- generation ------------------------------------------------------------------------------------


def test_generation_makes_numbered_and_timed_slots(world: World) -> None:
    tuesday = slots_on(world, "sch-a", plus(1))
    am = [s for s in tuesday if s["id"].endswith(tuple(f"am-{n:02d}" for n in range(1, 20)))]
    pm = [s for s in tuesday if "-pm-" in s["id"]]
    assert [s["start"][11:16] for s in am] == [
        "08:00",
        "08:30",
        "09:00",
        "09:30",
        "10:00",
        "10:30",
        "11:00",
    ]
    assert len(pm) == 5 and pm[0]["start"][11:16] == "13:30" and pm[-1]["end"][11:16] == "17:00"
    assert [ext_value(s, SLOT_NUMBER_EXT) for s in pm] == [1, 2, 3, 4, 5]
    assert pm[0]["appointmentType"]["coding"][1]["code"] == "general"
    assert am[0]["id"] == "sch-a-20250722-am-01" and am[0]["status"] == "free"
    assert am[0]["serviceType"] == world.resource("Schedule", "sch-a")["serviceType"]
    assert len(slots_on(world, "sch-a", plus(5))) == 7  # Saturday: mornings only
    assert slots_on(world, "sch-a", plus(6)) == []  # Sunday
    again = generate_slots(world.svc, "sch-a", MONDAY, 9)
    assert again.created == 0 and again.existing > 0


def test_holidays_leave_and_extra_working_days(store: Store) -> None:
    w = build_world(store, days=0, schedules=())
    save_policy(store, ORG, BookingPolicy(closures=(Closure(plus(2), None, "院庆"),),
                                          extra_days=(ExtraDay(plus(6), "mon"),)))  # fmt: skip
    sched = w.resource("Schedule", "sch-a")
    av = availability_of(sched)
    assert av is not None
    sched["extension"] = [
        availability_extension(Availability(ORG, av.sessions, (Closure(plus(3), "pm", "进修"),)))
    ]
    store.update("Schedule", "sch-a", sched)
    generate_slots(w.svc, "sch-a", MONDAY, 7)
    assert slots_on(w, "sch-a", plus(2)) == []  # hospital holiday
    assert {s["id"].split("-")[-2] for s in slots_on(w, "sch-a", plus(3))} == {
        "am"
    }  # doctor's leave
    assert len(slots_on(w, "sch-a", plus(6))) == 12  # a Sunday worked as a Monday


def test_new_closure_withdraws_free_slots_and_reports_booked_ones(world: World) -> None:
    booked = book(
        world.svc, world.parent, slot=world.slot("sch-a", plus(2), "am", 1), patient="pat-1"
    )
    save_policy(
        world.store, ORG, BookingPolicy(**{**POLICY.__dict__, "closures": (Closure(plus(2)),)})
    )
    report = generate_slots(world.svc, "sch-a", plus(2), 1)
    assert report.created == 0
    assert report.orphaned == [world.slot("sch-a", plus(2), "am", 1)]
    assert len(report.withdrawn) == 11
    assert (
        world.resource("Slot", world.slot("sch-a", plus(2), "am", 2))["status"]
        == "busy-unavailable"
    )
    assert world.resource("Appointment", booked["id"])["status"] == "booked"


def test_roll_window_generates_through_the_release_horizon(store: Store) -> None:
    w = build_world(store, days=0, schedules=())
    reports = roll_window(w.svc)
    assert set(reports) == {"sch-a", "sch-b", "sch-c"}
    # released until 2025-07-28 (7 days ahead, after 08:00), plus one day
    assert slots_on(w, "sch-a", plus(8)) and not slots_on(w, "sch-a", plus(9))
    assert roll_window(w.svc)["sch-a"].created == 0


# -- $find -------------------------------------------------------------------------------------------


def test_find_respects_the_release_window(world: World) -> None:
    mine = find_slots(
        world.svc, FindRequest(practitioner="PractitionerRole/role-a", count=500), world.parent
    )
    days = {f.start.date() for f in mine}
    assert (
        max(days) == plus(7) and min(f.start for f in mine) > NOW
    )  # no started slot, none unreleased
    staff = find_slots(
        world.svc, FindRequest(practitioner="PractitionerRole/role-a", count=500), world.doctor
    )
    assert max(f.start.date() for f in staff) == plus(8)
    starts = [f.start for f in mine]
    assert starts == sorted(starts)


def test_find_filters(world: World) -> None:
    day = plus(1)
    by_prac = find_slots(
        world.svc, FindRequest(practitioner="prac-2", start=day, end=day), world.parent
    )
    assert {f.schedule["id"] for f in by_prac} == {"sch-b"} and len(by_prac) == 12
    expert = find_slots(
        world.svc, FindRequest(service="hs-endo", start=day, end=day, visit_type="expert"), None
    )
    assert len(expert) == 14 and all(f.session == "am" for f in expert)
    spec = find_slots(
        world.svc,
        FindRequest(specialty="http://snomed.info/sct|394537008", start=day, end=day),
        None,
    )
    assert {f.schedule["id"] for f in spec} == {"sch-c"}
    assert (
        find_slots(
            world.svc, FindRequest(organization="Organization/other", start=day, end=day), None
        )
        == []
    )
    assert (
        len(
            find_slots(
                world.svc, FindRequest(location="loc-h1-opd", start=day, end=day, count=3), None
            )
        )
        == 3
    )
    book(world.svc, world.parent, slot=world.slot("sch-b", day, "am", 1), patient="pat-1")
    after = find_slots(
        world.svc, FindRequest(practitioner="prac-2", start=day, end=day), world.parent
    )
    assert world.slot("sch-b", day, "am", 1) not in {f.rid for f in after} and len(after) == 11
    with pytest.raises(NotFound):
        find_slots(world.svc, FindRequest(patient="nobody"), Actor.system())
    with pytest.raises(BadRequest):
        find_slots(world.svc, FindRequest(start=plus(3), end=plus(2)), None)


def test_find_sees_schedule_changes_at_once(world: World) -> None:
    day = plus(1)
    assert find_slots(world.svc, FindRequest(service="hs-paed", start=day, end=day), None)
    sched = world.resource("Schedule", "sch-c")
    sched["active"] = False
    world.store.update("Schedule", "sch-c", sched)
    assert find_slots(world.svc, FindRequest(service="hs-paed", start=day, end=day), None) == []


def test_find_offers_hand_made_slots_of_a_schedule_without_rules(world: World) -> None:
    world.store.update("Schedule", "sch-manual", {
        "resourceType": "Schedule", "id": "sch-manual", "active": True,
        "actor": [{"reference": "HealthcareService/hs-endo"}],
    })  # fmt: skip
    made = world.store.create({
        "resourceType": "Slot", "schedule": {"reference": "Schedule/sch-manual"}, "status": "free",
        "start": "2025-07-23T18:00:00+08:00", "end": "2025-07-23T18:30:00+08:00",
    })  # fmt: skip
    found = find_slots(
        world.svc,
        FindRequest(service="hs-endo", start=plus(2), end=plus(2), count=100),
        world.parent,
    )
    assert made.rid in {f.rid for f in found}
    assert book(world.svc, world.parent, slot=made.rid, patient="pat-1")["status"] == "booked"


def test_demo_city_gets_bookable_schedules(store: Store) -> None:
    from appointments.demo import demo_policies, demo_schedules
    from appointments.service import install
    from ehr.demo import generate_city

    city = generate_city(citizens=0)
    schedules = demo_schedules(city)
    doctors = [r for r in city if r["resourceType"] == "PractitionerRole" and r.get("healthcareService")
               and any(c.get("code") == "doctor" for cc in r["code"] for c in cc["coding"])]  # fmt: skip
    assert 0 < len(schedules) < len(doctors)  # emergency doctors take no appointments
    with store.write() as ctx:
        for r in city + demo_policies(city):
            ctx.update(r["resourceType"], r["id"], r, validate=False)
        for s in schedules:
            ctx.update("Schedule", s["id"], s)  # valid FHIR, and the rules parse
    svc = install(store, clock=lambda: NOW)
    paed = next(s for s in schedules if availability_of(s).eligibility.max_age == 14)  # type: ignore[union-attr]
    generate_slots(svc, paed["id"], MONDAY, 2)
    found = find_slots(
        svc,
        FindRequest(practitioner=paed["actor"][0]["reference"], start=plus(1), end=plus(1)),
        None,
    )
    assert len(found) == 28 and found[0].slot["appointmentType"]["text"] in ("专家号", "普通号")


def test_public_surface_and_no_web_framework_in_the_services() -> None:
    import subprocess
    import sys

    import appointments

    assert all(hasattr(appointments, name) for name in appointments.__all__)
    code = (
        "import sys, appointments, appointments.nursing, appointments.workstation, appointments.demo; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
