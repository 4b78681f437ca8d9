"""Nurse station (worklist, identification, vital signs, medication administration with the
double check, all idempotent) and doctor workstation (clinic list, trends, note, orders)."""

from __future__ import annotations

import base64
from datetime import timedelta
from functools import partial

import pytest
from test_appointments_support import NOW, ORG, World, at, build_world, plus

from appointments import Actor, book
from appointments.checkin import call_next, check_in
from appointments.nursing import (
    administer_medication,
    administration_purpose,
    identify_patient,
    record_vital_signs,
    ward_worklist,
)
from appointments.workstation import Order, clinic_list, place_orders, results_over_time, write_note
from ehr.accounts.tokens import WitnessAssertion
from ehr.errors import BadRequest, Conflict, Forbidden, Unprocessable
from ehr.identifiers import mrn_system
from ehr.store import Store

WARD = "loc-h1-w03"
MRN = f"{mrn_system(ORG)}|H100000001"


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def admit(world: World, patient: str = "pat-1", eid: str = "enc-ip-1") -> str:
    """An inpatient Encounter at the ward, bed 3 (a Location part of the ward)."""
    p = world.resource("Patient", patient)
    mrn = "H100000001" if patient == "pat-1" else f"H1-{patient}"
    p.setdefault("identifier", []).append({"system": mrn_system(ORG), "value": mrn})
    world.store.update("Patient", patient, p)
    world.store.update("Location", "bed-3", {
        "resourceType": "Location", "id": "bed-3", "status": "active", "name": "3床",
        "partOf": {"reference": f"Location/{WARD}"},
    })  # fmt: skip
    world.store.update("Encounter", eid, {
        "resourceType": "Encounter", "id": eid, "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:test:admission", "value": f"ADM-{eid}"}],
        "location": [{"location": {"reference": "Location/bed-3"}, "status": "active"}],
        "period": {"start": "2025-07-20T10:00:00+08:00"},
    })  # fmt: skip
    return eid


INSULIN = Order(
    "medication",
    "http://www.whocc.no/atc|A10AB01",
    "胰岛素注射液",
    dose={"value": 4, "unit": "U", "system": "http://unitsofmeasure.org", "code": "[IU]"},
    instructions="餐前皮下注射",
)
CEFTRIAXONE = Order(
    "medication", "http://www.whocc.no/atc|J01DD04", "头孢曲松", instructions="静滴 qd"
)


# -- nurse station ---------------------------------------------------------------------------------


def test_worklist_shows_due_tasks(world: World) -> None:
    eid = admit(world)
    admit(world, "pat-2", "enc-ip-2")
    orders = place_orders(world.svc, world.doctor, eid, [
        CEFTRIAXONE.__class__(**{**CEFTRIAXONE.__dict__, "first_due": NOW + timedelta(minutes=30)}),
        INSULIN.__class__(**{**INSULIN.__dict__, "first_due": NOW + timedelta(hours=5)}),
    ], client_id="orders-1")  # fmt: skip
    assert [o["resourceType"] for o in orders] == ["MedicationRequest", "MedicationRequest"]
    items = ward_worklist(world.svc, world.nurse, WARD, horizon_hours=2)
    assert [i.encounter["id"] for i in items] == [
        eid,
        "enc-ip-2",
    ]  # the patient with a due task first
    assert [t["focus"]["reference"] for t in items[0].tasks] == [
        f"MedicationRequest/{orders[0]['id']}"
    ]
    assert items[0].patient is not None and items[0].patient["id"] == "pat-1"
    with pytest.raises(Forbidden):
        ward_worklist(world.svc, world.parent, WARD)


def test_identify_by_wristband_card_or_admission(world: World) -> None:
    eid = admit(world)
    who = identify_patient(world.svc, world.nurse, MRN)
    assert who.patient["id"] == "pat-1" and who.encounter is not None and who.encounter["id"] == eid
    by_adm = identify_patient(world.svc, world.nurse, f"urn:test:admission|ADM-{eid}")
    assert by_adm.patient["id"] == "pat-1"
    with pytest.raises(BadRequest):
        identify_patient(world.svc, world.nurse, "no-bar")


