"""A citizen who acts for a family member (a parent for a child: a RelatedPerson of the child that
carries the parent's protected citizen-ID identifier) chooses, on the consent page, whom an app
with ``launch/patient`` is for. The token then carries that patient and ``acting_for``, and the
API lets it reach that record, and only that one."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from test_auth_support import PASSWORD, authorize_params, browser, field, login, pkce
from test_security_support import SecureApp, bearer, secure_app

from ehr.identifiers import citizen_id_identifier, make_citizen_id
from ehr.store import Store

SCOPE = "openid fhirUser launch/patient patient/*.rs"
KEY = b"test-key"


def _world(sa: SecureApp) -> dict[str, str]:
    parent_id = make_citizen_id("110101", date(1985, 3, 4), 124, female=True)
    ident = citizen_id_identifier(parent_id, KEY)
    parent = sa.store.create(
        {"resourceType": "Patient", "name": [{"text": "李娜"}], "identifier": [ident]}
    ).rid
    child = sa.store.create({"resourceType": "Patient", "name": [{"text": "李小明"}]}).rid
    stranger = sa.store.create({"resourceType": "Patient", "name": [{"text": "王五"}]}).rid
    lonely = sa.store.create({"resourceType": "Patient", "name": [{"text": "赵六"}]}).rid
    sa.store.create(
        {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": {"reference": f"Patient/{child}"},
            "identifier": [ident],
            "period": {"start": "2015-01-01"},
        }
    )
    # a RelatedPerson of the stranger that has ended: no longer a proxy
    sa.store.create(
        {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": {"reference": f"Patient/{stranger}"},
            "identifier": [ident],
            "period": {"start": "2015-01-01", "end": "2020-01-01"},
        }
    )
    sa.accounts.users.add("li.na", role="citizen", fhir_user=f"Patient/{parent}", password=PASSWORD)
    sa.accounts.users.add("zhao", role="citizen", fhir_user=f"Patient/{lonely}", password=PASSWORD)
    return {"parent": parent, "child": child, "stranger": stranger, "lonely": lonely}


def _client(sa: SecureApp) -> str:
    return sa.accounts.clients.add(
        "booking", scopes=SCOPE, client_type="public", redirect_uris=["http://localhost:9/cb"]
    ).client.client_id


def _consent(sa: SecureApp, username: str) -> tuple[Any, dict[str, str], str, str]:
    """Log in and open the consent page; returns (test client, params, page, verifier)."""
    client_id = _client(sa)
    verifier, challenge = pkce()
    params = authorize_params(client_id, SCOPE, challenge)
    params["redirect_uri"] = "http://localhost:9/cb"
    tc = browser(sa.app)
    r = tc.get("/auth/authorize", params=params)
    assert r.status_code == 303
    nxt = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    r = login(tc, username, next_url=nxt)
    r = tc.get(r.headers["location"])
    assert r.status_code == 200, r.text
    return tc, params, r.text, verifier


def _token(sa: SecureApp, tc: Any, params: dict[str, str], page: str, verifier: str,
           **form: str) -> Any:  # fmt: skip
    r = tc.post(
        "/auth/authorize",
        data={**params, "csrf": field(page, "csrf"), "decision": "allow", **form},
    )
    if r.status_code != 302:
        return r
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
        "client_id": params["client_id"],
        "code_verifier": verifier,
    }
    return tc.post("/auth/token", data=data)


def test_a_parent_picks_their_child_and_reaches_only_that_record(
    store: Store, tmp_path: Path
) -> None:
    with secure_app(store, tmp_path) as sa:
        w = _world(sa)
        tc, params, page, verifier = _consent(sa, "li.na")
        # the choice: themselves and the child; not the stranger (the relation has ended)
        assert f'value="{w["parent"]}"' in page and f'value="{w["child"]}"' in page
        assert f'value="{w["stranger"]}"' not in page
        assert "李小明" in page and 'name="patient_q"' not in page  # no search for citizens
        r = _token(sa, tc, params, page, verifier, patient=w["child"])
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["patient"] == w["child"]
        at = token["access_token"]
        api = sa.client
        assert api.get(f"/Patient/{w['child']}", headers=bearer(at)).status_code == 200
        # not the parent's own record under this token (its patient context is the child)
        assert api.get(f"/Patient/{w['parent']}", headers=bearer(at)).status_code == 404
        assert api.get(f"/Patient/{w['stranger']}", headers=bearer(at)).status_code == 404
        found = api.get("/Patient", headers=bearer(at)).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [w["child"]]


def test_a_parent_may_choose_themselves_and_a_forged_choice_is_refused(
    store: Store, tmp_path: Path
) -> None:
    with secure_app(store, tmp_path) as sa:
        w = _world(sa)
        tc, params, page, verifier = _consent(sa, "li.na")
        forged = _token(sa, tc, params, page, verifier, patient=w["stranger"])
        assert forged.status_code == 400  # asked again to choose
        assert f'value="{w["child"]}"' in forged.text
        r = _token(sa, tc, params, forged.text, verifier, patient=w["parent"])
        assert r.status_code == 200, r.text
        at = r.json()["access_token"]
        assert r.json()["patient"] == w["parent"]
        assert sa.client.get(f"/Patient/{w['parent']}", headers=bearer(at)).status_code == 200
        assert sa.client.get(f"/Patient/{w['child']}", headers=bearer(at)).status_code == 404


def test_a_citizen_who_acts_for_nobody_sees_no_choice(store: Store, tmp_path: Path) -> None:
    with secure_app(store, tmp_path) as sa:
        w = _world(sa)
        tc, params, page, verifier = _consent(sa, "zhao")
        assert 'name="patient"' not in page
        r = _token(sa, tc, params, page, verifier)
        assert r.status_code == 200, r.text
        assert r.json()["patient"] == w["lonely"]
