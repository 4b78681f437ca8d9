"""POST [base] with batch and transaction Bundles, and $validate, through the real app."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from ehr.store import Store
from fhir_api.app import create_app

FHIR = {"Content-Type": "application/fhir+json"}


def client(store: Store) -> TestClient:
    return TestClient(create_app(store))


def test_transaction_over_http(store: Store) -> None:
    c = client(store)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": "刘", "given": ["洋"]}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "心率"},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": "Observation?code:text=心率"}},
        ],
    }
    r = c.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"][:2]] == ["201 Created", "201 Created"]
    pat_ref = "/".join(out["entry"][0]["response"]["location"].split("/")[-4:-2])
    found = out["entry"][2]["resource"]
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["subject"]["reference"] == pat_ref


def test_transaction_error_names_entry_and_writes_nothing(store: Store) -> None:
    c = client(store)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "banana"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = c.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert c.get("/fhir/Patient").json()["total"] == 0


def test_batch_over_http(store: Store) -> None:
    c = client(store)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/missing"}},
        ],
    }
    r = c.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "404"


def test_bundle_errors(store: Store) -> None:
    c = client(store)
    assert c.post("/fhir", content=b"{not json", headers=FHIR).status_code == 400
    assert c.post("/fhir", json={"resourceType": "Patient"}, headers=FHIR).status_code == 400
    assert (
        c.post(
            "/fhir", content=b"<Bundle/>", headers={"Content-Type": "application/fhir+xml"}
        ).status_code
        == 415
    )


def test_validate_operation(store: Store) -> None:
    c = client(store)
    r = c.post(
        "/fhir/Patient/$validate",
        json={
            "resourceType": "Patient",
            "gender": "banana",
            "contact": [{"relationship": [{"text": "父亲"}]}],
        },
        headers=FHIR,
    )
    assert r.status_code == 200
    issues = r.json()["issue"]
    assert any(i.get("expression") == ["Patient.gender"] for i in issues)
    assert any("pat-1" in i["diagnostics"] for i in issues)
    ok = c.post(
        "/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": "male"}, headers=FHIR
    )
    assert ok.json()["issue"][0]["severity"] == "information"
    assert c.get("/fhir/Patient").json()["total"] == 0
