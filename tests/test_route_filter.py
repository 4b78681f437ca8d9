"""The route pre-check (:mod:`fhir_api.route_filter`) changes no routing decision: for every route
of the secured app and many paths, the pre-checked ``matches`` answers as the route's own, and
the route index picks the route the whole router would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from test_api_support import settings

from ehr.errors import Forbidden
from ehr.store import Store
from fhir_api.app import create_app
from fhir_api.route_filter import RouteIndex, prefilter
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
    "/fhir/Patient/123/$validate",
    "/fhir/Patient/$validate",
    "/fhir/Patient/123/$validatex",
    "/fhir/Patient/x$validate",
    "/fhir/$reindex-status/j1",
    "/fhir/Patient/$reindex-status/j1",
    "/fhir/Patient/123/_history/2/",
    "/fhir/Patient/123/",
    "/fhir/metadata/",
    "/fhir/docs",
    "/fhir/openapi.json",
    "/fhir//Patient",
    "/fhir/Patient//123",
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


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """The API on a fresh SQLite store."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    try:
        yield create_app(store, settings())
    finally:
        store.dispose()


def test_prefilter_changes_no_routing_decision(app: FastAPI) -> None:
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


def test_route_index_picks_the_routers_route(app: FastAPI) -> None:
    install(app)
    index = app.router.middleware_stack
    assert isinstance(index, RouteIndex)
    routes = app.router.routes
    for path in PATHS:
        for method in METHODS:
            scope = _scope(method, path)
            i, match = _first(routes, scope, own=True)
            view = index.select(dict(scope))
            if i < 0:
                assert view is None, (method, path)
                continue
            assert view is not None, (method, path)
            j, via_index = _first(view.routes, scope, own=False)
            assert (view.routes[j], via_index) == (routes[i], match), (method, path)


def test_route_index_sees_routes_changed_after_startup(app: FastAPI) -> None:
    """A route added (or replaced) after the app served requests is routed to at once."""

    async def pong(request: Request) -> Response:
        return PlainTextResponse(request.url_for("pong").path)

    with TestClient(app, base_url="http://localhost/fhir") as client:
        assert client.get("/metadata").status_code == 200
        assert client.get("/$pong").status_code == 404
        first = app.state.first_fhir_route
        app.router.routes.insert(first, Route("/fhir/$pong", pong, name="pong"))
        r = client.get("/$pong")
        assert (r.status_code, r.text) == (200, "/fhir/$pong")
        assert client.post("/$pong").status_code == 405
        app.router.routes[first] = Route("/fhir/$pong", pong, methods=["POST"])
        assert client.get("/$pong").status_code == 405
        del app.router.routes[first]
        assert client.get("/$pong").status_code == 404

        async def refuse() -> None:
            raise Forbidden("gated")

        open_route = APIRoute("/fhir/$pong", pong, methods=["GET"], name="pong")
        app.router.routes.insert(first, open_route)
        assert client.get("/$pong").status_code == 200
        gated = APIRoute(
            "/fhir/$pong", pong, methods=["GET"], name="pong", dependencies=[Depends(refuse)]
        )
        assert gated == open_route  # Starlette's equality: path, endpoint, methods
        app.router.routes[first] = gated  # e.g. fhir_api.security.domain.gate_domain_routes
        assert client.get("/$pong").status_code == 403
