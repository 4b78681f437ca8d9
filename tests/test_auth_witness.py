"""``POST /auth/witness``: a second nurse signs a double check (双人核对) with their own password
on the first nurse's device, and gets a short-lived witness assertion signed with our key.

Only a staff access token may ask; the password check is the login form's (same throttling and
lockouts, no way to tell an unknown user from a wrong password); the witness must be other
clinical staff; every attempt is an audited ``login`` event."""

from __future__ import annotations

from typing import Any

import pytest
from test_auth_support import FHIR_BASE, PASSWORD, browser
from test_nurse_support import ISSUER, Ward, staff_token, ward

from ehr.accounts import InvalidToken, verify_access_token
from ehr.accounts.tokens import unverified_claims, verify_witness_assertion
from ehr.store import Store

PURPOSE = "administer:MedicationRequest/mr-insulin"


@pytest.fixture
def w(store: Store) -> Ward:
    return ward(store, max_failed_logins=3, lockout_s=600)


def events(w: Ward) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    w.a.auth.listeners.append(lambda event, data: got.append((event, data)))
    return got


def test_a_second_nurse_signs_and_the_assertion_says_who_what_and_for_whom(w: Ward) -> None:
    seen = events(w)
    r = w.witness(PURPOSE)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in r.headers  # the apps of this origin only
    body = r.json()
    assert body["token_type"] == "witness+jwt" and body["expires_in"] == 300
    assert body["purpose"] == PURPOSE and body["display_name"] == "护士乙"
    assert body["fhirUser"] == f"{FHIR_BASE}/Practitioner/n2"
    token = body["witness_token"]
    found = verify_witness_assertion(
        token, w.a.accounts.keys.public_keyset, issuer=ISSUER, audience=FHIR_BASE, purpose=PURPOSE
    )
    assert (found.subject, found.practitioner, found.role) == (w.second.id, "n2", "nurse")
    assert found.requested_by == w.nurse.id and found.expires_at - found.issued_at == 300
    claims = unverified_claims(token)
    assert claims["act"]["client_id"] == unverified_claims(w.token)["client_id"]
    assert claims["iss"] == ISSUER and claims["aud"] == FHIR_BASE and len(claims["jti"]) >= 32
    # never usable as an access token
    with pytest.raises(InvalidToken, match="not an access token"):
        verify_access_token(
            token, w.a.accounts.keys.public_keyset, issuer=ISSUER, audience=FHIR_BASE
        )
    identify = "/fhir/Patient/$identify?identifier=urn:test:mrn|ZY000001"
    assert w.http.get(identify, headers=w.bearer()).status_code == 200
    assert w.http.get(identify, headers=w.bearer(token)).status_code == 401
    # nor for another purpose, nor an access token as a witness assertion
    with pytest.raises(InvalidToken, match="another purpose"):
        verify_witness_assertion(
            token, w.a.accounts.keys.public_keyset, issuer=ISSUER, audience=FHIR_BASE,
            purpose="administer:MedicationRequest/other",
        )  # fmt: skip
    with pytest.raises(InvalidToken, match="not a witness assertion"):
        verify_witness_assertion(
            w.token, w.a.accounts.keys.public_keyset, issuer=ISSUER, audience=FHIR_BASE,
            purpose=PURPOSE,
        )  # fmt: skip
    # the audit trail's event: the witness's sign-in, what for and for whom
    [(event, data)] = [e for e in seen if e[0] == "login"]
    assert data["outcome"] == "ok" and data["username"] == w.second.username
    assert data["user_id"] == w.second.id and data["jti"] == claims["jti"]
    assert PURPOSE in data["reason"] and w.nurse.id in data["reason"]


