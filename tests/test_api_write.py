"""create, update, patch and delete over HTTP (http://hl7.org/fhir/R4/http.html#create, #update,
#patch, #delete), their conditional forms and ``Prefer: return``."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from test_api_support import FHIR_JSON, api, patient, rows, without_meta

from ehr.store import Store


@pytest.fixture
def client(store: Store) -> TestClient:
    return api(store)


def test_create_201_with_location_etag_last_modified(client: TestClient) -> None:
    sent = patient(id="ignored-id", birthDate="1980-02-29")
    r = client.post("/Patient", json=sent)
    assert r.status_code == 201
    body = r.json()
    rid = body["id"]
    assert rid != "ignored-id"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["last-modified"].endswith(" GMT")
    assert body["meta"]["versionId"] == "1"
    assert without_meta(body) == without_meta(sent)
    assert client.get(f"/Patient/{rid}").json() == body


def test_base_url_from_settings(store: Store) -> None:
    client = api(store, base_url="https://ehr.example.org/fhir/")
    r = client.post("/Patient", json=patient())
    assert r.headers["location"].startswith("https://ehr.example.org/fhir/Patient/")


def test_create_with_fhir_json_content_type_and_charset(client: TestClient) -> None:
    for ctype in (
        FHIR_JSON,
        "application/json",
        f"{FHIR_JSON}; charset=utf-8",
        "application/json; charset=UTF-8",
    ):
        r = client.post(
            "/Patient", content=orjson.dumps(patient()), headers={"Content-Type": ctype}
        )
        assert r.status_code == 201, ctype


def test_prefer_return(client: TestClient) -> None:
    minimal = client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"] and minimal.headers["etag"] == 'W/"1"'
    outcome = client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    full = client.post("/Patient", json=patient(), headers={"Prefer": "return=representation"})
    assert full.json()["resourceType"] == "Patient"
    rid = full.json()["id"]
    upd = client.put(f"/Patient/{rid}", json=patient(id=rid), headers={"Prefer": "return=minimal"})
    assert upd.status_code == 200 and upd.content == b"" and upd.headers["etag"] == 'W/"2"'
    patched = client.patch(
        f"/Patient/{rid}",
        json=[{"op": "replace", "path": "/name/0/family", "value": "王"}],
        headers={
            "Content-Type": "application/json-patch+json",
            "Prefer": "return=OperationOutcome",
        },
    )
    assert patched.status_code == 200 and patched.json()["resourceType"] == "OperationOutcome"
    gone = client.delete(f"/Patient/{rid}", headers={"Prefer": "return=minimal"})
    assert gone.status_code == 204 and gone.content == b""


def test_update_versions_and_update_as_create(client: TestClient) -> None:
    r = client.put("/Patient/pat-1", json=patient(id="pat-1"))
    assert r.status_code == 201
    assert r.headers["location"] == "http://testserver/fhir/Patient/pat-1/_history/1"
    r = client.put("/Patient/pat-1", json=patient(given="二", id="pat-1"))
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.json()["meta"]["versionId"] == "2" and r.json()["name"][0]["given"] == ["二"]
    assert client.get("/Patient/pat-1").json() == r.json()


def test_if_match(client: TestClient, store: Store) -> None:
    client.put("/Patient/p", json=patient(id="p"))
    ok = client.put("/Patient/p", json=patient(given="二", id="p"), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    before = rows(store)
    stale = client.put(
        "/Patient/p", json=patient(given="三", id="p"), headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    bad = client.put(
        "/Patient/p", json=patient(given="三", id="p"), headers={"If-Match": "yesterday"}
    )
    assert bad.status_code == 400
    assert rows(store) == before
    assert client.get("/Patient/p").json()["name"][0]["given"] == ["二"]


def test_delete_then_410_then_recreate(client: TestClient, store: Store) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    r = client.delete(f"/Patient/{rid}")
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{rid}").status_code == 410
    before = rows(store)
    again = client.delete(f"/Patient/{rid}")  # idempotent, writes nothing
    assert again.status_code == 200 and rows(store) == before
    assert client.delete("/Patient/never-was").status_code == 200
    assert rows(store) == before
    back = client.put(f"/Patient/{rid}", json=patient(id=rid))
    assert back.status_code == 201 and back.headers["etag"] == 'W/"3"'
    assert client.get(f"/Patient/{rid}").status_code == 200


def test_delete_if_match(client: TestClient, store: Store) -> None:
    client.put("/Patient/d", json=patient(id="d"))
    before = rows(store)
    assert client.delete("/Patient/d", headers={"If-Match": 'W/"5"'}).status_code == 412
    assert rows(store) == before
    assert client.delete("/Patient/d", headers={"If-Match": 'W/"1"'}).status_code == 200


def test_json_patch_and_fhirpath_patch(client: TestClient) -> None:
    rid = client.post("/Patient", json=patient(gender="male")).json()["id"]
    r = client.patch(
        f"/Patient/{rid}",
        content=orjson.dumps([{"op": "replace", "path": "/gender", "value": "female"}]),
        headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.json()["gender"] == "female"
    fhirpath_patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "birthDate"},
                    {"name": "value", "valueDate": "1990-01-01"},
                ],
            }
        ],
    }
    r = client.patch(f"/Patient/{rid}", json=fhirpath_patch, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1990-01-01" and r.json()["meta"]["versionId"] == "3"
    assert client.get(f"/Patient/{rid}").json() == r.json()
    # a JSON array sent as application/json is taken as JSON Patch
    r = client.patch(f"/Patient/{rid}", json=[{"op": "remove", "path": "/birthDate"}])
    assert r.status_code == 200 and "birthDate" not in r.json()


def test_patch_errors_write_nothing(client: TestClient, store: Store) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    jp = {"Content-Type": "application/json-patch+json"}
    before = rows(store)
    cases = [
        ("/Patient/" + rid, [{"op": "replace", "path": "/nothing/here", "value": 1}], jp, 422),
        ("/Patient/" + rid, [{"op": "jump", "path": "/gender"}], jp, 400),
        ("/Patient/" + rid, {"op": "replace"}, jp, 400),
        ("/Patient/" + rid, [{"op": "replace", "path": "/gender", "value": "wrong"}], jp, 422),
        ("/Patient/" + rid, patient(), {"Content-Type": FHIR_JSON}, 400),  # not a Parameters
        (
            "/Patient/" + rid,
            [{"op": "remove", "path": "/gender"}],
            {"Content-Type": "text/plain"},
            415,
        ),
        (
            "/Patient/" + rid,
            [{"op": "replace", "path": "/gender", "value": "male"}],
            {**jp, "If-Match": 'W/"9"'},
            412,
        ),
        ("/Patient/nope", [{"op": "add", "path": "/gender", "value": "male"}], jp, 404),
        ("/Nope/1", [{"op": "add", "path": "/gender", "value": "male"}], jp, 404),
    ]
    for path, body, headers, status in cases:
        r = client.patch(path, content=orjson.dumps(body), headers=headers)
        assert r.status_code == status, (body, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert rows(store) == before
    client.delete(f"/Patient/{rid}")
    r = client.patch(
        f"/Patient/{rid}", content=b'[{"op":"add","path":"/gender","value":"male"}]', headers=jp
    )
    assert r.status_code == 410


class RefuseNames:
    """A store hook (a business rule): refuses any Patient called 'Refused'."""

    def before_write(self, ctx: object, write: object) -> None:
        from ehr.errors import Conflict

        resource = getattr(write, "resource", None) or {}
        if any(n.get("family") == "Refused" for n in resource.get("name", [])):
            raise Conflict("Patients called Refused are refused", "business-rule")


def test_bad_writes_are_refused_and_write_nothing(client: TestClient, store: Store) -> None:
    client.put("/Patient/keep", json=patient(id="keep"))
    store.hooks.append(RefuseNames())
    big = api(store, max_body_bytes=1000)
    json_h = {"Content-Type": FHIR_JSON}
    before = rows(store)
    cases = [
        ("post", "/Patient", b'{"resourceType": "Patient", ', json_h, 400),  # not JSON
        ("post", "/Patient", b"", json_h, 400),  # no body
        ("post", "/Patient", b"[1, 2]", json_h, 400),  # not a resource
        (
            "post",
            "/Patient",
            orjson.dumps(patient() | {"resourceType": "Observation"}),
            json_h,
            400,
        ),
        ("post", "/NoSuchType", orjson.dumps(patient()), json_h, 404),
        ("post", "/Patient", orjson.dumps(patient(gender="robot")), json_h, 422),
        ("post", "/Patient", orjson.dumps(patient(birthDate="1980-13-45")), json_h, 422),
        ("post", "/Patient", orjson.dumps(patient("Refused")), json_h, 409),
        ("post", "/Patient", orjson.dumps(patient()), {"Content-Type": "application/xml"}, 415),
        ("post", "/Patient", orjson.dumps(patient()), {"Content-Type": "text/plain"}, 415),
        ("post", "/Patient", orjson.dumps(patient()), {}, 415),
        (
            "post",
            "/Patient",
            orjson.dumps(patient()),
            {**json_h, "Accept": "application/fhir+xml"},
            406,
        ),
        (
            "post",
            "/Patient",
            orjson.dumps(patient()),
            {"Content-Type": f"{FHIR_JSON}; charset=latin-1"},
            415,
        ),
        ("put", "/Patient/keep", orjson.dumps(patient(id="other")), json_h, 400),  # id mismatch
        ("put", "/Patient/keep", orjson.dumps(patient()), json_h, 400),  # no id
        ("put", "/Patient/bad_id!", orjson.dumps(patient(id="bad_id!")), json_h, 400),
        (
            "put",
            "/Patient/keep",
            orjson.dumps(patient(id="keep") | {"resourceType": "Basic"}),
            json_h,
            400,
        ),
        ("put", "/Patient/keep", orjson.dumps(patient(id="keep", gender="robot")), json_h, 422),
        ("put", "/Patient/keep", orjson.dumps(patient("Refused", id="keep")), json_h, 409),
        ("put", "/Patient/new", orjson.dumps(patient("Refused", id="new")), json_h, 409),
        (
            "put",
            "/Patient/keep",
            orjson.dumps(patient(id="keep")),
            {**json_h, "If-Match": 'W/"2"'},
            412,
        ),
        ("delete", "/Patient/keep", None, {"If-Match": 'W/"3"'}, 412),
        ("delete", "/NoSuchType/keep", None, {}, 404),
        ("delete", "/Patient/bad_id!", None, {}, 400),
    ]
    for method, path, body, headers, status in cases:
        r = client.request(method, path, content=body, headers=headers)
        assert r.status_code == status, (method, path, body, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", r.text
        assert r.json()["issue"][0]["severity"] == "error"
    too_big = orjson.dumps(
        patient(text={"status": "generated", "div": "<div>" + "x" * 2000 + "</div>"})
    )
    r = big.post("/Patient", content=too_big, headers=json_h)
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"
    r = big.put("/Patient/keep", content=too_big, headers=json_h)
    assert r.status_code == 413
    assert rows(store) == before
    assert client.get("/Patient/keep").json()["meta"]["versionId"] == "1"
