"""Patient/$everything (ehr.operations.everything) on both databases: isolation between two
patients who share a practitioner, referenced resources, _type, _since and _count paging."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from ehr.errors import BadRequest, Gone, NotFound
from ehr.operations.everything import everything_bundle, parameters_to_params
from ehr.store import Store

BASE = "http://exchange.example/fhir"
LOINC = "http://loinc.org"


def put(store: Store, resource: dict[str, Any]) -> None:
    store.update(resource["resourceType"], resource["id"], resource)


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def obs(
    oid: str, patient: str, *, performer: str = "Practitioner/dr-wang", **more: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": ref(f"Patient/{patient}"),
        "performer": [ref(performer)],
        "effectiveDateTime": "2025-03-01T09:00:00+08:00",
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        **more,
    }


def encounter(eid: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref(f"Patient/{patient}"),
        "participant": [{"individual": ref("Practitioner/dr-wang")}],
        "serviceProvider": ref("Organization/hosp-1"),
        "location": [{"location": ref("Location/clinic-1")}],
    }


@pytest.fixture
def city(store: Store) -> Store:
    """Two patients (pat-a, pat-b) seen by the same doctor in the same hospital, plus traps:
    pat-a's Condition cites pat-b's Observation as evidence, and pat-c links to pat-a."""
    put(store, {"resourceType": "Organization", "id": "hosp-1", "name": "市第一人民医院"})
    put(store, {"resourceType": "Organization", "id": "unused-org", "name": "无关机构"})
    put(store, {"resourceType": "Location", "id": "clinic-1", "name": "心内科门诊",
                "managingOrganization": ref("Organization/hosp-1")})  # fmt: skip
    put(store, {"resourceType": "Practitioner", "id": "dr-wang", "name": [{"text": "王医生"}]})
    put(store, {"resourceType": "Practitioner", "id": "dr-other", "name": [{"text": "李医生"}]})
    put(store, {"resourceType": "Medication", "id": "med-1",
                "code": {"text": "氨氯地平片 (amlodipine)"}})  # fmt: skip
    put(store, {"resourceType": "Patient", "id": "pat-a", "name": [{"text": "张三"}],
                "generalPractitioner": [ref("Practitioner/dr-wang")]})  # fmt: skip
    put(store, {"resourceType": "Patient", "id": "pat-b", "name": [{"text": "李四"}],
                "generalPractitioner": [ref("Practitioner/dr-wang")]})  # fmt: skip
    put(store, {"resourceType": "Patient", "id": "pat-c", "name": [{"text": "张三"}],
                "link": [{"other": ref("Patient/pat-a"), "type": "seealso"}]})  # fmt: skip
    put(store, encounter("enc-a", "pat-a"))
    put(store, encounter("enc-b", "pat-b"))
    put(store, obs("obs-a", "pat-a", encounter=ref("Encounter/enc-a")))
    put(store, obs("obs-b", "pat-b", encounter=ref("Encounter/enc-b")))
    put(store, obs("obs-c", "pat-c", performer="Practitioner/dr-other"))
    put(store, {
        "resourceType": "Condition", "id": "cond-a", "subject": ref("Patient/pat-a"),
        "code": {"text": "高血压 (hypertension)"},
        "evidence": [{"detail": [ref("Observation/obs-b")]}],  # a mistake: someone else's data
        "recorder": ref("Practitioner/dr-wang"),
    })  # fmt: skip
    put(store, {
        "resourceType": "MedicationRequest", "id": "mr-a", "status": "active", "intent": "order",
        "subject": ref("Patient/pat-a"), "medicationReference": ref("Medication/med-1"),
        "requester": ref("Practitioner/dr-wang"),
    })  # fmt: skip
    return store


def run(
    store: Store, pid: str, params: list[tuple[str, str]] | None = None, **kw: Any
) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(everything_bundle(store, pid, params or [], base=BASE, **kw))
    return out


def keys(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
    }


def all_pages(store: Store, pid: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Follow the ``next`` links from page 1 to the end."""
    pages = [run(store, pid, params)]
    while nxt := [lk["url"] for lk in pages[-1]["link"] if lk["relation"] == "next"]:
        url = urlsplit(nxt[0])
        assert url.path == "/fhir/Patient/" + pid + "/$everything"
        pages.append(run(store, pid, parse_qsl(url.query)))
        assert len(pages) < 100
    return pages


