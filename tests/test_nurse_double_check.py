"""``POST [base]/MedicationRequest/{id}/$administer`` with the second nurse's signature
(``verifierAssertion``, a witness assertion from ``POST /auth/witness``): a high-alert drug is
given only with a valid one, for this order, signed by someone else, once; a retry of the same
submission is the same administration; every refusal writes nothing."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey
from test_auth_support import FHIR_BASE, PASSWORD
from test_nurse_support import Ward, ward

from appointments.nursing import WITNESS_SYSTEM
from ehr.accounts.tokens import WITNESS_TYP, sign_jwt, unverified_claims
from ehr.store import Store

PERFORM = "http://terminology.hl7.org/CodeSystem/med-admin-perform-function"


@pytest.fixture
def w(store: Store) -> Ward:
    return ward(store)


def performers(admin: dict[str, Any]) -> dict[str, str]:
    return {p["function"]["coding"][0]["code"]: p["actor"]["reference"] for p in admin["performer"]}


def refused(w: Ward, r: Any, text: str) -> None:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and text in body["issue"][0]["diagnostics"]
    assert w.administrations() == []
    tasks = w.a.store.search("Task", [("status", "completed")])
    assert tasks.matches == []


def test_a_signed_double_check_records_the_second_nurse(w: Ward) -> None:
    assertion = w.assertion(w.insulin)
    r = w.administer(w.insulin, "submit-1", assertion=assertion)
    assert r.status_code == 201, r.text
    given = r.json()
    assert performers(given) == {"performer": "Practitioner/n1", "verifier": "Practitioner/n2"}
    jti = unverified_claims(assertion)["jti"]
    assert {"system": WITNESS_SYSTEM, "value": jti} in given["identifier"]
    assert given["performer"][1]["function"]["coding"][0]["system"] == PERFORM
    task = w.a.store.read("Task", "t-insulin").resource()
    assert task["status"] == "completed"
    # the answer was lost: the tablet sends the same submission again
    again = w.administer(w.insulin, "submit-1", assertion=assertion)
    assert again.status_code == 200 and again.json()["id"] == given["id"]
    assert len(w.administrations()) == 1
    # the same signature for another submission (another dose) is refused
    r = w.administer(w.insulin, "submit-2", assertion=assertion)
    assert r.status_code == 409 and "already used" in r.text
    assert len(w.administrations()) == 1


def test_a_retry_is_answered_even_after_the_signature_expired(w: Ward) -> None:
    jti = "a-signature-that-expires"
    r = w.administer(w.insulin, "submit-1", assertion=w.mint(jti=jti))
    assert r.status_code == 201, r.text
    now = int(time.time())
    expired = w.mint(jti=jti, iat=now - 900, exp=now - 600)
    again = w.administer(w.insulin, "submit-1", assertion=expired)
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
    # but not for a new submission
    assert w.administer(w.insulin, "submit-2", assertion=expired).status_code == 409


def test_a_high_alert_drug_needs_a_signature_not_a_name(w: Ward) -> None:
    r = w.administer(w.insulin, "submit-1", verifier="n2")
    refused(w, r, "双人核对")
    assert "verifierAssertion" in r.text
    refused(w, w.administer(w.insulin, "submit-1"), "second nurse")


def test_an_expired_signature_is_refused(w: Ward) -> None:
    now = int(time.time())
    r = w.administer(w.insulin, "s", assertion=w.mint(iat=now - 900, exp=now - 600))
    refused(w, r, "expired")
    assert "sign again" in r.text


def test_a_signature_for_another_order_is_refused(w: Ward) -> None:
    other = w.assertion(w.antibiotic)  # signed for the ceftriaxone
    refused(w, w.administer(w.insulin, "s", assertion=other), "another purpose")


def test_a_forged_signature_is_refused(w: Ward) -> None:
    alg, key = w.a.accounts.keys.signing_key()
    good = w.mint()
    claims = unverified_claims(good)
    impostor: ECKey | RSAKey = (
        ECKey.generate_key({"ES256": "P-256", "ES384": "P-384"}[alg], {"kid": str(key.kid)}, True)
        if alg.startswith("ES")
        else RSAKey.generate_key(2048, {"kid": str(key.kid)}, True)
    )
    forged = sign_jwt(claims, alg, impostor, WITNESS_TYP)
    refused(w, w.administer(w.insulin, "s", assertion=forged), "bad signature")
    # a changed claim breaks the signature too
    head, body, sig = good.split(".")
    tampered = unverified_claims(good) | {"sub": w.nurse.id}
    b64 = base64.urlsafe_b64encode(json.dumps(tampered).encode()).rstrip(b"=").decode()
    refused(w, w.administer(w.insulin, "s", assertion=f"{head}.{b64}.{sig}"), "bad signature")
    # alg none, and an access token in place of a witness assertion
    none = "eyJhbGciOiJub25lIiwidHlwIjoid2l0bmVzcytqd3QifQ." + body + "."
    refused(w, w.administer(w.insulin, "s", assertion=none), "not accepted")
    refused(w, w.administer(w.insulin, "s", assertion=w.token), "not a witness assertion")
    refused(w, w.administer(w.insulin, "s", assertion="garbage"), "malformed")


def test_the_acting_nurse_cannot_witness_herself(w: Ward) -> None:
    # as another account of the same Practitioner, and as the same user
    other = w.a.accounts.users.add(
        "nurse.jia.2", role="nurse", password=PASSWORD, fhir_user="Practitioner/n1"
    )
    own = w.mint(sub=other.id, fhirUser=f"{FHIR_BASE}/Practitioner/n1")
    refused(w, w.administer(w.insulin, "s", assertion=own), "acting nurse")
    # a signature naming a Practitioner that is not the witness account's
    mismatch = w.mint(fhirUser=f"{FHIR_BASE}/Practitioner/n1")
    refused(w, w.administer(w.insulin, "s", assertion=mismatch), "not that Practitioner")
    herself = w.mint(sub=w.nurse.id, fhirUser=f"{FHIR_BASE}/Practitioner/n1")
    refused(w, w.administer(w.insulin, "s", assertion=herself), "acting user")


def test_a_signature_asked_for_by_someone_else_is_refused(w: Ward) -> None:
    third = w.a.accounts.users.add(
        "nurse.bing", role="nurse", password=PASSWORD, fhir_user="Practitioner/n3"
    )
    lent = w.mint(act={"sub": third.id, "client_id": "x"})
    refused(w, w.administer(w.insulin, "s", assertion=lent), "another user")


def test_a_witness_whose_account_was_disabled_is_refused(w: Ward) -> None:
    assertion = w.assertion(w.insulin)
    w.a.accounts.users.set_disabled(w.second.username)
    refused(w, w.administer(w.insulin, "s", assertion=assertion), "not active")


def test_other_drugs_keep_the_named_verifier_or_take_a_signature(w: Ward) -> None:
    r = w.administer(w.antibiotic, "c-1", drug="J01DD04", verifier="n2")
    assert r.status_code == 201, r.text
    assert performers(r.json())["verifier"] == "Practitioner/n2"
    r = w.administer(w.antibiotic, "c-2", drug="J01DD04", assertion=w.assertion(w.antibiotic))
    assert r.status_code == 201 and performers(r.json())["verifier"] == "Practitioner/n2"
    r = w.administer(w.antibiotic, "c-3", drug="J01DD04")
    assert r.status_code == 201 and "verifier" not in performers(r.json())
    # a named verifier that contradicts the signature is refused
    r = w.administer(
        w.antibiotic, "c-4", drug="J01DD04", verifier="n1", assertion=w.assertion(w.antibiotic)
    )
    assert r.status_code == 422 and len(w.administrations()) == 3


def test_a_malformed_verifier_assertion_is_a_bad_request(w: Ward) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "clientId", "valueString": "s"},
        {"name": "patientIdentifier", "valueString": "urn:test:mrn|ZY000001"},
        {"name": "drugCode", "valueString": "A10AB01"},
        {"name": "verifierAssertion", "valueInteger": 7},
    ]}  # fmt: skip
    r = w.http.post(
        f"/fhir/MedicationRequest/{w.insulin}/$administer", json=body, headers=w.bearer()
    )
    assert r.status_code == 400 and "verifierAssertion" in r.text
    assert w.administrations() == []
