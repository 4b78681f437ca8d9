"""GET /metadata lists the custom SearchParameters clients wrote (ehr.search.custom), and follows
them as they are created, retired, deleted, or written by another worker. Both databases."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from test_api_support import api
from test_reindex import NICK_URL, nickname_param

from ehr.store import Store

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient_params(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get("/metadata")
    assert r.status_code == 200
    by_type = {res["type"]: res for res in r.json()["rest"][0]["resource"]}
    assert "nickname" not in {p["name"] for p in by_type["Observation"]["searchParam"]}
    return {p["name"]: p for p in by_type["Patient"]["searchParam"]}


def test_metadata_follows_custom_search_parameters(store: Store) -> None:
    store.custom.refresh_interval = 0.05
    client = api(store)
    before = patient_params(client)
    assert "nickname" not in before and "family" in before  # and the statement is now cached

    r = client.post("/SearchParameter", json=nickname_param(), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    sp_id = r.json()["id"]
    nick = patient_params(client)["nickname"]
    assert nick == {
        "name": "nickname", "definition": NICK_URL, "type": "string",
        "documentation": "what friends call the patient",
    }  # fmt: skip

    retired = {**nickname_param(), "id": sp_id, "status": "retired"}
    r = client.put(f"/SearchParameter/{sp_id}", json=retired, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert "nickname" not in patient_params(client)

    changed = {**nickname_param(), "id": sp_id, "description": "a friendlier name"}
    assert client.put(f"/SearchParameter/{sp_id}", json=changed, headers=FHIR_JSON).is_success
    assert patient_params(client)["nickname"]["documentation"] == "a friendlier name"

    assert client.delete(f"/SearchParameter/{sp_id}").is_success
    assert "nickname" not in patient_params(client)
    assert patient_params(client).keys() == before.keys()


def test_metadata_sees_a_parameter_another_worker_wrote(store: Store) -> None:
    store.custom.refresh_interval = 0.05
    client = api(store)
    assert "nickname" not in patient_params(client)
    other = Store(store.url)  # another process's store on the same database
    try:
        other.create(nickname_param())
    finally:
        other.dispose()
    time.sleep(0.1)  # this worker's refresh interval
    assert patient_params(client)["nickname"]["definition"] == NICK_URL
