"""Helpers for the enforcement tests (no tests here): the real app with the authorization server
and the security layer, tokens signed with the server's own signing key, and a small regional
world (two citizens, two clinics, their clinicians, a terminal and a backend)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_api_support import settings
from test_auth_support import FAST_PASSWORDS

from ehr.accounts import AccountStore
from ehr.accounts.tokens import sign_jwt
from ehr.store import Store
from fhir_api import create_app
from fhir_api.auth import AuthSettings
from fhir_api.auth.config import account_store
from fhir_api.security import Security, SecuritySettings, install

ORIGIN = "http://localhost"
FHIR_BASE = f"{ORIGIN}/fhir"
ISSUER = f"{ORIGIN}/auth"
FHIR_JSON = "application/fhir+json"
PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}


@dataclass
class SecureApp:
    app: FastAPI
    store: Store
    accounts: AccountStore
    security: Security
    client: TestClient

    @property
    def trail(self) -> Any:
        return self.security.trail

    def token(
        self,
        scope: str,
        *,
        sub: str | None = None,
        client_id: str = "test-app",
        lifetime: int = 600,
        **claims: Any,
    ) -> str:
        """A signed access token, as the authorization server would issue it."""
        alg, key = self.accounts.keys.signing_key()
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": FHIR_BASE,
            "sub": sub or client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            **{k: v for k, v in claims.items() if v is not None},
        }
        if "fhirUser" in body and not str(body["fhirUser"]).startswith("http"):
            body["fhirUser"] = f"{FHIR_BASE}/{body['fhirUser']}"
        return sign_jwt(body, alg, key, typ="at+jwt")


@contextmanager
def secure_app(store: Store, tmp_path: Path, **config: Any) -> Iterator[SecureApp]:
    """The real app, secured; the audit trail is closed (every record written) at the end."""
    app = create_app(store, settings())
    mount_missing_routes(app)
    accounts = account_store(store.engine, AuthSettings(), FAST_PASSWORDS)
    values: dict[str, Any] = {"spool_dir": tmp_path / "spool", "audit_flush_ms": 20}
    values.update(config)
    security = install(app, SecuritySettings(**values), accounts=accounts)
    client = TestClient(app, base_url=FHIR_BASE, raise_server_exceptions=False)
    try:
        yield SecureApp(app, store, accounts, security, client)
    finally:
        security.close()


def mount_missing_routes(app: FastAPI) -> None:
    """Mount batch/transaction if the app does not have it yet (it lands with issue 4)."""
    from fhir_api.app import include_before_interactions
    from fhir_api.interactions import batch

    names = {getattr(r, "name", None) for r in app.router.routes}
    if "transaction" not in names:
        include_before_interactions(app, batch.router)


def bearer(token: str | None, **headers: str) -> dict[str, str]:
    out = {"Accept": FHIR_JSON, **headers}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


# ------------------------------------------------------------------------------ the world


def _obs(pid: str, code: str = "29463-7", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org",
                          "code": "kg"},
        **extra,
    }  # fmt: skip


@dataclass
class World:
    """Citizens A and B; clinic 1 (org1, practitioner p1) treats A (an Encounter), clinic 2
    (org2, practitioner p2) treats B. Each citizen has an Observation and a Condition."""

    ids: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> str:
        return self.ids[key]


def build_world(store: Store) -> World:
    w = World()
    put = store.update
    put("Organization", "org1", {"resourceType": "Organization", "id": "org1", "name": "第一医院"})
    put("Organization", "org2", {"resourceType": "Organization", "id": "org2", "name": "第二诊所"})
    for p, org in (("p1", "org1"), ("p2", "org2")):
        put("Practitioner", p, {"resourceType": "Practitioner", "id": p,
                                "name": [{"family": "医生" + p}]})  # fmt: skip
        put("PractitionerRole", f"role-{p}", {"resourceType": "PractitionerRole",
            "id": f"role-{p}", "practitioner": {"reference": f"Practitioner/{p}"},
            "organization": {"reference": f"Organization/{org}"}})  # fmt: skip
    for pid, family in (("pa", "张"), ("pb", "李")):
        put("Patient", pid, {"resourceType": "Patient", "id": pid, "name": [{"family": family}]})
        w.ids[f"obs-{pid}"] = store.create(_obs(pid)).rid
        w.ids[f"cond-{pid}"] = store.create(
            {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
             "code": {"text": "高血压"}}
        ).rid  # fmt: skip
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }
    w.ids["enc-pa"] = store.create(
        {
            **enc,
            "subject": {"reference": "Patient/pa"},
            "serviceProvider": {"reference": "Organization/org1"},
        }
    ).rid
    w.ids["enc-pb"] = store.create(
        {
            **enc,
            "subject": {"reference": "Patient/pb"},
            "serviceProvider": {"reference": "Organization/org2"},
        }
    ).rid
    return w  # fmt: skip


def tokens(sa: SecureApp) -> dict[str, str | None]:
    """One token per role of the authorization matrix."""
    return {
        "citizen_a": sa.token("patient/*.cruds launch/patient openid fhirUser", sub="user-a",
                              patient="pa", fhirUser="Patient/pa", role="citizen"),
        "citizen_b": sa.token("patient/*.cruds", sub="user-b", patient="pb",
                              fhirUser="Patient/pb", role="citizen"),
        "clinician_1": sa.token("user/*.cruds", sub="user-p1", fhirUser="Practitioner/p1",
                                role="practitioner", organization="Organization/org1",
                                practitioner_role="PractitionerRole/role-p1"),
        "clinician_2": sa.token("user/*.cruds", sub="user-p2", fhirUser="Practitioner/p2",
                                role="practitioner", organization="Organization/org2",
                                practitioner_role="PractitionerRole/role-p2"),
        "terminal": sa.token("system/Patient.rs system/Appointment.rus", client_id="counter-7"),
        "backend": sa.token("system/*.rs", client_id="analytics"),
        "anonymous": None,
    }  # fmt: skip
