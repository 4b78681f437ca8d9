"""The route pre-check (:mod:`fhir_api.route_filter`) changes no routing decision: for every route
of the secured app and many paths, the pre-checked ``matches`` answers as the route's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import Match
from test_api_support import settings

from ehr.store import Store
from fhir_api.app import create_app
from fhir_api.route_filter import prefilter
from fhir_api.security import install

PATHS = [
    "/fhir/Patient/123",
    "/fhir/Patient",
    "/fhir/Patient/",
    "/fhir/Patient/123/_history",
    "/fhir/Patient/123/_history/2",
    "/fhir/Patient/_history",
    "/fhir/_history",
    "/fhir/metadata",
    "/fhir",
    "/fhir/",
    "/fhir/Patient/$match",
    "/fhir/Patient/123/$everything",
    "/fhir/Appointment/$find",
    "/fhir/Appointment/a1/$cancel",
    "/fhir/$export",
    "/fhir/$bulk-status/job-1",
    "/fhir/$bulk-files/job-1/Patient.ndjson",
    "/fhir/Patient/123/Observation",
    "/fhir/Patient/123/*",
    "/fhir/Patient/_search",
    "/fhir/_search",
    "/fhir/patient/123",
    "/fhir/Patient/123/extra/segments/here",
    "/fhir/.well-known/smart-configuration",
    "/auth/token",
    "/auth/jwks",
    "/.well-known/openid-configuration",
    "/.well-known/health-card-jwks.json",
    "/app/",
    "/elsewhere",
    "",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }


def _first(routes: list[Any], scope: dict[str, Any], own: bool) -> tuple[int, Match]:
    """(index, match) of the route the router would take: the first FULL, else the first
    PARTIAL; ``own``: ask each route's own ``matches`` (without the pre-check)."""
    partial = None
    for i, r in enumerate(routes):
        m, _ = type(r).matches(r, dict(scope)) if own else r.matches(dict(scope))
        if m == Match.FULL:
            return i, m
        if m == Match.PARTIAL and partial is None:
            partial = (i, m)
    return partial or (-1, Match.NONE)


def test_prefilter_changes_no_routing_decision(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    try:
        app = create_app(store, settings())
        install(app)
        prefilter(app.router.routes)
        routes = app.router.routes
        assert sum("matches" in vars(r) for r in routes) > 60  # the pre-check is in place
        for path in PATHS:
            for method in METHODS:
                scope = _scope(method, path)
                assert _first(routes, scope, own=False) == _first(routes, scope, own=True), (
                    method,
                    path,
                )
                for r in routes:  # and route by route
                    assert r.matches(dict(scope))[0] == type(r).matches(r, dict(scope))[0], (
                        method,
                        path,
                        getattr(r, "path", r),
                    )
    finally:
        store.dispose()