def test_form_body_and_english(w: Ward) -> None:
    r = w.http.post(
        "/auth/witness",
        data={"username": w.second.username, "password": PASSWORD, "purpose": PURPOSE},
        headers=w.bearer(),
    )
    assert r.status_code == 200 and r.json()["witness_token"]
    r = w.http.post(
        "/auth/witness",
        data={"username": w.second.username, "password": "nope", "purpose": PURPOSE, "lang": "en"},
        headers=w.bearer(),
    )
    assert r.status_code == 401 and "incorrect" in r.json()["error_description"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(w: Ward) -> None:
    seen = events(w)
    wrong = w.witness(PURPOSE, password="not the password")
    unknown = w.witness(PURPOSE, username="nobody.here")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_grant",
            "error_description": "用户名或密码不正确。",
        }
    )
    assert "www-authenticate" not in wrong.headers  # the Bearer token itself was fine
    assert [d["outcome"] for e, d in seen] == ["invalid", "invalid"]
    assert all(d["user_id"] is None and d["jti"] is None for e, d in seen)


def test_the_witness_must_be_other_clinical_staff(w: Ward) -> None:
    seen = events(w)
    r = w.witness(PURPOSE, username=w.citizen.username)
    assert r.status_code == 403 and r.json()["error"] == "access_denied"
    assert "护士或医生" in r.json()["error_description"]
    w.a.accounts.users.add("admin.wang", role="admin", password=PASSWORD)
    assert w.witness(PURPOSE, username="admin.wang").status_code == 403
    w.a.accounts.users.add("dr.nobody", role="practitioner", password=PASSWORD)  # no Practitioner
    assert w.witness(PURPOSE, username="dr.nobody").status_code == 403
    r = w.witness(PURPOSE, username=w.nurse.username)  # the asking nurse herself
    assert r.status_code == 403 and "本人" in r.json()["error_description"]
    assert [d["outcome"] for e, d in seen] == ["refused"] * 4
    assert all(d["jti"] is None for e, d in seen)
    # a doctor may witness
    w.a.accounts.users.add(
        "dr.li", role="practitioner", password=PASSWORD, fhir_user="Practitioner/n2"
    )
    assert w.witness(PURPOSE, username="dr.li").status_code == 200


def test_only_a_staff_access_token_may_ask(w: Ward) -> None:
    r = w.witness(PURPOSE, headers={"Authorization": "Basic x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert r.headers["www-authenticate"].startswith('Bearer realm="fhir", error="invalid_token"')
    r = w.http.post("/auth/witness", json={"username": w.second.username, "password": PASSWORD,
                                           "purpose": PURPOSE})  # fmt: skip
    assert r.status_code == 401
    assert w.witness(PURPOSE, headers=w.bearer("not.a.token")).status_code == 401
    forged = w.token[:-4] + ("AAAA" if not w.token.endswith("AAAA") else "BBBB")
    assert w.witness(PURPOSE, headers=w.bearer(forged)).status_code == 401
    citizen = staff_token(w.a, w.citizen.username, "openid fhirUser patient/*.rs")
    r = w.witness(PURPOSE, headers=w.bearer(citizen))
    assert r.status_code == 403 and r.json()["error"] == "access_denied"
    # a revoked token asks no more
    tc = browser(w.a.app)
    assert tc.post("/auth/revoke", data={"token": w.token, "client_id": unverified_claims(
        w.token)["client_id"]}).status_code == 200  # fmt: skip
    assert w.witness(PURPOSE).status_code == 401


def test_missing_fields_are_a_bad_request(w: Ward) -> None:
    assert w.witness("").status_code == 400
    assert w.witness("x" * 201).status_code == 400
    r = w.http.post("/auth/witness", content=b"[1]", headers={**w.bearer(),
                                                              "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_the_login_lockout_applies(w: Ward) -> None:
    seen = events(w)
    for _ in range(3):
        assert w.witness(PURPOSE, password="guess").status_code == 401
    r = w.witness(PURPOSE)  # even the right password now
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
    assert "10 分钟" in r.json()["error_description"] and int(r.headers["retry-after"]) > 500
    assert [d["outcome"] for e, d in seen] == ["invalid"] * 3 + ["locked"]
    # and the account is locked for the login form too (one throttle)
    assert w.a.accounts.users.authenticate(w.second.username, PASSWORD, "10.0.0.9").status == (
        "locked"
    )
    # unknown names lock the same way
    for _ in range(3):
        assert w.witness(PURPOSE, username="ghost").status_code == 401
    assert w.witness(PURPOSE, username="ghost").status_code == 429
