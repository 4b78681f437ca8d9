"""EMPI over HTTP (EHR_EMPI on): one citizen registered at two hospitals becomes one golden
record; $match grades candidates; $merge then $unmerge restores the records."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi.testclient import TestClient

from ehr.identifiers import citizen_id_identifier, make_citizen_id, mrn_system
from ehr.settings import Settings
from ehr.store import Store
from fhir_api.app import create_app

FHIR = {"Content-Type": "application/fhir+json"}
KEY = b"api-empi-test-key"
GOLDEN = "https://ehr.example.cn/fhir/CodeSystem/empi|golden"


def registration(hospital: str, mrn: str, citizen: str | None, name: str = "林晓燕") -> dict[str, Any]:
    ids: list[dict[str, Any]] = [{"system": mrn_system(hospital), "value": mrn}]
    if citizen:
        ids.insert(0, citizen_id_identifier(citizen, KEY))
    return {"resourceType": "Patient", "identifier": ids, "name": [{"text": name}],
            "gender": "female", "birthDate": "1979-05-02"}


def test_golden_record_match_merge_unmerge(store: Store) -> None:
    app = create_app(store, Settings(empi=True, citizen_id_key=KEY.decode()))
    c = TestClient(app)
    cid = make_citizen_id("330106", date(1979, 5, 2), 4, True)
    a = c.post("/fhir/Patient", json=registration("org-h1", "A-1", cid), headers=FHIR).json()
    b = c.post("/fhir/Patient", json=registration("org-h2", "B-7", cid), headers=FHIR).json()
    golden = c.get("/fhir/Patient", params={"_tag": GOLDEN}).json()
    assert golden["total"] == 1
    links = {lk["other"]["reference"] for lk in golden["entry"][0]["resource"]["link"]}
    assert links == {f"Patient/{a['id']}", f"Patient/{b['id']}"}

    probe = registration("org-h3", "C-1", None)
    m = c.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": probe}]}, headers=FHIR)
    assert m.status_code == 200
    assert m.json()["entry"], "the registered citizen is a candidate"

    obs = c.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
                                           "subject": {"reference": f"Patient/{b['id']}"}}, headers=FHIR).json()
    merged = c.post("/fhir/Patient/$merge", headers=FHIR, json={"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{b['id']}"}},
        {"name": "target-patient", "valueReference": {"reference": f"Patient/{a['id']}"}}]})
    assert merged.status_code == 200, merged.text
    assert c.get(f"/fhir/Observation/{obs['id']}").json()["subject"]["reference"] == f"Patient/{a['id']}"
    record = next(p for p in merged.json()["parameter"] if p["name"] == "merge-record")
    ref = record.get("valueReference", {}).get("reference") or record["resource"]["id"]
    undone = c.post("/fhir/Patient/$unmerge", headers=FHIR, json={"resourceType": "Parameters", "parameter": [
        {"name": "merge-record", "valueReference": {"reference": ref if "/" in ref else f"Provenance/{ref}"}}]})
    assert undone.status_code == 200, undone.text
    assert c.get(f"/fhir/Observation/{obs['id']}").json()["subject"]["reference"] == f"Patient/{b['id']}"
    assert c.post("/fhir/Patient/$unmerge", headers=FHIR, json={"resourceType": "Parameters"}).status_code == 400
