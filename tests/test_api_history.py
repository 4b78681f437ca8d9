"""history over HTTP (http://hl7.org/fhir/R4/http.html#history): instance, type and system
level, request/response per entry, _since, _at, _count and cursor paging."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api_support import api, observation, patient

from ehr.search.dates import us_to_instant
from ehr.store import Store


@pytest.fixture
def client(store: Store) -> TestClient:
    return api(store)


def _bundle(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body


def test_instance_history_entries(client: TestClient) -> None:
    created = client.post("/Patient", json=patient()).json()
    rid = created["id"]
    client.put(f"/Patient/{rid}", json=patient(given="二", id=rid))
    client.patch(
        f"/Patient/{rid}",
        json=[{"op": "add", "path": "/gender", "value": "female"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    client.delete(f"/Patient/{rid}")
    body = _bundle(client, f"/Patient/{rid}/_history")
    assert body["total"] == 4
    entries = body["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert [e["request"]["url"] for e in entries] == [f"Patient/{rid}"] * 3 + ["Patient"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert entries[-1]["response"]["status"].startswith("201")
    assert "resource" not in entries[0]
    assert entries[1]["resource"]["gender"] == "female"
    assert entries[2]["resource"]["name"][0]["given"] == ["二"]
    assert entries[3]["resource"] == created
    assert all(e["fullUrl"] == f"http://testserver/fhir/Patient/{rid}" for e in entries)
    assert entries[1]["response"]["lastModified"] == entries[1]["resource"]["meta"]["lastUpdated"]
    assert body["link"][0] == {
        "relation": "self",
        "url": f"http://testserver/fhir/Patient/{rid}/_history",
    }


def test_type_and_system_history(client: TestClient) -> None:
    p = client.post("/Patient", json=patient()).json()["id"]
    client.post("/Observation", json=observation(f"Patient/{p}"))
    client.put(f"/Patient/{p}", json=patient(given="二", id=p))
    by_type = _bundle(client, "/Patient/_history")
    assert [(e["resource"]["resourceType"], e["response"]["etag"]) for e in by_type["entry"]] == [
        ("Patient", 'W/"2"'),
        ("Patient", 'W/"1"'),
    ]
    system = _bundle(client, "/_history")
    assert [e["resource"]["resourceType"] for e in system["entry"]] == [
        "Patient",
        "Observation",
        "Patient",
    ]


def test_paging_since_and_at(client: TestClient) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    for i in range(6):
        client.put(f"/Patient/{rid}", json=patient(given=str(i), id=rid))
    seen: list[str] = []
    url: str | None = f"/Patient/{rid}/_history?_count=3"
    pages = 0
    while url:
        page = client.get(url).json()
        pages += 1
        seen += [e["response"]["etag"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0] if nxt else None
        if url:
            assert url.startswith("http://testserver/fhir/Patient/") and "_count=3" in url
    assert pages == 3
    assert seen == [f'W/"{v}"' for v in range(7, 0, -1)]

    v5 = client.get(f"/Patient/{rid}/_history/5").json()["meta"]["lastUpdated"]
    since = _bundle(client, f"/Patient/{rid}/_history", _since=v5)
    assert [e["response"]["etag"] for e in since["entry"]] == ['W/"7"', 'W/"6"', 'W/"5"']
    assert since["total"] == 3
    later = us_to_instant(int((time.time() + 3600) * 1_000_000))
    assert _bundle(client, f"/Patient/{rid}/_history", _since=later)["entry"] == []
    at = _bundle(client, f"/Patient/{rid}/_history", _at=v5)
    assert [e["response"]["etag"] for e in at["entry"]] == ['W/"5"']
    assert len(_bundle(client, "/_history", _count=2)["entry"]) == 2


def test_history_bad_requests(client: TestClient) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    for params in (
        {"_count": "many"},
        {"_since": "yesterday"},
        {"_at": "2020-13"},
        {"_cursor": "%%%"},
    ):
        r = client.get(f"/Patient/{rid}/_history", params=params)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient/nope/_history").status_code == 404
    assert client.get("/Nope/_history").status_code == 404
    assert client.get("/Nope/x/_history").status_code == 404
    assert client.get("/Patient/bad_id!/_history").status_code == 400
