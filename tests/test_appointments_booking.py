"""$hold, $book, cancel, reschedule, no-show and the booking rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_appointments_support import MONDAY, NOW, ORG, POLICY, World, at, build_world, plus

from appointments import (
    Actor,
    FindRequest,
    book,
    cancel,
    find_slots,
    generate_slots,
    hold,
    no_show,
    release_expired_holds,
    reschedule,
    save_policy,
)
from appointments.codes import BOOKING_EXT
from appointments.fhirdata import ext
from ehr.errors import Conflict, Forbidden, Unprocessable
from ehr.store import Store


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def appointment_post(slot: str, patient: str) -> dict:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot}"}],
        "start": "2025-07-22T08:00:00+08:00",
        "end": "2025-07-22T08:30:00+08:00",
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }


# -- $book ---------------------------------------------------------------------------------------


def test_book_marks_slot_busy_and_stamps_the_appointment(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)
    appt = book(world.svc, world.parent, slot=slot, patient="pat-1")
    assert appt["status"] == "booked"
    assert (
        appt["start"] == "2025-07-22T08:00:00+08:00" and appt["end"] == "2025-07-22T08:30:00+08:00"
    )
    actors = {p["actor"]["reference"] for p in appt["participant"]}
    assert {"Patient/pat-1", "PractitionerRole/role-a", "HealthcareService/hs-endo"} <= actors
    facts = ext(appt, BOOKING_EXT)
    assert (
        facts is not None
        and {"url": "organization", "valueReference": {"reference": f"Organization/{ORG}"}}
        in facts["extension"]
    )
    # the citizen may cancel it online until 2 hours before it starts (the default policy)
    assert {"url": "cancelBefore", "valueInstant": "2025-07-22T06:00:00+08:00"} in facts[
        "extension"
    ]
    assert world.resource("Slot", slot)["status"] == "busy"


def test_second_booking_of_a_slot_is_409_and_writes_nothing(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 2)
    book(world.svc, world.parent, slot=slot, patient="pat-1")
    before = world.versions("Slot", slot)
    with pytest.raises(Conflict) as err:
        book(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    assert err.value.status == 409 and "already booked" in err.value.diagnostics
    assert world.count("Appointment", [("slot", f"Slot/{slot}")]) == 1
    assert world.versions("Slot", slot) == before


def test_plain_fhir_post_obeys_the_same_rules(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)
    first = world.store.create(appointment_post(slot, "pat-1"))
    assert world.resource("Slot", slot)["status"] == "busy"
    stored = first.stored().resource()
    assert stored["start"] == "2025-07-22T08:00:00+08:00"  # taken from the slot
    slot_version = world.versions("Slot", slot)
    with pytest.raises(Conflict) as err:
        world.store.create(appointment_post(slot, "pat-2"))
    assert err.value.outcome()["issue"][0]["code"] == "conflict"
    assert world.count("Appointment") == 1
    assert world.versions("Slot", slot) == slot_version


def test_plain_fhir_refuses_unavailable_and_unreleased_slots(world: World) -> None:
    blocked = world.slot("sch-a", plus(2), "am", 1)
    s = world.resource("Slot", blocked)
    s["status"] = "busy-unavailable"
    world.store.update("Slot", blocked, s)
    with pytest.raises(Conflict, match="not available"):
        world.store.create(appointment_post(blocked, "pat-1"))
    # 2025-07-29 opens on 2025-07-22 08:00 (7 days ahead at 08:00): not yet at 2025-07-21 09:00
    late = world.slot("sch-a", plus(8), "am", 1)
    with pytest.raises(Conflict, match="not open for booking yet"):
        world.store.create(appointment_post(late, "pat-1"))
    # a slot that started is closed to citizens
    with pytest.raises(Conflict, match="too late"):
        world.store.create(appointment_post(world.slot("sch-a", MONDAY, "am", 1), "pat-1"))
    assert world.count("Appointment") == 0


def test_release_opens_at_the_set_hour(world: World) -> None:
    late = world.slot("sch-a", plus(8), "am", 1)
    world.clock.set(at(plus(1), 7, 59))
    with pytest.raises(Conflict, match="opens at 2025-07-22T08:00:00"):
        book(world.svc, world.parent, slot=late, patient="pat-1")
    world.clock.set(at(plus(1), 8, 0))
    assert book(world.svc, world.parent, slot=late, patient="pat-1")["status"] == "booked"


def test_plain_put_cannot_free_a_booked_slot_or_fake_a_busy_one(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)
    book(world.svc, world.parent, slot=slot, patient="pat-1")
    s = world.resource("Slot", slot)
    s["status"] = "free"
    with pytest.raises(Conflict, match="is booked"):
        world.store.update("Slot", slot, s)
    with pytest.raises(Conflict):
        world.store.delete("Slot", slot)
    other = world.slot("sch-a", plus(1), "am", 2)
    o = world.resource("Slot", other)
    o["status"] = "busy"
    with pytest.raises(Conflict, match="only by booking"):
        world.store.update("Slot", other, o)
    assert world.resource("Slot", slot)["status"] == "busy"


def test_book_with_identifier_is_idempotent(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 3)
    ident = {"system": "urn:test:client", "value": "req-1"}
    a = book(world.svc, world.parent, slot=slot, patient="pat-1", identifier=ident)
    b = book(world.svc, world.parent, slot=slot, patient="pat-1", identifier=ident)
    assert a["id"] == b["id"]
    assert world.count("Appointment") == 1


# -- real name and eligibility ----------------------------------------------------------------------


def test_real_name_booker_must_be_patient_or_proxy(world: World) -> None:
    slot_c = world.slot("sch-c", plus(1), "am", 1)
    # the parent acts for the child through the RelatedPerson carrying the parent's citizen ID
    appt = book(world.svc, world.parent, slot=slot_c, patient="pat-child")
    assert appt["status"] == "booked"
    facts = ext(appt, BOOKING_EXT)
    assert facts is not None
    booked_by = [e for e in facts["extension"] if e["url"] == "bookedBy"]
    assert booked_by == [{"url": "bookedBy", "valueReference": {"reference": "Patient/pat-1"}}]
    with pytest.raises(Forbidden):
        book(
            world.svc,
            Actor.citizen("pat-2"),
            slot=world.slot("sch-a", plus(1), "am", 1),
            patient="pat-1",
        )
    with pytest.raises(Conflict, match="citizen ID"):
        book(
            world.svc,
            Actor.citizen("pat-noid"),
            slot=world.slot("sch-a", plus(1), "am", 1),
            patient="pat-noid",
        )


def test_eligibility_age_limit(world: World) -> None:
    with pytest.raises(Conflict, match="aged up to 14"):
        book(world.svc, world.parent, slot=world.slot("sch-c", plus(1), "am", 1), patient="pat-1")
    found = find_slots(world.svc, FindRequest(service="hs-paed", patient="pat-1"), world.parent)
    assert found == []
    assert find_slots(world.svc, FindRequest(service="hs-paed", patient="pat-child"), world.parent)


# -- limits, cut-off, blacklist ---------------------------------------------------------------------


def test_limit_per_department_per_day(world: World) -> None:
    book(world.svc, world.parent, slot=world.slot("sch-a", plus(1), "am", 1), patient="pat-1")
    with pytest.raises(Conflict, match="in this department on 2025-07-22"):
        book(world.svc, world.parent, slot=world.slot("sch-b", plus(1), "pm", 1), patient="pat-1")
    # another day is fine
    book(world.svc, world.parent, slot=world.slot("sch-b", plus(2), "pm", 1), patient="pat-1")


def test_limit_of_active_bookings(world: World) -> None:
    for d in (1, 2, 3):
        book(world.svc, world.parent, slot=world.slot("sch-a", plus(d), "am", 1), patient="pat-1")
    with pytest.raises(Conflict, match="3 active bookings"):
        book(world.svc, world.parent, slot=world.slot("sch-a", plus(4), "am", 1), patient="pat-1")
    assert world.count("Appointment", [("patient", "Patient/pat-1")]) == 3


def test_cancellation_cut_off(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)  # 2025-07-22 08:00; cut-off 06:00
    appt = book(world.svc, world.parent, slot=slot, patient="pat-1")
    world.clock.set(at(plus(1), 6, 1))
    with pytest.raises(Conflict, match="cut-off was 2025-07-22T06:00:00"):
        cancel(world.svc, world.parent, appt["id"])
    # a plain FHIR cancellation is held to the same cut-off
    plain = world.resource("Appointment", appt["id"])
    plain["status"] = "cancelled"
    with pytest.raises(Conflict, match="cut-off"):
        world.store.update("Appointment", appt["id"], plain)
    assert world.resource("Slot", slot)["status"] == "busy"
    # staff may still cancel
    done = cancel(world.svc, world.doctor, appt["id"], reason="医生临时出诊")
    assert done["status"] == "cancelled" and world.resource("Slot", slot)["status"] == "free"


def test_cancel_before_cut_off_frees_the_slot(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)
    appt = book(world.svc, world.parent, slot=slot, patient="pat-1")
    with pytest.raises(Forbidden):
        cancel(world.svc, Actor.citizen("pat-2"), appt["id"])
    assert cancel(world.svc, world.parent, appt["id"])["status"] == "cancelled"
    assert world.resource("Slot", slot)["status"] == "free"
    assert book(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")["status"] == "booked"


def test_no_show_blacklist(world: World) -> None:
    first = book(
        world.svc, world.parent, slot=world.slot("sch-a", plus(1), "am", 1), patient="pat-1"
    )
    second = book(
        world.svc, world.parent, slot=world.slot("sch-a", plus(2), "am", 1), patient="pat-1"
    )
    with pytest.raises(Conflict, match="after it was due"):
        no_show(world.svc, world.doctor, first["id"])
    with pytest.raises(Forbidden):
        no_show(world.svc, world.parent, first["id"])
    world.clock.set(at(plus(2), 12))
    no_show(world.svc, world.doctor, first["id"])
    no_show(world.svc, world.doctor, second["id"])
    with pytest.raises(Conflict, match="cannot book at this hospital until 2025-08-22T08:00:00"):
        book(world.svc, world.parent, slot=world.slot("sch-a", plus(4), "am", 1), patient="pat-1")
    # a doctor may still add the patient (加号)
    assert book(
        world.svc, world.doctor, slot=world.slot("sch-a", plus(4), "am", 1), patient="pat-1"
    )
    # the block ends blacklist_days after the last no-show
    later = plus(2 + POLICY.blacklist_days)
    generate_slots(world.svc, "sch-b", later, 2)
    world.clock.set(at(later, 8, 1))
    assert book(world.svc, world.parent, slot=world.slot("sch-b", later, "pm", 1), patient="pat-1")


# -- hold, reschedule ---------------------------------------------------------------------------------


def test_hold_expires_and_is_released(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 4)
    held = hold(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    assert (
        held["status"] == "pending" and world.resource("Slot", slot)["status"] == "busy-tentative"
    )
    with pytest.raises(Conflict, match="held for another patient"):
        book(world.svc, world.parent, slot=slot, patient="pat-1")
    assert slot not in {
        f.rid for f in find_slots(world.svc, FindRequest(service="hs-endo", count=500), None)
    }
    world.clock.set(NOW + timedelta(minutes=11))
    # lazily: the expired hold is shown as free and a new booker evicts it
    assert slot in {
        f.rid for f in find_slots(world.svc, FindRequest(service="hs-endo", count=500), None)
    }
    assert book(world.svc, world.parent, slot=slot, patient="pat-1")["status"] == "booked"
    assert world.resource("Appointment", held["id"])["status"] == "cancelled"
    with pytest.raises(Conflict, match="not a hold"):
        book(world.svc, Actor.citizen("pat-2"), appointment=held["id"])


def test_hold_then_confirm_and_sweeper(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 5)
    held = hold(world.svc, world.parent, slot=slot, patient="pat-1")
    confirmed = book(world.svc, world.parent, appointment=held["id"])
    assert confirmed["status"] == "booked" and world.resource("Slot", slot)["status"] == "busy"
    other = world.slot("sch-a", plus(1), "am", 6)
    h2 = hold(world.svc, Actor.citizen("pat-2"), slot=other, patient="pat-2")
    world.clock.set(NOW + timedelta(minutes=30))
    assert release_expired_holds(world.svc) == [h2["id"]]
    assert world.resource("Slot", other)["status"] == "free"
    assert world.resource("Appointment", h2["id"])["status"] == "cancelled"


def test_reschedule_is_atomic(world: World) -> None:
    old = world.slot("sch-a", plus(1), "am", 1)
    new = world.slot("sch-a", plus(2), "am", 1)
    taken = world.slot("sch-a", plus(3), "am", 1)
    appt = book(world.svc, world.parent, slot=old, patient="pat-1")
    book(world.svc, Actor.citizen("pat-2"), slot=taken, patient="pat-2")
    with pytest.raises(Conflict, match="already booked"):
        reschedule(world.svc, world.parent, appt["id"], slot=taken)
    assert world.resource("Slot", old)["status"] == "busy"
    assert world.resource("Appointment", appt["id"])["slot"] == [{"reference": f"Slot/{old}"}]
    moved = reschedule(world.svc, world.parent, appt["id"], slot=new)
    assert moved["id"] == appt["id"] and moved["start"].startswith("2025-07-23T08:00")
    facts = ext(moved, BOOKING_EXT)
    assert facts is not None  # its online cut-off moved with it
    assert {"url": "cancelBefore", "valueInstant": "2025-07-23T06:00:00+08:00"} in facts[
        "extension"
    ]
    assert world.resource("Slot", old)["status"] == "free"
    assert world.resource("Slot", new)["status"] == "busy"


def test_unknown_slot_and_missing_patient_are_422(world: World) -> None:
    with pytest.raises(Unprocessable):
        world.store.create(appointment_post("no-such-slot", "pat-1"))
    body = appointment_post(world.slot("sch-a", plus(1), "am", 1), "pat-1")
    body["participant"] = [
        {"actor": {"reference": "PractitionerRole/role-a"}, "status": "accepted"}
    ]
    with pytest.raises(Unprocessable, match="Patient participant"):
        world.store.create(body)


def test_policy_is_per_hospital(world: World) -> None:
    save_policy(
        world.store, ORG, POLICY.__class__(**{**POLICY.__dict__, "max_per_department_per_day": 2})
    )
    book(world.svc, world.parent, slot=world.slot("sch-a", plus(1), "am", 1), patient="pat-1")
    assert book(
        world.svc, world.parent, slot=world.slot("sch-b", plus(1), "pm", 1), patient="pat-1"
    )