A_RECORD = {
    "Patient/pat-a",
    "Encounter/enc-a",
    "Observation/obs-a",
    "Condition/cond-a",
    "MedicationRequest/mr-a",
}
A_REFERENCED = {
    "Practitioner/dr-wang",
    "Organization/hosp-1",
    "Location/clinic-1",
    "Medication/med-1",
}


def test_everything_is_the_compartment_plus_what_it_refers_to(city: Store) -> None:
    b = run(city, "pat-a")
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    assert keys(b) == A_RECORD | A_REFERENCED
    assert b["total"] == len(A_RECORD | A_REFERENCED)
    modes = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["search"]["mode"]
        for e in b["entry"]
    }
    assert {k for k, m in modes.items() if m == "match"} == A_RECORD
    assert {k for k, m in modes.items() if m == "include"} == A_REFERENCED
    for e in b["entry"]:
        assert e["fullUrl"] == f"{BASE}/{e['resource']['resourceType']}/{e['resource']['id']}"
    assert b["link"] == [{"relation": "self", "url": f"{BASE}/Patient/pat-a/$everything"}]


def test_two_patients_sharing_a_practitioner_never_see_each_other(city: Store) -> None:
    a, b = keys(run(city, "pat-a")), keys(run(city, "pat-b"))
    assert "Practitioner/dr-wang" in a and "Practitioner/dr-wang" in b  # shared: fine
    assert not {"Patient/pat-b", "Encounter/enc-b", "Observation/obs-b"} & a
    assert not {"Patient/pat-a", "Encounter/enc-a", "Observation/obs-a", "Condition/cond-a"} & b
    assert b == {"Patient/pat-b", "Encounter/enc-b", "Observation/obs-b",
                 "Practitioner/dr-wang", "Organization/hosp-1", "Location/clinic-1"}  # fmt: skip


def test_referenced_data_of_another_patient_and_linked_patients_stay_out(city: Store) -> None:
    a = keys(run(city, "pat-a"))
    assert "Observation/obs-b" not in a  # cited by pat-a's Condition, but it is pat-b's
    assert "Patient/pat-c" not in a  # pat-c.link names pat-a: still another patient
    assert "Observation/obs-c" not in a and "Practitioner/dr-other" not in a
    assert "Organization/unused-org" not in a


def test_patient_ids_export_linked_records_together(city: Store) -> None:
    """EMPI hook: a golden record over pat-a and pat-c."""
    both = keys(run(city, "pat-a", patient_ids=["pat-a", "pat-c"]))
    assert both == A_RECORD | A_REFERENCED | {
        "Patient/pat-c",
        "Observation/obs-c",
        "Practitioner/dr-other",
    }
    assert "Observation/obs-b" not in both


def test_type_restricts_the_output_but_not_the_references_followed(city: Store) -> None:
    b = run(city, "pat-a", [("_type", "Observation,Practitioner")])
    assert keys(b) == {"Observation/obs-a", "Practitioner/dr-wang"}
    assert b["total"] == 2
    assert "_type=Observation,Practitioner" in b["link"][0]["url"]
    assert keys(run(city, "pat-a", [("_type", "Medication"), ("_type", "Encounter")])) == {
        "Medication/med-1",
        "Encounter/enc-a",
    }


