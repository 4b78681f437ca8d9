"""A backend service's access token in two steps, for operations scripts, benchmarks and tests:
register a confidential client with a secret in the server's database, then ask the server's
token endpoint for a token (client credentials, ``client_secret_basic``) as the service would::

    token = service_token(engine, "http://127.0.0.1:8080", "system/*.rs")

(``ehr clients add NAME --secret --scope …`` and a POST to ``/auth/token`` do the same by hand.)
"""

from __future__ import annotations

import time

import httpx
from sqlalchemy import Engine

from ehr.accounts import Passwords

from .config import AuthSettings, account_store

__all__ = ["service_token"]


def service_token(
    engine: Engine,
    origin: str,
    scope: str = "system/*.rs",
    *,
    name: str | None = None,
    passwords: Passwords | None = None,
) -> str:
    """A new backend client's access token for ``scope`` from the server at ``origin`` (its root
    URL, or its FHIR base ending in ``/fhir``), whose database ``engine`` reaches."""
    reg = account_store(engine, AuthSettings(), passwords).clients.add(
        name or f"service-{time.time_ns()}", scopes=scope, client_type="confidential-symmetric"
    )
    assert reg.secret is not None  # a confidential-symmetric client always has one
    root = origin.removesuffix("/").removesuffix("/fhir")
    r = httpx.post(
        f"{root}/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(reg.client.client_id, reg.secret),
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])
