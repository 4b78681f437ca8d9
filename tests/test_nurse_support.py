"""Helpers for the nurse-station double-check tests (no tests here): clinical staff accounts on
the real app with its authorization server, their access tokens through the real authorization
code flow, a small ward (two nurses, a patient with a wristband, an insulin and a ceftriaxone
order), and witness assertions from ``POST /auth/witness`` (or minted, to test refusals)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from test_auth_support import (
    FHIR_BASE,
    ORIGIN,
    PASSWORD,
    AuthApp,
    auth_app,
    authorize_params,
    browser,
    exchange,
    get_code,
    pkce,
    public_app,
)

from ehr.accounts import User
from ehr.accounts.tokens import WITNESS_TYP, sign_jwt
from ehr.model import loads
from ehr.store import Store

SCOPE = "openid fhirUser user/*.crus"
ISSUER = f"{ORIGIN}/auth"
ATC = "http://www.whocc.no/atc"
MRN_SYSTEM = "urn:test:mrn"
WRISTBAND = f"{MRN_SYSTEM}|ZY000001"


@dataclass
class Ward:
    a: AuthApp
    http: TestClient
    nurse: User  #: the nurse giving the medication (Practitioner/n1)
    second: User  #: the second nurse (Practitioner/n2)
    citizen: User
    token: str  #: the first nurse's access token
    insulin: str  #: MedicationRequest id (high-alert)
    antibiotic: str  #: MedicationRequest id (not high-alert)

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def witness(
        self, purpose: str, username: str | None = None, password: str = PASSWORD, **kw: Any
    ) -> Any:
        """``POST /auth/witness`` with the first nurse's token (JSON body)."""
        body = {"username": username or self.second.username, "password": password}
        return self.http.post(
            "/auth/witness",
            json={**body, "purpose": purpose},
            headers=kw.pop("headers", None) or self.bearer(),
            **kw,
        )

    def assertion(self, request: str) -> str:
        r = self.witness(f"administer:MedicationRequest/{request}")
        assert r.status_code == 200, r.text
        return str(r.json()["witness_token"])

    def mint(self, **over: Any) -> str:
        """A witness assertion signed with our key, with claims overridden (None drops one)."""
        alg, key = self.a.accounts.keys.signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": FHIR_BASE,
            "sub": self.second.id,
            "fhirUser": f"{FHIR_BASE}/{self.second.fhir_user}",
            "role": "nurse",
            "purpose": f"administer:MedicationRequest/{self.insulin}",
            "act": {"sub": self.nurse.id, "client_id": "x"},
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(over)
        return sign_jwt({k: v for k, v in claims.items() if v is not None}, alg, key, WITNESS_TYP)

    def administer(
        self, request: str, client_id: str, *, assertion: str | None = None, drug: str = "A10AB01",
        verifier: str | None = None,
    ) -> Any:  # fmt: skip
        params: list[dict[str, Any]] = [
            {"name": "clientId", "valueString": client_id},
            {"name": "patientIdentifier", "valueString": WRISTBAND},
            {"name": "drugCode", "valueString": drug},
        ]
        if assertion is not None:
            params.append({"name": "verifierAssertion", "valueString": assertion})
        if verifier is not None:
            params.append(
                {"name": "verifier", "valueReference": {"reference": f"Practitioner/{verifier}"}}
            )
        return self.http.post(
            f"/fhir/MedicationRequest/{request}/$administer",
            json={"resourceType": "Parameters", "parameter": params},
            headers=self.bearer(),
        )

    def administrations(self) -> list[dict[str, Any]]:
        page = self.a.store.search("MedicationAdministration", [("_count", "100")])
        return [loads(hit.data) for hit in page.matches]


def staff_token(a: AuthApp, username: str, scope: str = SCOPE) -> str:
    """An access token of ``username`` through the authorization code flow (a fresh browser)."""
    client_id = public_app(a, scope)
    verifier, challenge = pkce()
    tc = browser(a.app)
    cb = get_code(tc, authorize_params(client_id, scope, challenge), username)
    r = exchange(tc, cb["code"][0], verifier, client_id)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _order(rid: str, code: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": code}], "text": name},
        "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
    }  # fmt: skip


def ward(store: Store, **auth_config: Any) -> Ward:
    """Two nurses (and a citizen) with logins, a patient on the ward with two active orders."""
    a = auth_app(store, **auth_config)
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "n1", "name": [{"text": "护士甲"}]},
        {"resourceType": "Practitioner", "id": "n2", "name": [{"text": "护士乙"}]},
        {"resourceType": "Patient", "id": "p1", "name": [{"text": "张三"}],
         "identifier": [{"system": MRN_SYSTEM, "value": "ZY000001"}]},
        {"resourceType": "Encounter", "id": "e1", "status": "in-progress",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "subject": {"reference": "Patient/p1"}},
        _order("mr-insulin", "A10AB01", "胰岛素"),
        _order("mr-ceftriaxone", "J01DD04", "头孢曲松"),
        {"resourceType": "Task", "id": "t-insulin", "status": "requested", "intent": "order",
         "focus": {"reference": "MedicationRequest/mr-insulin"},
         "for": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}},
    ]  # fmt: skip
    with store.write() as ctx:
        for r in resources:
            ctx.update(r["resourceType"], r["id"], r)
    users = a.accounts.users
    nurse = users.add("nurse.jia", role="nurse", password=PASSWORD, fhir_user="Practitioner/n1",
                      display_name="护士甲")  # fmt: skip
    second = users.add("nurse.yi", role="nurse", password=PASSWORD, fhir_user="Practitioner/n2",
                       display_name="护士乙")  # fmt: skip
    pat = "Patient/p1"
    citizen = users.add("zhang.san", role="citizen", password=PASSWORD, fhir_user=pat)
    token = staff_token(a, nurse.username)
    return Ward(a, browser(a.app), nurse, second, citizen, token, "mr-insulin", "mr-ceftriaxone")
