"""Helpers for the API tests (no tests here): an in-process client on the real app, a real
uvicorn server in a thread, and row counts to prove that a refused request wrote nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ehr.settings import Settings
from ehr.storage.tables import metadata
from ehr.store import Store
from fhir_api import create_app

FHIR_JSON = "application/fhir+json"


def settings(**overrides: Any) -> Settings:
    """Settings independent of the environment the tests run in."""
    values: dict[str, Any] = {"base_url": "", "database_url": ""}
    values.update(overrides)
    return Settings(**values)


def api(store: Store, **overrides: Any) -> TestClient:
    """A client of the real app on ``store``; paths are relative to ``/fhir``."""
    app = create_app(store, settings(**overrides))
    return TestClient(app, base_url="http://testserver/fhir", raise_server_exceptions=False)


def rows(store: Store) -> dict[str, int]:
    """Row count of every table (resources, history, every index table)."""
    with store.read_conn() as c:
        return {
            t.name: c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def patient(family: str = "张", given: str = "伟", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}


def observation(subject: str, value: float = 72.0, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "29463-7"}],
            "text": "Body weight",
        },
        "subject": {"reference": subject},
        "valueQuantity": {
            "value": value,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        **extra,
    }


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "id")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(store: Store, **overrides: Any) -> Iterator[str]:
    """Run the app under uvicorn on 127.0.0.1 in a thread; yields the FHIR base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(store, settings(**overrides)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/fhir"
    finally:
        server.should_exit = True
        thread.join(10)


def service_token(db_url: str, base: str, scope: str = "system/*.cruds") -> str:
    """An access token of a new backend client from the live server at ``base``."""
    from ehr.storage.db import make_engine
    from fhir_api.auth.service_client import service_token as fetch

    engine = make_engine(db_url)
    try:
        return fetch(engine, base, scope, name="test-service")
    finally:
        engine.dispose()
