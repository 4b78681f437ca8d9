"""read and vread over HTTP (http://hl7.org/fhir/R4/http.html#read, #vread, #cread):
stored bytes, ETag / Last-Modified, 304, 404, 410, 400, content negotiation."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import orjson
import pytest
from fastapi.testclient import TestClient
from test_api_support import FHIR_JSON, api, patient, settings

from ehr.store import Store
from fhir_api import create_app


@pytest.fixture
def client(store: Store) -> TestClient:
    return api(store)


def _create(client: TestClient) -> dict:
    r = client.post("/Patient", json=patient())
    assert r.status_code == 201
    return r.json()


def test_read_serves_the_stored_bytes_with_etag_and_last_modified(
    client: TestClient, store: Store
) -> None:
    created = _create(client)
    r = client.get(f"/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{FHIR_JSON}; charset=utf-8"
    assert r.content == store.read("Patient", created["id"]).data
    assert r.headers["etag"] == 'W/"1"'
    last_modified = parsedate_to_datetime(r.headers["last-modified"])
    assert last_modified.isoformat()[:19] == created["meta"]["lastUpdated"][:19]
    assert r.json()["name"] == [{"family": "张", "given": ["伟"]}]


def test_head_gives_the_headers_only(client: TestClient) -> None:
    rid = _create(client)["id"]
    r = client.head(f"/Patient/{rid}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["etag"] == 'W/"1"' and r.headers["content-type"].startswith(FHIR_JSON)
    assert client.head("/Patient/nope").status_code == 404


def test_conditional_read_304(client: TestClient) -> None:
    rid = _create(client)["id"]
    r = client.get(f"/Patient/{rid}")
    etag, last_modified = r.headers["etag"], r.headers["last-modified"]
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": '"1"'}).status_code == 304
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    not_modified = client.get(f"/Patient/{rid}", headers={"If-Modified-Since": last_modified})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    old = "Sat, 01 Jan 2000 00:00:00 GMT"
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": old}).status_code == 200
    assert (
        client.get(f"/Patient/{rid}", headers={"If-Modified-Since": "garbage"}).status_code == 200
    )
    client.put(f"/Patient/{rid}", json=patient(given="二", id=rid))
    changed = client.get(f"/Patient/{rid}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] == 'W/"2"'


def test_vread_each_version(client: TestClient) -> None:
    rid = _create(client)["id"]
    client.put(f"/Patient/{rid}", json=patient(given="二", id=rid))
    v1 = client.get(f"/Patient/{rid}/_history/1")
    v2 = client.get(f"/Patient/{rid}/_history/2")
    assert (v1.status_code, v2.status_code) == (200, 200)
    assert v1.json()["name"][0]["given"] == ["伟"] and v1.headers["etag"] == 'W/"1"'
    assert v2.json()["name"][0]["given"] == ["二"] and v2.headers["etag"] == 'W/"2"'
    assert (
        client.get(f"/Patient/{rid}/_history/1", headers={"If-None-Match": 'W/"1"'}).status_code
        == 304
    )
    assert client.get(f"/Patient/{rid}/_history/3").status_code == 404
    assert client.get(f"/Patient/{rid}/_history/x").status_code == 404


def test_read_errors_are_operation_outcomes(client: TestClient) -> None:
    rid = _create(client)["id"]
    cases = {
        "/Patient/does-not-exist": 404,
        "/NoSuchType/1": 404,
        "/Patient/bad_id!": 400,
        "/Patient/" + "a" * 65: 400,
        "/Patient/%E5%BC%A0": 400,
        "/NoSuchType/1/_history/1": 404,
    }
    for path, status in cases.items():
        r = client.get(path)
        assert r.status_code == status, path
        body = r.json()
        assert (
            body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
        )
        assert r.headers["content-type"].startswith(FHIR_JSON)
    client.delete(f"/Patient/{rid}")
    gone = client.get(f"/Patient/{rid}")
    assert gone.status_code == 410 and gone.json()["issue"][0]["code"] == "deleted"
    assert gone.headers["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{rid}/_history/2").status_code == 410
    assert client.get(f"/Patient/{rid}/_history/1").status_code == 200


def test_format_and_accept(client: TestClient) -> None:
    rid = _create(client)["id"]
    ok = {
        None: FHIR_JSON,
        "application/fhir+json": FHIR_JSON,
        "application/json": "application/json",
        "application/json+fhir": FHIR_JSON,
        "*/*": FHIR_JSON,
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": FHIR_JSON,
        "application/fhir+xml;q=1, application/fhir+json;q=0.5": FHIR_JSON,
    }
    for accept, media in ok.items():
        headers = {"Accept": accept} if accept else {}
        r = client.get(f"/Patient/{rid}", headers=headers)
        assert r.status_code == 200, accept
        assert r.headers["content-type"] == f"{media}; charset=utf-8"
    for accept in (
        "application/fhir+xml",
        "application/xml",
        "text/turtle",
        "application/fhir+json;q=0",
    ):
        r = client.get(f"/Patient/{rid}", headers={"Accept": accept})
        assert r.status_code == 406, accept
        assert r.json()["resourceType"] == "OperationOutcome"
    for fmt in ("json", "application/fhir+json", "application/json"):
        r = client.get(
            f"/Patient/{rid}", params={"_format": fmt}, headers={"Accept": "application/xml"}
        )
        assert r.status_code == 200, fmt
    assert client.get(f"/Patient/{rid}?_format=application/fhir+json").status_code == 200
    for fmt in ("xml", "application/fhir+xml", "html"):
        assert client.get(f"/Patient/{rid}", params={"_format": fmt}).status_code == 406


def test_pretty(client: TestClient) -> None:
    rid = _create(client)["id"]
    plain = client.get(f"/Patient/{rid}")
    pretty = client.get(f"/Patient/{rid}", params={"_pretty": "true"})
    assert b"\n" not in plain.content
    assert pretty.content.startswith(b'{\n  "resourceType": "Patient"')
    assert orjson.loads(pretty.content) == orjson.loads(plain.content)
    assert "张" in pretty.text


def test_app_builds_its_own_store_from_settings(db_url: str) -> None:
    app = create_app(settings=settings(database_url=db_url))
    with TestClient(app, base_url="http://testserver/fhir") as c:  # runs startup and shutdown
        created = c.put("/Patient/own", json=patient(id="own"))
        assert created.status_code == 201
        assert c.get("/Patient/own").json()["id"] == "own"


def test_records_are_not_kept_in_browser_caches(client: TestClient) -> None:
    """FHIR responses, errors included, say ``Cache-Control: no-store`` (shared workstations);
    the static app pages keep their own revalidation policy."""
    created = _create(client)
    for path in (f"/Patient/{created['id']}", "/Patient?family=张", "/Patient/nope"):
        assert client.get(path).headers["cache-control"] == "no-store", path
    assert client.get("http://localhost/app/booking/").headers["cache-control"] == "no-cache"
