"""Failures at the HTTP edge are OperationOutcomes: unknown endpoint 404, wrong method 405 (with
Allow), oversized body 413 (declared or streamed), time limit 408/503, unexpected error 500
without a traceback, and the authorization gate in front of every route."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.requests import Request
from test_api_support import FHIR_JSON, api, live_server, patient, rows, settings

from ehr.errors import Forbidden
from ehr.store import Store
from fhir_api import create_app
from fhir_api.app import include_before_interactions
from fhir_api.deps import Access
from fhir_api.limits import in_thread


def _outcome(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    if code:
        assert body["issue"][0]["code"] == code
    return body


def test_unknown_endpoints_and_methods(store: Store) -> None:
    client = api(store)
    _outcome(client.get("/Patient/1/2/3/4/5"), 404, "not-found")
    _outcome(client.get("http://testserver/elsewhere"), 404, "not-found")
    r = client.post("/Patient/1")
    _outcome(r, 405, "not-supported")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "PATCH", "DELETE"}
    r = client.delete("/Patient/1/_history/1")
    _outcome(r, 405)
    assert r.headers["allow"] == "GET, HEAD"
    _outcome(client.put("/metadata"), 405)
    _outcome(client.post("/Patient/1/_history"), 405)


def test_streamed_body_over_the_limit_is_413(store: Store) -> None:
    client = api(store, max_body_bytes=1000)
    before = rows(store)

    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Patient", "name": [{"family": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}]}'

    r = client.post("/Patient", content=chunks(), headers={"Content-Type": FHIR_JSON})
    _outcome(r, 413, "too-costly")
    assert rows(store) == before


def test_declared_body_over_the_limit_is_413_before_any_work(store: Store) -> None:
    client = api(store, max_body_bytes=1000)
    before = rows(store)
    body = orjson.dumps(patient(family="x" * 2000))
    r = client.post("/Patient", content=body, headers={"Content-Type": FHIR_JSON})
    _outcome(r, 413, "too-costly")
    assert r.headers["cache-control"] == "no-store"
    assert rows(store) == before
    small = client.post("/Patient", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert small.status_code == 201


def _slow_router() -> APIRouter:
    router = APIRouter()

    @router.get("/slow", name="slow")
    async def slow() -> dict[str, str]:
        await in_thread(time.sleep, 2)
        return {"resourceType": "Basic"}

    @router.get("/boom", name="boom")
    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    return router


def test_unexpected_error_is_a_500_outcome_without_traceback(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(store, settings())
    include_before_interactions(app, _slow_router())
    client = TestClient(app, base_url="http://testserver/fhir", raise_server_exceptions=False)
    r = client.get("/boom")
    body = _outcome(r, 500, "exception")
    assert "secret" not in r.text and "Traceback" not in r.text
    assert body["issue"][0]["severity"] == "error"
    assert any("secret detail" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)


def test_time_limit_503(store: Store) -> None:
    app = create_app(store, settings(request_timeout_s=0.3))
    include_before_interactions(app, _slow_router())
    client = TestClient(app, base_url="http://testserver/fhir")
    t0 = time.monotonic()
    r = client.get("/slow")
    assert time.monotonic() - t0 < 1.5
    _outcome(r, 503, "timeout")
    assert r.headers["retry-after"] == "1"
    assert r.headers["cache-control"] == "no-store"


def test_slow_body_is_408_on_a_real_socket(store: Store) -> None:
    with live_server(store, request_timeout_s=0.5) as base:
        url = urlsplit(base)
        with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
            sock.sendall(
                b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                b'Content-Length: 100\r\n\r\n{"resourceType"'
            )
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        assert orjson.loads(body)["issue"][0]["code"] == "timeout"


def test_authorizer_runs_before_any_work(store: Store) -> None:
    seen: list[Access] = []

    async def deny_writes(request: Request, access: Access) -> None:
        seen.append(access)
        if access.interaction in ("create", "update", "delete", "patch"):
            raise Forbidden(f"{access.interaction} on {access.rtype} is not allowed")

    store.update("Patient", "p1", patient(id="p1"))
    client = TestClient(
        create_app(store, settings(), authorizer=deny_writes), base_url="http://testserver/fhir"
    )
    before = rows(store)
    _outcome(
        client.post("/Patient", content=b"not even json", headers={"Content-Type": FHIR_JSON}), 403
    )
    _outcome(client.put("/Patient/p1", json=patient(id="p1")), 403)
    _outcome(client.delete("/Patient/p1"), 403)
    assert rows(store) == before
    assert client.get("/Patient/p1").status_code == 200
    assert [(a.interaction, a.rtype, a.rid) for a in seen] == [
        ("create", "Patient", None),
        ("update", "Patient", "p1"),
        ("delete", "Patient", "p1"),
        ("read", "Patient", "p1"),
    ]


def test_database_unavailable_is_a_503_and_recovers(db_url: str) -> None:
    """PostgreSQL refusing connections (here: the database closed to new ones and every
    session ended, as when it restarts or runs out of connection slots) is a 503 with
    Retry-After and an OperationOutcome, for reads and writes; once it is back, so is the API."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: closing a database to connections")
    import uuid

    from conftest import PG_ADMIN_URL
    from sqlalchemy import create_engine, text

    name = f"ehr_test_down_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", pool_size=2)

    def allow(flag: bool) -> None:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(flag).lower()}'))
            if not flag:
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = :n"), {"n": name})  # fmt: skip

    try:
        store.migrate()
        client = api(store)
        made = client.post(
            "/Patient", content=orjson.dumps(patient()), headers={"Content-Type": FHIR_JSON}
        )
        assert made.status_code == 201
        pid = made.json()["id"]
        allow(False)
        for r in (
            client.get(f"/Patient/{pid}"),
            client.get("/Patient", params={"family": "张"}),
            client.post(
                "/Patient", content=orjson.dumps(patient()), headers={"Content-Type": FHIR_JSON}
            ),
        ):
            body = _outcome(r, 503, "transient")
            assert r.headers["retry-after"] == "1" and "Traceback" not in r.text
            assert "unavailable" in body["issue"][0]["diagnostics"]
        allow(True)
        assert client.get(f"/Patient/{pid}").status_code == 200
        assert client.get("/Patient", params={"_summary": "count"}).json()["total"] == 1
    finally:
        allow(True)
        store.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
