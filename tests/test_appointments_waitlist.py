"""Waitlist promotion, the doctor-cancel cascade and notifications, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from test_appointments_support import NOW, World, build_world, plus

from appointments import (
    Actor,
    FindRequest,
    SmsSender,
    book,
    cancel,
    cancel_session,
    find_slots,
    generate_slots,
    hold,
    join_waitlist,
    release_expired_holds,
)
from appointments.availability import availability_of
from ehr.errors import Forbidden
from ehr.store import Store


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def communications(world: World, patient: str) -> list[dict]:
    page = world.store.search(
        "Communication", [("patient", f"Patient/{patient}"), ("_count", "100")]
    )
    return [orjson.loads(h.data) for h in page.matches]


def test_freed_slot_goes_to_first_waitlisted_patient(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 1)
    taken = book(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    first = join_waitlist(
        world.svc,
        world.parent,
        patient="pat-1",
        target="PractitionerRole/role-a",
        start=plus(1),
        end=plus(1),
    )
    world.clock.set(NOW + timedelta(minutes=1))
    second = join_waitlist(
        world.svc, world.parent, patient="pat-child", target="HealthcareService/hs-endo"
    )
    assert first["status"] == "waitlist"
    cancel(world.svc, Actor.citizen("pat-2"), taken["id"])
    promoted = world.resource("Appointment", first["id"])
    assert promoted["status"] == "booked" and promoted["slot"] == [{"reference": f"Slot/{slot}"}]
    assert world.resource("Slot", slot)["status"] == "busy"
    assert world.resource("Appointment", second["id"])["status"] == "waitlist"
    # the patient is told, through a Communication, and the sender delivered it after the commit
    comms = communications(world, "pat-1")
    assert (
        len(comms) == 1
        and comms[0]["status"] == "completed"
        and "候补成功" in comms[0]["payload"][0]["contentString"]
    )
    assert [m.category for m in world.sender.sent] == ["waitlist-booked"]


def test_waitlist_skips_entries_whose_period_does_not_fit(world: World) -> None:
    slot = world.slot("sch-a", plus(2), "am", 1)
    taken = book(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    later = join_waitlist(
        world.svc,
        world.parent,
        patient="pat-1",
        target="PractitionerRole/role-a",
        start=plus(5),
        end=plus(6),
    )
    world.clock.set(NOW + timedelta(minutes=1))
    fits = join_waitlist(
        world.svc, world.parent, patient="pat-child", target="HealthcareService/hs-endo"
    )
    cancel(world.svc, Actor.citizen("pat-2"), taken["id"])
    assert world.resource("Appointment", later["id"])["status"] == "waitlist"
    assert world.resource("Appointment", fits["id"])["slot"] == [{"reference": f"Slot/{slot}"}]


def test_waitlist_respects_limits(world: World) -> None:
    slot = world.slot("sch-a", plus(3), "am", 1)
    taken = book(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    # pat-1 already has an endocrinology booking that day: the limit (1 per department per day)
    book(world.svc, world.parent, slot=world.slot("sch-b", plus(3), "pm", 1), patient="pat-1")
    limited = join_waitlist(
        world.svc, world.parent, patient="pat-1", target="HealthcareService/hs-endo"
    )
    child = join_waitlist(
        world.svc, world.parent, patient="pat-child", target="PractitionerRole/role-a"
    )
    cancel(world.svc, Actor.citizen("pat-2"), taken["id"])
    assert world.resource("Appointment", limited["id"])["status"] == "waitlist"
    assert world.resource("Appointment", child["id"])["status"] == "booked"


def test_expired_hold_promotes_the_waitlist(world: World) -> None:
    slot = world.slot("sch-a", plus(1), "am", 2)
    held = hold(world.svc, Actor.citizen("pat-2"), slot=slot, patient="pat-2")
    wl = join_waitlist(world.svc, world.parent, patient="pat-1", target="PractitionerRole/role-a")
    world.clock.set(NOW + timedelta(minutes=15))
    assert release_expired_holds(world.svc) == [held["id"]]
    assert world.resource("Appointment", wl["id"])["status"] == "booked"


def test_waitlist_needs_real_name(world: World) -> None:
    with pytest.raises(Forbidden):
        join_waitlist(
            world.svc, Actor.citizen("pat-2"), patient="pat-1", target="PractitionerRole/role-a"
        )


def test_doctor_cancels_a_session(world: World) -> None:
    day = plus(1)
    a1 = book(world.svc, world.parent, slot=world.slot("sch-a", day, "am", 1), patient="pat-1")
    a2 = book(
        world.svc, Actor.citizen("pat-2"), slot=world.slot("sch-a", day, "am", 2), patient="pat-2"
    )
    pm = book(world.svc, world.parent, slot=world.slot("sch-a", day, "pm", 1), patient="pat-child")
    with pytest.raises(Forbidden):
        cancel_session(world.svc, world.parent, "sch-a", day, "am")
    result = cancel_session(world.svc, world.doctor, "sch-a", day, "am", reason="外出会诊")
    assert sorted(result.cancelled) == sorted([a1["id"], a2["id"]])
    assert len(result.withdrawn_slots) == 7
    for a in (a1, a2):
        done = world.resource("Appointment", a["id"])
        assert done["status"] == "cancelled"
        assert done["cancelationReason"]["coding"][0]["code"] == "prov"
    for n in range(1, 8):
        assert (
            world.resource("Slot", world.slot("sch-a", day, "am", n))["status"]
            == "busy-unavailable"
        )
    assert world.resource("Appointment", pm["id"])["status"] == "booked"  # other session untouched
    # each patient got an alternative held for them, and a message saying so
    for a in (a1, a2):
        offer_id = result.offers[a["id"]]
        assert offer_id is not None
        offer = world.resource("Appointment", offer_id)
        assert offer["status"] == "pending"
        assert not offer["slot"][0]["reference"].startswith(f"Slot/sch-a-{day:%Y%m%d}-am")
    texts = [m.text for m in world.sender.sent if m.category == "session-cancelled"]
    assert len(texts) == 2 and all("停诊" in t and "已为您保留" in t for t in texts)
    pid1 = communications(world, "pat-1")
    assert any("外出会诊" in c["payload"][0]["contentString"] for c in pid1)
    # the patient confirms the offer with $book
    confirmed = book(world.svc, world.parent, appointment=result.offers[a1["id"]])
    assert confirmed["status"] == "booked"
    # the closure is in the schedule's rules: regenerating does not reopen the session
    av = availability_of(world.resource("Schedule", "sch-a"))
    assert av is not None and any(c.day == day and c.session == "am" for c in av.closures)
    report = generate_slots(world.svc, "sch-a", day, 1)
    assert report.created == 0
    free = find_slots(
        world.svc, FindRequest(practitioner="PractitionerRole/role-a", start=day, end=day), None
    )
    assert all(f.session != "am" for f in free)


def test_cancelled_session_does_not_promote_waitlist(world: World) -> None:
    day = plus(2)
    a = book(
        world.svc, Actor.citizen("pat-2"), slot=world.slot("sch-a", day, "am", 1), patient="pat-2"
    )
    wl = join_waitlist(
        world.svc,
        world.parent,
        patient="pat-1",
        target="PractitionerRole/role-a",
        start=day,
        end=day,
    )
    cancel_session(world.svc, world.doctor, "sch-a", day, "am")
    assert world.resource("Appointment", a["id"])["status"] == "cancelled"
    assert world.resource("Appointment", wl["id"])["status"] == "waitlist"


def test_staff_cancellation_notifies_and_failed_delivery_is_recorded(world: World) -> None:
    class Broken:
        def send_sms(self, phone: str, text: str) -> None:
            raise RuntimeError("gateway down")

    world.svc.sender = SmsSender(Broken())
    a = book(world.svc, world.parent, slot=world.slot("sch-a", plus(1), "am", 3), patient="pat-1")
    cancel(world.svc, world.doctor, a["id"], reason="设备检修")
    assert world.resource("Appointment", a["id"])["status"] == "cancelled"
    comms = communications(world, "pat-1")
    assert len(comms) == 1 and comms[0]["status"] == "stopped"
    assert "gateway down" in comms[0]["statusReason"]["text"]


def test_sms_sender_uses_the_recipients_phones(world: World) -> None:
    sent: list[tuple[str, str]] = []

    class Gateway:
        def send_sms(self, phone: str, text: str) -> None:
            sent.append((phone, text))

    world.svc.sender = SmsSender(Gateway())
    a = book(
        world.svc, world.parent, slot=world.slot("sch-c", plus(1), "am", 1), patient="pat-child"
    )
    cancel(world.svc, world.doctor, a["id"])
    # the child's phone and the parent who booked
    assert sorted(p for p, _ in sent) == ["14000000001", "14000000003"]
