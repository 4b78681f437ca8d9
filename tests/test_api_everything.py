"""Patient/$everything and Patient/$summary over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ehr.store import Store
from fhir_api.app import create_app


def test_everything_and_summary(store: Store) -> None:
    c = TestClient(create_app(store))
    store.update(
        "Practitioner",
        "dr-li",
        {"resourceType": "Practitioner", "id": "dr-li", "name": [{"family": "李"}]},
    )
    for pid in ("a", "b"):
        store.update(
            "Patient", pid, {"resourceType": "Patient", "id": pid, "name": [{"family": "周"}]}
        )
        store.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "体温"},
                "subject": {"reference": f"Patient/{pid}"},
                "performer": [{"reference": "Practitioner/dr-li"}],
            }
        )
    r = c.get("/fhir/Patient/a/$everything")
    assert r.status_code == 200
    refs = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]}
    assert "Patient/a" in refs and "Practitioner/dr-li" in refs and "Patient/b" not in refs
    subjects = {
        e["resource"]["subject"]["reference"]
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert subjects == {"Patient/a"}
    assert c.get("/fhir/Patient/nope/$everything").status_code == 404
    s = c.get("/fhir/Patient/a/$summary")
    assert s.status_code == 200
    doc = s.json()
    assert (
        doc["type"] == "document" and doc["entry"][0]["resource"]["resourceType"] == "Composition"
    )