def test_vital_signs_follow_the_profile_and_warn(world: World) -> None:
    eid = admit(world)
    result = record_vital_signs(world.svc, world.nurse, patient="pat-1", encounter=eid, client_id="v-1", readings={
        "heart-rate": 72, "body-temperature": 36.8, "blood-pressure": [300, 85], "oxygen-saturation": 97,
    })  # fmt: skip
    assert len(result.observations) == 4 and not result.repeated
    by_code = {o["code"]["coding"][0]["code"]: o for o in result.observations}
    hr = by_code["8867-4"]
    assert hr["category"][0]["coding"][0]["code"] == "vital-signs"
    assert hr["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert hr["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/heartrate"]
    bp = by_code["85354-9"]
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == ["8480-6", "8462-4"]
    assert by_code["8310-5"]["valueQuantity"]["code"] == "Cel"
    # the implausible systolic is stored, with a warning
    assert [w.severity for w in result.warnings] == ["warning"] and "收缩压 300" in result.warnings[
        0
    ].diagnostics
    # a retry over flaky Wi-Fi makes nothing new
    again = record_vital_signs(world.svc, world.nurse, patient="pat-1", encounter=eid, client_id="v-1", readings={
        "heart-rate": 72, "body-temperature": 36.8, "blood-pressure": [300, 85], "oxygen-saturation": 97,
    })  # fmt: skip
    assert again.repeated and sorted(o["id"] for o in again.observations) == sorted(
        o["id"] for o in result.observations
    )
    assert world.count("Observation") == 4
    with pytest.raises(Unprocessable, match="Unknown vital sign"):
        record_vital_signs(
            world.svc, world.nurse, patient="pat-1", client_id="v-2", readings={"mood": 3}
        )
    with pytest.raises(Unprocessable):
        record_vital_signs(
            world.svc,
            world.nurse,
            patient="pat-2",
            encounter=eid,
            client_id="v-3",
            readings={"heart-rate": 70},
        )
    assert world.count("Observation") == 4


def test_medication_double_check(world: World) -> None:
    eid = admit(world)
    admit(world, "pat-2", "enc-ip-2")
    [mr] = place_orders(world.svc, world.doctor, eid, [CEFTRIAXONE], client_id="o-2")
    other_wrist = "urn:test:admission|ADM-enc-ip-2"
    with pytest.raises(Conflict, match="wrong patient"):
        administer_medication(
            world.svc,
            world.nurse,
            request=mr["id"],
            scanned_patient=other_wrist,
            scanned_drug="J01DD04",
            client_id="a-1",
        )
    with pytest.raises(Conflict, match="wrong drug"):
        administer_medication(
            world.svc,
            world.nurse,
            request=mr["id"],
            scanned_patient=MRN,
            scanned_drug="A10AB01",
            client_id="a-1",
        )
    assert world.count("MedicationAdministration") == 0
    given = administer_medication(
        world.svc,
        world.nurse,
        request=mr["id"],
        scanned_patient=MRN,
        scanned_drug="http://www.whocc.no/atc|J01DD04",
        client_id="a-1",
    )
    ma = given.administration
    assert ma["status"] == "completed" and ma["request"] == {
        "reference": f"MedicationRequest/{mr['id']}"
    }
    assert ma["context"] == {"reference": f"Encounter/{eid}"} and ma["subject"] == {
        "reference": "Patient/pat-1"
    }
    assert given.task is not None and world.resource("Task", given.task)["status"] == "completed"
    retry = administer_medication(
        world.svc,
        world.nurse,
        request=mr["id"],
        scanned_patient=MRN,
        scanned_drug="J01DD04",
        client_id="a-1",
    )
    assert retry.repeated and retry.administration["id"] == ma["id"]
    assert world.count("MedicationAdministration") == 1


def witness(request: str, practitioner: str = "nurse-2", jti: str = "jti-1") -> WitnessAssertion:
    """A second nurse's signature, as the HTTP layer passes it once verified (the token checks
    are tested in test_auth_witness.py and test_nurse_double_check.py)."""
    return WitnessAssertion(
        subject=f"user-{practitioner}", practitioner=practitioner, role="nurse",
        purpose=administration_purpose(request), requested_by="user-nurse-1", client_id="app",
        jti=jti, issued_at=0, expires_at=0,
    )  # fmt: skip


def test_high_alert_drug_needs_a_second_nurse(world: World) -> None:
    eid = admit(world)
    [mr] = place_orders(world.svc, world.doctor, eid, [INSULIN], client_id="o-3")
    give = partial(administer_medication, world.svc, world.nurse, request=mr["id"],
                   scanned_patient=MRN, scanned_drug="A10AB01")  # fmt: skip
    with pytest.raises(Conflict, match="双人核对"):
        give(client_id="a-2")
    # a second nurse named without her signature is not a double check
    with pytest.raises(Conflict, match="双人核对"):
        give(client_id="a-2", verifier="nurse-2")
    with pytest.raises(Conflict, match="second nurse"):
        give(client_id="a-2", witness=witness(mr["id"], "nurse-1"))
    with pytest.raises(Conflict, match="another order"):
        give(client_id="a-2", witness=witness("another-request"))
    assert world.count("MedicationAdministration") == 0
    done = give(client_id="a-2", witness=witness(mr["id"]))
    functions = [p["function"]["coding"][0]["code"] for p in done.administration["performer"]]
    assert functions == ["performer", "verifier"]
    assert done.administration["performer"][1]["actor"] == {"reference": "Practitioner/nurse-2"}
    assert done.administration["dosage"]["dose"]["value"] == 4
    # one signature, one administration; the same submission again is the same one
    with pytest.raises(Conflict, match="already used"):
        give(client_id="a-3", witness=witness(mr["id"]))
    again = give(client_id="a-2", witness=witness(mr["id"]))
    assert again.repeated and again.administration["id"] == done.administration["id"]
    assert world.count("MedicationAdministration") == 1


# -- doctor workstation ---------------------------------------------------------------------------------


def test_clinic_list_with_queue(world: World) -> None:
    tuesday = plus(1)
    a = book(world.svc, world.parent, slot=world.slot("sch-a", tuesday, "am", 2), patient="pat-1")
    book(
        world.svc,
        Actor.citizen("pat-2"),
        slot=world.slot("sch-a", tuesday, "pm", 1),
        patient="pat-2",
    )
    world.clock.set(at(tuesday, 8))
    check_in(world.svc, world.nurse, a["id"])
    sessions = clinic_list(world.svc, world.doctor)
    assert [(c.schedule, c.session) for c in sessions] == [("sch-a", "am"), ("sch-a", "pm")]
    assert [q.appointment for q in sessions[0].queue.waiting] == [a["id"]]
    assert len(sessions[1].queue.not_arrived) == 1
    assert clinic_list(world.svc, world.doctor, plus(6)) == []  # Sunday: no clinic
    with pytest.raises(Forbidden):
        clinic_list(world.svc, world.parent)
    with pytest.raises(BadRequest, match="PractitionerRole"):
        clinic_list(world.svc, world.nurse)  # a nurse holds no clinic


def test_results_over_time(world: World) -> None:
    eid = admit(world)
    for day, (hr, bp) in enumerate([(80, [150, 95]), (76, [140, 90]), (70, [128, 82])]):
        record_vital_signs(
            world.svc,
            world.nurse,
            patient="pat-1",
            encounter=eid,
            client_id=f"r-{day}",
            effective=NOW - timedelta(days=3 - day),
            readings={"heart-rate": hr, "blood-pressure": bp},
        )
    series = results_over_time(world.svc, world.doctor, "pat-1", ["8867-4", "85354-9"])
    by = {s.code: s for s in series}
    assert [v for _, v in by["8867-4"].points] == [80, 76, 70]
    assert [v for _, v in by["8480-6"].points] == [150, 140, 128]
    assert [v for _, v in by["8462-4"].points] == [95, 90, 82]
    assert by["8480-6"].unit == "mm[Hg]"
    recent = results_over_time(
        world.svc, world.doctor, "pat-1", ["8867-4"], start=NOW - timedelta(days=1, hours=1)
    )
    assert [v for _, v in recent[0].points] == [70]


def test_note_and_orders(world: World) -> None:
    tuesday = plus(1)
    a = book(world.svc, world.parent, slot=world.slot("sch-a", tuesday, "am", 1), patient="pat-1")
    world.clock.set(at(tuesday, 8))
    check_in(world.svc, world.nurse, a["id"])
    called = call_next(world.svc, world.doctor, "sch-a", tuesday, "am")
    assert called is not None
    note = write_note(
        world.svc, world.doctor, called.encounter, "主诉：口渴多饮3月。", client_id="n-1"
    )
    assert note["context"]["encounter"] == [{"reference": f"Encounter/{called.encounter}"}]
    assert (
        base64.b64decode(note["content"][0]["attachment"]["data"]).decode() == "主诉：口渴多饮3月。"
    )
    same = write_note(
        world.svc, world.doctor, called.encounter, "主诉：口渴多饮3月。", client_id="n-1"
    )
    assert same["meta"]["versionId"] == "1"
    edited = write_note(
        world.svc, world.doctor, called.encounter, "主诉：口渴多饮3月，体重下降。", client_id="n-1"
    )
    assert edited["id"] == note["id"] and edited["meta"]["versionId"] == "2"
    orders = place_orders(world.svc, world.doctor, called.encounter, [
        Order("lab", "4548-4", "糖化血红蛋白"), Order("medication", "A10BA02", "二甲双胍", instructions="0.5g tid"),
    ], client_id="o-9")  # fmt: skip
    assert [o["resourceType"] for o in orders] == ["ServiceRequest", "MedicationRequest"]
    assert orders[0]["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "4548-4",
        "display": "糖化血红蛋白",
    }
    again = place_orders(world.svc, world.doctor, called.encounter, [
        Order("lab", "4548-4", "糖化血红蛋白"), Order("medication", "A10BA02", "二甲双胍", instructions="0.5g tid"),
    ], client_id="o-9")  # fmt: skip
    assert [o["id"] for o in again] == [o["id"] for o in orders]
    assert world.count("Task") == 0  # an outpatient visit makes no ward task
    with pytest.raises(Forbidden):
        write_note(world.svc, world.parent, called.encounter, "x", client_id="n-2")
