"""GET /metadata (http://hl7.org/fhir/R4/http.html#capabilities): built from the mounted routes and
the store's registry, valid R4 (checked with fhirclient's and fhir.resources' models)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement as R4BCapability
from fhirclient.models.capabilitystatement import CapabilityStatement as ClientCapability
from test_api_support import api, settings

from ehr.definitions import SearchParamDef, SearchParamRegistry, resource_types, search_parameters
from ehr.store import Store
from fhir_api import create_app


def _metadata(client: TestClient) -> dict[str, Any]:
    r = client.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    return body


def test_capability_statement(store: Store) -> None:
    cs = _metadata(api(store))
    ClientCapability(cs)  # fhirclient parses it strictly (raises on invalid)
    R4BCapability.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    assert "application/fhir+json" in cs["format"]
    assert set(cs["patchFormat"]) == {"application/json-patch+json", "application/fhir+json"}
    assert cs["implementation"]["url"] == "http://testserver/fhir"
    rest = cs["rest"][0]
    assert rest["mode"] == "server" and "security" in rest
    assert {i["code"] for i in rest["interaction"]} >= {"history-system"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == set(resource_types())
    patient = by_type["Patient"]
    assert {i["code"] for i in patient["interaction"]} >= {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
    }
    assert patient["versioning"] == "versioned-update"
    assert patient["readHistory"] is True and patient["updateCreate"] is True
    assert patient["conditionalCreate"] is True and patient["conditionalUpdate"] is True
    assert patient["conditionalDelete"] == "multiple"
    assert patient["conditionalRead"] == "full-support"


def test_search_params_come_from_the_registry(db_url: str) -> None:
    registry = SearchParamRegistry()
    for sp in search_parameters().for_type("Patient").values():
        registry.add(sp)
    registry.add(
        SearchParamDef(
            code="favourite-colour",
            url="http://example.org/SearchParameter/favourite-colour",
            type="token",
            base=("Patient",),
            expression="Patient.extension('http://example.org/colour').value",
            description="The patient's favourite colour",
        )
    )
    store = Store(db_url, registry=registry)
    try:
        cs = _metadata(api(store))
    finally:
        store.dispose()
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    params = {p["name"]: p for p in resources["Patient"]["searchParam"]}
    assert params["favourite-colour"]["documentation"] == "The patient's favourite colour"
    assert params["favourite-colour"]["type"] == "token"
    assert params["family"]["definition"] == "http://hl7.org/fhir/SearchParameter/individual-family"
    assert params["family"]["documentation"]
    assert "favourite-colour" not in {p["name"] for p in resources["Observation"]["searchParam"]}


def test_interactions_follow_the_routes(store: Store) -> None:
    full = _metadata(api(store))
    assert {"code": "transaction"} in full["rest"][0]["interaction"]
    app = create_app(store, settings())
    app.router.routes[:] = [
        r
        for r in app.router.routes
        if getattr(r, "name", "") not in ("transaction", "transaction-slash")
    ]
    app.state.capability_cache.clear()
    plain = _metadata(TestClient(app, base_url="http://testserver/fhir"))
    assert {"code": "transaction"} not in plain["rest"][0]["interaction"]
