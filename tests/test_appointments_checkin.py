"""Check-in, gap-free queue numbers, the session queue and call-next, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from test_appointments_support import World, at, build_world, cid, plus

from appointments import Actor, book
from appointments.checkin import call_next, check_in, check_in_by_identifier, finish_visit, queue
from appointments.codes import QUEUE_NUMBER_EXT
from appointments.fhirdata import ext_value
from ehr.errors import Conflict, Forbidden, NotFound
from ehr.identifiers import CITIZEN_ID_SYSTEM
from ehr.store import Store

TUESDAY = plus(1)


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def booked_tuesday(world: World) -> list[dict]:
    """Three bookings on Tuesday morning with role-a, made on Monday."""
    out = []
    for n, (actor, pid) in enumerate(
        [(world.parent, "pat-1"), (Actor.citizen("pat-2"), "pat-2"), (world.parent, "pat-child")], 1
    ):
        out.append(book(world.svc, actor, slot=world.slot("sch-a", TUESDAY, "am", n), patient=pid))
    return out


def test_check_in_gives_queue_numbers_in_arrival_order(world: World) -> None:
    a1, a2, a3 = booked_tuesday(world)
    world.clock.set(at(TUESDAY, 7, 30))
    third = check_in(world.svc, world.parent, a3["id"], channel="phone")
    first = check_in(world.svc, world.nurse, a1["id"])
    assert (third.queue_number, first.queue_number) == (1, 2)
    assert third.appointment["status"] == "arrived"
    enc = third.encounter
    assert enc["status"] == "arrived" and enc["class"]["code"] == "AMB"
    assert enc["appointment"] == [{"reference": f"Appointment/{a3['id']}"}]
    assert enc["subject"]["display"] == "王*雨"  # masked for the waiting-room screen
    assert ext_value(enc, QUEUE_NUMBER_EXT) == 1
    assert enc["serviceProvider"] == {"reference": "Organization/org-h1"}
    # checking in again is harmless
    again = check_in(world.svc, world.parent, a3["id"])
    assert again.repeated and again.queue_number == 1 and again.encounter["id"] == enc["id"]
    assert world.count("Encounter") == 2
    view = queue(world.svc, "sch-a", TUESDAY, "am")
    assert [q.number for q in view.waiting] == [1, 2]
    assert view.not_arrived == [a2["id"]]


def test_check_in_only_on_the_day_and_for_bookings(world: World) -> None:
    a1, a2, _ = booked_tuesday(world)
    with pytest.raises(Conflict, match="not today"):
        check_in(world.svc, world.parent, a1["id"])
    world.clock.set(at(TUESDAY, 8))
    with pytest.raises(Forbidden):
        check_in(world.svc, Actor.citizen("pat-2"), a1["id"])
    world.clock.set(at(TUESDAY, 11, 31))
    with pytest.raises(Conflict, match="session .* is over|is over"):
        check_in(world.svc, world.parent, a1["id"])
    with pytest.raises(NotFound):
        check_in(world.svc, world.nurse, "nope")


def test_failed_check_in_leaves_no_gap(world: World) -> None:
    a1, a2, a3 = booked_tuesday(world)
    world.clock.set(at(TUESDAY, 8))
    assert check_in(world.svc, world.nurse, a1["id"]).queue_number == 1
    # a check-in that fails after taking a number rolls the number back with it
    world.store.hooks.append(_FailEncounter())
    try:
        with pytest.raises(Conflict, match="boom"):
            check_in(world.svc, world.nurse, a2["id"])
    finally:
        world.store.hooks.pop()
    assert check_in(world.svc, world.nurse, a2["id"]).queue_number == 2
    assert check_in(world.svc, world.nurse, a3["id"]).queue_number == 3


class _FailEncounter:
    def before_write(self, ctx, write) -> None:  # type: ignore[no-untyped-def]
        if write.rtype == "Encounter":
            raise Conflict("boom")


def test_concurrent_check_ins_get_distinct_numbers(world: World) -> None:
    appts = booked_tuesday(world)
    world.clock.set(at(TUESDAY, 8))
    with ThreadPoolExecutor(max_workers=3) as pool:
        numbers = sorted(
            r.queue_number
            for r in pool.map(lambda a: check_in(world.svc, world.nurse, a["id"]), appts)
        )
    assert numbers == [1, 2, 3]


def test_call_next_and_finish(world: World) -> None:
    a1, a2, a3 = booked_tuesday(world)
    world.clock.set(at(TUESDAY, 8))
    for a in (a2, a1, a3):
        check_in(world.svc, world.nurse, a["id"])
    with pytest.raises(Forbidden):
        call_next(world.svc, world.parent, "sch-a", TUESDAY, "am")
    called = call_next(world.svc, world.doctor, "sch-a", TUESDAY, "am")
    assert called is not None and called.number == 1 and called.appointment == a2["id"]
    enc = world.resource("Encounter", called.encounter)
    assert enc["status"] == "in-progress"
    assert {"individual": {"reference": "PractitionerRole/role-a"}} in enc["participant"]
    finish_visit(world.svc, world.doctor, called.encounter)
    assert world.resource("Appointment", a2["id"])["status"] == "fulfilled"
    assert world.resource("Encounter", called.encounter)["status"] == "finished"
    view = queue(world.svc, "sch-a", TUESDAY, "am")
    assert [q.number for q in view.done] == [1] and [q.number for q in view.waiting] == [2, 3]
    assert call_next(world.svc, world.doctor, "sch-a", TUESDAY, "am").number == 2  # type: ignore[union-attr]
    assert call_next(world.svc, world.doctor, "sch-a", TUESDAY, "am").number == 3  # type: ignore[union-attr]
    assert call_next(world.svc, world.doctor, "sch-a", TUESDAY, "am") is None


def test_card_terminal_checks_in_by_identifier(world: World) -> None:
    a1, _, _ = booked_tuesday(world)
    world.clock.set(at(TUESDAY, 7, 45))
    # the parent presents their citizen ID in clear: it is matched through its keyed hash
    done = check_in_by_identifier(
        world.svc,
        world.nurse,
        f"{CITIZEN_ID_SYSTEM}|{cid(2, date(1988, 3, 2), True)}",
        organization="Organization/org-h1",
    )
    assert [c.appointment["id"] for c in done] == [a1["id"]]
    assert done[0].encounter["extension"][-1]["valueCode"] == "card"
    with pytest.raises(NotFound):
        check_in_by_identifier(world.svc, world.nurse, "urn:x|nobody")
