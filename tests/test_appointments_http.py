"""The HTTP adapters (appointments.http.router) mounted in the real FHIR API (fhir_api.create_app),
with the booking rules hook installed: $find, $hold, $book, plain POST Appointment (409 as an
OperationOutcome), check-in, queue, nurse station and workstation operations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from test_appointments_support import World, at, build_world, plus

from appointments import Actor
from ehr.store import Store


async def header_actor(request: Request) -> Actor | None:
    """Test stand-in for the SMART layer: ``X-Test-Actor: citizen:pat-1`` / ``clinician:prac-1:role-a``."""
    raw = request.headers.get("x-test-actor")
    if not raw:
        return None
    kind, _, rest = raw.partition(":")
    if kind == "citizen":
        return Actor.citizen(rest)
    prac, _, role = rest.partition(":")
    return Actor.clinician(prac, role or None, "org-h1")


@pytest.fixture
def api(store: Store) -> Iterator[tuple[TestClient, World]]:
    from fhir_api.app import create_app

    world = build_world(store, days=3, schedules=("sch-a",))
    app = create_app(store, actor_resolver=header_actor)
    app.state.appointments = world.svc
    with TestClient(app) as client:
        yield client, world


PARENT = {"X-Test-Actor": "citizen:pat-1"}
OTHER = {"X-Test-Actor": "citizen:pat-2"}
DOCTOR = {"X-Test-Actor": "clinician:prac-1:role-a"}
NURSE = {"X-Test-Actor": "clinician:nurse-1"}


def params(**kw: object) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for k, v in kw.items():
        if isinstance(v, dict) and "reference" in v:
            out.append({"name": k, "valueReference": v})
        elif isinstance(v, dict):
            out.append({"name": k, "valueIdentifier": v})
        else:
            out.append({"name": k, "valueString": v})
    return {"resourceType": "Parameters", "parameter": out}


def test_find_hold_book_over_http(api: tuple[TestClient, World]) -> None:
    client, world = api
    assert client.get("/fhir/Appointment/$find", params={"service": "hs-endo"}).status_code == 401
    r = client.get("/fhir/Appointment/$find", params={"practitioner": "PractitionerRole/role-a", "_count": "3",
                                                        "start": plus(1).isoformat()}, headers=PARENT)  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["type"] == "searchset" and len(bundle["entry"]) == 3
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Slot" and first["start"] == "2025-07-22T08:00:00+08:00"
    held = client.post("/fhir/Appointment/$hold", headers=OTHER,
                       json=params(slot={"reference": f"Slot/{first['id']}"}, patient={"reference": "Patient/pat-2"}))  # fmt: skip
    assert held.status_code == 201 and held.json()["status"] == "pending"
    taken = client.post("/fhir/Appointment/$book", headers=PARENT,
                        json=params(slot={"reference": f"Slot/{first['id']}"}, patient={"reference": "Patient/pat-1"}))  # fmt: skip
    assert taken.status_code == 409
    assert taken.json()["resourceType"] == "OperationOutcome"
    assert "held for another patient" in taken.json()["issue"][0]["diagnostics"]
    confirmed = client.post("/fhir/Appointment/$book", headers=OTHER,
                            json=params(appointment={"reference": f"Appointment/{held.json()['id']}"}))  # fmt: skip
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "booked"


def test_plain_post_twice_on_one_slot_is_409(api: tuple[TestClient, World]) -> None:
    client, world = api
    slot = world.slot("sch-a", plus(1), "am", 2)
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [{"actor": {"reference": "Patient/pat-1"}, "status": "accepted"}],
    }
    first = client.post(
        "/fhir/Appointment", json=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert first.status_code == 201
    body["participant"][0]["actor"]["reference"] = "Patient/pat-2"
    second = client.post(
        "/fhir/Appointment", json=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert second.status_code == 409
    outcome = second.json()
    assert (
        outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "conflict"
    )
    search = client.get("/fhir/Appointment", params={"slot": f"Slot/{slot}"}).json()
    assert search.get("total", len(search.get("entry", []))) == 1


def test_cancel_checkin_queue_and_call_next_over_http(api: tuple[TestClient, World]) -> None:
    client, world = api
    slot = world.slot("sch-a", plus(1), "am", 1)
    booked = client.post("/fhir/Appointment/$book", headers=PARENT,
                         json=params(slot={"reference": f"Slot/{slot}"}, patient={"reference": "Patient/pat-1"})).json()  # fmt: skip
    other = client.post("/fhir/Appointment/$book", headers=OTHER,
                        json=params(slot={"reference": f"Slot/{world.slot('sch-a', plus(1), 'am', 2)}"},
                                    patient={"reference": "Patient/pat-2"})).json()  # fmt: skip
    assert (
        client.post(
            f"/fhir/Appointment/{other['id']}/$cancel", headers=PARENT, json=params()
        ).status_code
        == 403
    )
    assert client.post(f"/fhir/Appointment/{other['id']}/$cancel", headers=OTHER,
                       json=params(reason="另有安排")).json()["status"] == "cancelled"  # fmt: skip
    world.clock.set(at(plus(1), 7, 50))
    checked = client.post(
        f"/fhir/Appointment/{booked['id']}/$checkin", headers=PARENT, json=params(channel="phone")
    )
    parts = {p["name"]: p for p in checked.json()["parameter"]}
    assert parts["queueNumber"]["valueInteger"] == 1
    q = client.get(
        "/fhir/Schedule/sch-a/$queue",
        params={"date": plus(1).isoformat(), "session": "am"},
        headers=DOCTOR,
    )
    entries = [p for p in q.json()["parameter"] if p["name"] == "entry"]
    assert len(entries) == 1
    called = client.post("/fhir/Schedule/sch-a/$call-next", headers=DOCTOR,
                         json={"resourceType": "Parameters", "parameter": [
                             {"name": "date", "valueDate": plus(1).isoformat()}, {"name": "session", "valueCode": "am"}]})  # fmt: skip
    status = {p["name"]: p for p in called.json()["parameter"]}["status"]["valueCode"]
    assert status == "called"
    enc = {p["name"]: p for p in called.json()["parameter"]}["encounter"]["valueReference"][
        "reference"
    ]
    note = client.post(
        f"/fhir/{enc}/$note",
        headers=DOCTOR,
        json=params(text="复诊，血糖控制可。", clientId="n-http-1"),
    )
    assert note.status_code == 200 and note.json()["resourceType"] == "DocumentReference"
    lst = client.get(
        "/fhir/PractitionerRole/role-a/$clinic-list",
        params={"date": plus(1).isoformat()},
        headers=DOCTOR,
    )
    assert [p["name"] for p in lst.json()["parameter"]] == ["session", "session"]


def test_vitals_over_http_warn_but_store(api: tuple[TestClient, World]) -> None:
    client, world = api
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "clientId", "valueString": "vit-http-1"},
        {"name": "reading", "part": [{"name": "kind", "valueCode": "heart-rate"}, {"name": "value", "valueDecimal": 260}]},
        {"name": "reading", "part": [{"name": "kind", "valueCode": "blood-pressure"},
                                     {"name": "value", "valueDecimal": 120}, {"name": "value", "valueDecimal": 80}]},
    ]}  # fmt: skip
    r = client.post("/fhir/Patient/pat-1/$record-vitals", headers=NURSE, json=body)
    assert r.status_code == 201
    entries = r.json()["entry"]
    assert [e["resource"]["resourceType"] for e in entries] == [
        "Observation",
        "Observation",
        "OperationOutcome",
    ]
    assert entries[-1]["resource"]["issue"][0]["severity"] == "warning"
    again = client.post("/fhir/Patient/pat-1/$record-vitals", headers=NURSE, json=body)
    assert again.status_code == 200
    assert (
        client.post("/fhir/Patient/pat-1/$record-vitals", headers=PARENT, json=body).status_code
        == 403
    )