def test_since_keeps_what_changed_at_or_after_it(city: Store) -> None:
    changed = city.update("Observation", "obs-a", {**obs("obs-a", "pat-a"), "status": "amended"})
    city.update("Practitioner", "dr-wang", {"resourceType": "Practitioner", "id": "dr-wang",
                                            "name": [{"text": "王建国"}]})  # fmt: skip
    city.update("Observation", "obs-b", {**obs("obs-b", "pat-b"), "status": "amended"})
    b = run(city, "pat-a", [("_since", changed.last_modified)])
    assert keys(b) == {"Observation/obs-a", "Practitioner/dr-wang"}
    assert run(city, "pat-a", [("_since", "2999-01-01T00:00:00Z")]).get("entry") is None


def test_deleted_resources_are_left_out(city: Store) -> None:
    city.delete("Observation", "obs-a")
    city.delete("Medication", "med-1")
    a = keys(run(city, "pat-a"))
    assert "Observation/obs-a" not in a and "Medication/med-1" not in a
    assert "Condition/cond-a" in a


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_count_paging_covers_everything_exactly_once(city: Store, count: int) -> None:
    for i in range(7):  # some bulk so pages mix matches and includes
        city.update("Observation", f"obs-a{i}", obs(f"obs-a{i}", "pat-a"))
    whole = run(city, "pat-a", [("_count", "1000")])
    pages = all_pages(city, "pat-a", [("_count", str(count))])
    seen = [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for p in pages
        for e in p.get("entry", [])
    ]
    assert len(seen) == len(set(seen)) == whole["total"]
    assert set(seen) == keys(whole)
    assert all(len(p.get("entry", [])) <= count for p in pages)
    assert {p["total"] for p in pages} == {whole["total"]}
    assert len(pages) == -(-whole["total"] // count)


def test_paging_is_a_snapshot_of_page_one(city: Store) -> None:
    first = run(city, "pat-a", [("_count", "3")])
    city.update("Observation", "obs-late", obs("obs-late", "pat-a"))
    city.update("Observation", "obs-a", {**obs("obs-a", "pat-a"), "status": "amended"})
    seen = keys(first)
    page = first
    while nxt := [lk["url"] for lk in page["link"] if lk["relation"] == "next"]:
        page = run(city, "pat-a", parse_qsl(urlsplit(nxt[0]).query))
        assert not keys(page) & seen
        seen |= keys(page)
    assert seen == A_RECORD | A_REFERENCED  # obs-late (created while paging) did not join


def test_count_zero_gives_the_total_only(city: Store) -> None:
    b = run(city, "pat-a", [("_count", "0")])
    assert b["total"] == len(A_RECORD | A_REFERENCED) and "entry" not in b


def test_errors(city: Store) -> None:
    with pytest.raises(NotFound):
        run(city, "nobody")
    city.delete("Patient", "pat-b")
    with pytest.raises(Gone):
        run(city, "pat-b")
    for bad in ([("_since", "yesterday")], [("_type", "Nonsense")], [("_count", "-1")],
                [("start", "2020")], [("_sort", "date")], [("_cursor", "abc")]):  # fmt: skip
        with pytest.raises(BadRequest):
            run(city, "pat-a", bad)
    page1 = run(city, "pat-a", [("_count", "2")])
    nxt = next(lk["url"] for lk in page1["link"] if lk["relation"] == "next")
    cursor = dict(parse_qsl(urlsplit(nxt).query))["_cursor"]
    with pytest.raises(BadRequest):  # a cursor of another request
        run(city, "pat-a", [("_count", "2"), ("_type", "Observation"), ("_cursor", cursor)])


def test_post_parameters_are_the_same_as_the_query(city: Store) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueCode": "Observation,Practitioner"},
            {"name": "_count", "valueInteger": 1},
        ],
    }
    params = parameters_to_params(body)
    assert params == [("_type", "Observation,Practitioner"), ("_count", "1")]
    assert run(city, "pat-a", params)["total"] == 2
    with pytest.raises(BadRequest):
        parameters_to_params({"resourceType": "Patient"})
    with pytest.raises(BadRequest):
        parameters_to_params({"resourceType": "Parameters", "parameter": [{"name": "_type"}]})
