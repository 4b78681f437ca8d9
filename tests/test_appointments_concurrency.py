"""Race-free booking: 200 concurrent $book calls and plain FHIR Appointment creates against 20
slots make exactly 20 bookings; every loser gets a 409 (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from test_appointments_support import build_world, patient, plus

from appointments import Actor, BookingPolicy, book, save_policy
from ehr.errors import Conflict, FhirError
from ehr.store import Store

ATTEMPTS = 200
SLOTS = 20


def test_200_concurrent_bookings_on_20_slots(store: Store) -> None:
    world = build_world(store, days=3, schedules=("sch-a", "sch-b"))
    # limits wide open so that the only reason to lose is the slot being taken
    save_policy(
        store, "org-h1", BookingPolicy(max_active_bookings=100, max_per_department_per_day=100)
    )
    with store.write() as ctx:
        for i in range(ATTEMPTS):
            ctx.update(
                "Patient",
                f"racer-{i}",
                patient(f"racer-{i}", "陈晨", plus(-9000 - i), i % 2 == 0, 100 + i, "1400000"),
                validate=False,
            )
    slots = [world.slot(s, plus(1), "am", n) for s in ("sch-a", "sch-b") for n in range(1, 8)]
    slots += [world.slot(s, plus(1), "pm", n) for s in ("sch-a", "sch-b") for n in range(1, 6)]
    slots = slots[:SLOTS]
    assert len(slots) == SLOTS
    start = threading.Barrier(20)
    outcomes: list[tuple[str, str, int | str]] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        slot = slots[i % SLOTS]
        pid = f"racer-{i}"
        if i < 20:
            start.wait()
        try:
            if i % 2:
                book(world.svc, Actor.citizen(pid), slot=slot, patient=pid)
            else:
                store.create(
                    {
                        "resourceType": "Appointment",
                        "status": "booked",
                        "slot": [{"reference": f"Slot/{slot}"}],
                        "participant": [
                            {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}
                        ],
                    }
                )
            result: tuple[str, str, int | str] = (slot, "won", 201)
        except Conflict as exc:
            result = (slot, exc.diagnostics, exc.status)
        except FhirError as exc:  # pragma: no cover - reported by the assertion below
            result = (slot, f"unexpected {exc}", exc.status)
        with lock:
            outcomes.append(result)

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(attempt, range(ATTEMPTS)))

    wins = [o for o in outcomes if o[1] == "won"]
    losses = [o for o in outcomes if o[1] != "won"]
    assert len(outcomes) == ATTEMPTS
    assert len(wins) == SLOTS
    assert Counter(o[0] for o in wins) == Counter(slots)  # one winner per slot
    assert all(o[2] == 409 for o in losses), Counter(str(o[1])[:60] for o in losses)
    assert all(f"Slot/{o[0]} is already booked" == o[1] for o in losses), losses[:5]
    # the store agrees: 20 booked appointments, 20 busy slots
    assert world.count("Appointment", [("status", "booked")]) == SLOTS
    assert world.count("Slot", [("status", "busy")]) == SLOTS
    for s in slots:
        assert world.count("Appointment", [("slot", f"Slot/{s}")]) == 1
