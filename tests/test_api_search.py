"""search over HTTP (http://hl7.org/fhir/R4/http.html#search): type, POST _search, system
(_type), Patient compartment, strict handling, paging links, and conditional interactions."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api_support import FHIR_JSON, api, observation, patient, rows

from ehr.store import Store


@pytest.fixture
def client(store: Store) -> TestClient:
    return api(store)


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _search(client: TestClient, path: str, **kw: Any) -> dict[str, Any]:
    r = client.get(path, **kw)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


@pytest.fixture
def people(client: TestClient) -> dict[str, str]:
    ids = {}
    for family, given in (("张", "伟"), ("王", "芳"), ("Smith", "John")):
        ids[family] = client.post("/Patient", json=patient(family, given)).json()["id"]
    for family in ("张", "王"):
        client.post("/Observation", json=observation(f"Patient/{ids[family]}"))
    return ids


def test_type_search_and_post_search(client: TestClient, people: dict[str, str]) -> None:
    got = _search(client, "/Patient", params={"family": "张"})
    assert _ids(got) == [people["张"]] and got["total"] == 1
    assert got["entry"][0]["fullUrl"] == f"http://testserver/fhir/Patient/{people['张']}"
    posted = client.post("/Patient/_search", data={"family": "王"})
    assert posted.status_code == 200 and _ids(posted.json()) == [people["王"]]
    both = client.post("/Patient/_search?gender:missing=true", data={"family": "smith"})
    assert _ids(both.json()) == [people["Smith"]]
    wrong = client.post("/Patient/_search", json={"family": "王"})
    assert wrong.status_code == 415
    assert _search(client, "/Patient", params={"family": "nobody"}).get("entry") is None


def test_system_and_compartment_search(client: TestClient, people: dict[str, str]) -> None:
    everything = _search(client, "", params={"_type": "Patient,Observation"})
    assert everything["total"] == 5
    slash = _search(client, "/", params={"_type": "Observation"})
    assert slash["total"] == 2
    posted = client.post("/_search", data={"_type": "Patient", "family": "Smith"})
    assert _ids(posted.json()) == [people["Smith"]]
    comp = _search(client, f"/Patient/{people['张']}/Observation")
    assert comp["total"] == 1
    assert comp["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{people['张']}"
    star = _search(client, f"/Patient/{people['王']}/*")
    assert {e["resource"]["resourceType"] for e in star["entry"]} == {"Patient", "Observation"}
    assert client.get(f"/Patient/{people['王']}/NoSuchType").status_code == 404
    assert client.get(f"/Observation/{people['王']}/Patient").status_code == 404


def test_paging_links_and_strict_handling(client: TestClient, people: dict[str, str]) -> None:
    first = _search(client, "/Patient", params={"_count": "2", "_sort": "family"})
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert links["self"].startswith("http://testserver/fhir/Patient?")
    second = _search(client, links["next"])
    assert len(_ids(first)) == 2 and len(_ids(second)) == 1
    assert set(_ids(first) + _ids(second)) == set(people.values())

    lenient = _search(client, "/Patient", params={"nonsense": "1"})
    assert len(_ids(lenient)) == 3
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    strict = client.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient", params={"birthdate": "not-a-date"}).status_code == 400
    assert client.get("/NoSuchType", params={"x": "1"}).status_code == 404
    assert client.get("/Patient", headers={"Accept": "application/fhir+xml"}).status_code == 406
    pretty = client.get("/Patient", params={"_pretty": "true"})
    assert pretty.text.startswith('{\n  "resourceType": "Bundle"')


def test_conditional_create(client: TestClient, store: Store) -> None:
    ident: dict[str, Any] = {"identifier": [{"system": "urn:oid:1.2.3", "value": "A-1"}]}
    first = client.post(
        "/Patient", json=patient(**ident), headers={"If-None-Exist": "identifier=urn:oid:1.2.3|A-1"}
    )
    assert first.status_code == 201
    before = rows(store)
    again = client.post(
        "/Patient", json=patient(**ident), headers={"If-None-Exist": "identifier=urn:oid:1.2.3|A-1"}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["etag"] == 'W/"1"'
    assert rows(store) == before
    client.post("/Patient", json=patient(**ident))  # a second one with that identifier
    before = rows(store)
    several = client.post(
        "/Patient", json=patient(**ident), headers={"If-None-Exist": "identifier=urn:oid:1.2.3|A-1"}
    )
    assert several.status_code == 412 and several.json()["resourceType"] == "OperationOutcome"
    bad = client.post("/Patient", json=patient(), headers={"If-None-Exist": "nonsense=1"})
    assert bad.status_code == 400
    assert rows(store) == before


def test_conditional_update(client: TestClient, store: Store) -> None:
    ident: dict[str, Any] = {"identifier": [{"system": "urn:x", "value": "U-1"}]}
    created = client.put("/Patient?identifier=urn:x|U-1", json=patient(**ident))
    assert created.status_code == 201
    rid = created.json()["id"]
    updated = client.put(
        "/Patient?identifier=urn:x|U-1&_format=json", json=patient(given="二", **ident)
    )
    assert updated.status_code == 200 and updated.json()["id"] == rid
    assert updated.headers["etag"] == 'W/"2"'
    client.post("/Patient", json=patient(**ident))
    before = rows(store)
    several = client.put("/Patient?identifier=urn:x|U-1", json=patient(**ident))
    assert several.status_code == 412
    assert client.put("/Patient", json=patient()).status_code == 400  # no condition
    mismatch = client.put("/Patient?_id=" + rid, json=patient(id="other"))
    assert mismatch.status_code == 400
    assert rows(store) == before


def test_conditional_patch(client: TestClient, store: Store) -> None:
    ident: dict[str, Any] = {"identifier": [{"system": "urn:x", "value": "P-1"}]}
    rid = client.post("/Patient", json=patient(**ident)).json()["id"]
    jp = {"Content-Type": "application/json-patch+json"}
    ops = b'[{"op": "add", "path": "/gender", "value": "other"}]'
    r = client.patch("/Patient?identifier=urn:x|P-1", content=ops, headers=jp)
    assert r.status_code == 200 and r.json()["id"] == rid and r.json()["gender"] == "other"
    before = rows(store)
    assert (
        client.patch("/Patient?identifier=urn:x|none", content=ops, headers=jp).status_code == 404
    )
    client.post("/Patient", json=patient(**ident))
    before = rows(store)
    assert client.patch("/Patient?identifier=urn:x|P-1", content=ops, headers=jp).status_code == 412
    assert client.patch("/Patient", content=ops, headers=jp).status_code == 400
    assert rows(store) == before


def test_conditional_delete(client: TestClient, store: Store) -> None:
    ident: dict[str, Any] = {"identifier": [{"system": "urn:x", "value": "D-1"}]}
    one = client.post("/Patient", json=patient(**ident)).json()["id"]
    r = client.delete("/Patient?identifier=urn:x|D-1")
    assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{one}").status_code == 410
    before = rows(store)
    nothing = client.delete("/Patient?identifier=urn:x|D-1")
    assert nothing.status_code == 200 and rows(store) == before
    ids = [client.post("/Patient", json=patient(**ident)).json()["id"] for _ in range(3)]
    before = rows(store)
    several = client.delete("/Patient?identifier=urn:x|D-1")
    assert several.status_code == 412 and rows(store) == before
    assert client.delete("/Patient?identifier=urn:x|D-1&_multiple=maybe").status_code == 400
    assert client.delete("/Patient").status_code == 400
    assert client.delete("/Patient?nonsense=1").status_code == 400
    assert rows(store) == before
    all_of_them = client.delete("/Patient?identifier=urn:x|D-1&_multiple=true")
    assert all_of_them.status_code == 200
    assert len(all_of_them.json()["issue"]) == 3
    assert all(client.get(f"/Patient/{i}").status_code == 410 for i in ids)
    assert client.get("/Patient", params={"identifier": "urn:x|D-1"}).json().get("total") == 0


def test_search_content_type(client: TestClient, people: dict[str, str]) -> None:
    r = client.get("/Patient", headers={"Accept": "application/json"})
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    r = client.get("/Patient")
    assert r.headers["content-type"] == f"{FHIR_JSON}; charset=utf-8"
