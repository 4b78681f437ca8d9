"""The token endpoint and the authorization endpoint through the real app: authorization code
with PKCE (S256 only, verifier checked), single-use codes (a replay revokes the grant), refresh
rotation with theft detection, no scope escalation at refresh, EHR launch and the clinician's
patient picker, client credentials with private_key_jwt (jti replay, lifetime, audience,
algorithms) and client_secret_basic, introspection and revocation."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from test_auth_support import (
    ASSERTION,
    FHIR_BASE,
    ORIGIN,
    REDIRECT,
    AuthApp,
    assertion,
    auth_app,
    authorize_params,
    browser,
    citizen,
    client_key,
    exchange,
    field,
    get_code,
    pkce,
    public_app,
)

from ehr.store import Store
from fhir_api.auth import Urls

URLS = Urls.build(FHIR_BASE, "/fhir")
SCOPE = "launch/patient patient/*.rs openid fhirUser offline_access"


def code_flow(a: AuthApp, scope: str = SCOPE, **extra: str) -> tuple[Any, dict[str, Any]]:
    """A citizen's full authorization: (test client, token response)."""
    user, _ = citizen(a)
    cid = public_app(a, scope)
    tc = browser(a.app)
    verifier, challenge = pkce()
    params = authorize_params(cid, scope, challenge, **extra)
    cb = get_code(tc, params, user.username)
    assert cb["state"] == [params["state"]]
    r = exchange(tc, cb["code"][0], verifier, cid)
    assert r.status_code == 200, r.text
    return tc, {**r.json(), "client_id": cid}


def introspect(a: AuthApp, token: str) -> dict[str, Any]:
    """Ask as a resource server (a confidential client allowed to introspect any token)."""
    rs = a.accounts.clients.add(
        "resource server",
        scopes="introspect system/Patient.r",
        client_type="confidential-symmetric",
        grant_types=["client_credentials"],
    )
    assert rs.secret is not None
    r = browser(a.app).post(
        "/auth/introspect", data={"token": token}, auth=(rs.client.client_id, rs.secret)
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_citizen_gets_their_own_patient_context_and_an_id_token(store: Store) -> None:
    a = auth_app(store)
    _, tok = code_flow(a, nonce="n-123")
    user = a.accounts.users.by_username("zhang.wei")
    assert user is not None
    assert tok["token_type"] == "Bearer" and tok["scope"] == SCOPE
    assert tok["patient"] == user.patient_id and tok["need_patient_banner"] is True
    assert tok["refresh_token"] and tok["expires_in"] == 3600
    info = a.auth.verify_token(tok["access_token"], URLS)
    assert info.patient == user.patient_id and info.subject == user.id
    assert info.fhir_user == f"{FHIR_BASE}/Patient/{user.patient_id}"
    assert info.role == "citizen" and info.client_id == tok["client_id"]
    keys = a.accounts.keys.public_keyset()
    id_claims = jwt.decode(tok["id_token"], keys, algorithms=["ES256"]).claims
    assert id_claims["aud"] == tok["client_id"] and id_claims["iss"] == f"{ORIGIN}/auth"
    assert id_claims["fhirUser"] == f"{FHIR_BASE}/Patient/{user.patient_id}"
    assert id_claims["nonce"] == "n-123" and id_claims["sub"] == user.id and "at_hash" in id_claims


def test_pkce_is_required_and_only_s256(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    _, challenge = pkce()
    for drop, method in (
        ("code_challenge", None),
        (None, "plain"),
        ("code_challenge_method", None),
    ):
        params = authorize_params(cid, SCOPE, challenge)
        if drop:
            del params[drop]
        if method:
            params["code_challenge_method"] = method
        r = tc.get("/auth/authorize", params=params)
        assert r.status_code == 302
        err = parse_qs(urlsplit(r.headers["location"]).query)
        assert err["error"] == ["invalid_request"] and err["state"] == [params["state"]]
    assert a.accounts.users.by_username(user.username) is not None


def test_a_bad_or_missing_verifier_fails(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    verifier, challenge = pkce()
    for bad in (None, pkce()[0], challenge):
        cb = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)
        r = exchange(tc, cb["code"][0], bad, cid)
        assert r.status_code == 400
        assert r.json()["error"] in ("invalid_request", "invalid_grant")
        assert "access_token" not in r.json()
    cb = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)
    assert exchange(tc, cb["code"][0], verifier, cid).status_code == 200


def test_code_reuse_is_refused_and_revokes_what_it_issued(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    verifier, challenge = pkce()
    code = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)["code"][0]
    first = exchange(tc, code, verifier, cid)
    assert first.status_code == 200
    tok = first.json()
    assert introspect(a, tok["access_token"])["active"] is True
    second = exchange(tc, code, verifier, cid)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert introspect(a, tok["access_token"]) == {"active": False}
    info = a.auth.verify_token(tok["access_token"], URLS)  # the signature is still good...
    assert a.auth.is_revoked(info)  # ...but the grant is revoked
    r = tc.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": cid,
            "refresh_token": tok["refresh_token"],
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_a_code_is_bound_to_its_client_and_redirect_uri(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    other = public_app(a)
    tc = browser(a.app)
    verifier, challenge = pkce()
    code = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)["code"][0]
    r = exchange(tc, code, verifier, cid, redirect_uri="http://localhost:9/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)["code"][0]
    assert exchange(tc, code, verifier, other).json()["error"] == "invalid_grant"


def test_refresh_tokens_rotate_and_a_stolen_one_revokes_the_family(store: Store) -> None:
    a = auth_app(store)
    tc, tok = code_flow(a)
    cid = tok["client_id"]

    def refresh(rt: str, **extra: str) -> Any:
        return tc.post(
            "/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": cid, **extra},
        )

    r1 = refresh(tok["refresh_token"])
    assert r1.status_code == 200, r1.text
    t1 = r1.json()
    assert t1["refresh_token"] != tok["refresh_token"] and t1["patient"] == tok["patient"]
    assert t1["scope"] == SCOPE
    r2 = refresh(t1["refresh_token"])
    assert r2.status_code == 200
    t2 = r2.json()
    assert introspect(a, t2["access_token"])["active"] is True
    # the first refresh token, already rotated, is presented again: someone copied it
    stolen = refresh(tok["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # the whole family is dead: the newest refresh token and the access tokens of the grant
    assert refresh(t2["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(a, t2["access_token"]) == {"active": False}
    assert introspect(a, tok["access_token"]) == {"active": False}


def test_scope_may_narrow_at_refresh_but_never_widen(store: Store) -> None:
    a = auth_app(store)
    scope = "launch/patient patient/Observation.rs patient/Patient.r offline_access"
    tc, tok = code_flow(a, scope)
    cid = tok["client_id"]
    for wider in (
        "patient/*.rs",
        "patient/Observation.cruds",
        "user/Observation.rs",
        "patient/Observation.rs openid",
        "patient/Condition.r",
    ):
        r = tc.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": cid,
                "refresh_token": tok["refresh_token"],
                "scope": wider,
            },
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", wider
    # a refused escalation does not burn the token; a narrowing works
    r = tc.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": cid,
            "refresh_token": tok["refresh_token"],
            "scope": "patient/Observation.r",
        },
    )
    assert r.status_code == 200, r.text
    narrow = r.json()
    assert narrow["scope"] == "patient/Observation.r"
    info = a.auth.verify_token(narrow["access_token"], URLS)
    assert info.allows("patient", "Observation", "r") and not info.allows(
        "patient", "Observation", "s"
    )
    # the new refresh token keeps the originally granted scope (RFC 6749 section 6)
    r = tc.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": cid,
            "refresh_token": narrow["refresh_token"],
        },
    )
    assert r.json()["scope"] == scope


def test_authorization_request_checks(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a, SCOPE + " launch")
    tc = browser(a.app)
    _, challenge = pkce()

    def error_of(**over: str) -> list[str]:
        params = {**authorize_params(cid, SCOPE, challenge), **over}
        r = tc.get("/auth/authorize", params=params)
        assert r.status_code == 302
        return parse_qs(urlsplit(r.headers["location"]).query)["error"]

    assert error_of(aud="https://other.example/fhir") == ["invalid_request"]
    assert error_of(scope="system/*.rs") == ["invalid_scope"]
    assert error_of(scope="user/*.cruds") == ["invalid_scope"]  # not registered for it
    assert error_of(scope="launch patient/*.rs") == ["invalid_request"]  # launch without id
    assert error_of(scope="launch patient/*.rs", launch="nonsense") == ["invalid_request"]
    # an unknown redirect URI or client is never redirected to
    for over in ({"redirect_uri": "https://evil.example/cb"}, {"client_id": "nobody"}):
        r = tc.get("/auth/authorize", params={**authorize_params(cid, SCOPE, challenge), **over})
        assert r.status_code == 400 and "text/html" in r.headers["content-type"]
        assert "evil" not in r.headers.get("location", "")
    assert user.username


def test_the_user_can_deny(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    _, challenge = pkce()
    params = authorize_params(cid, SCOPE, challenge)
    cb = get_code(tc, params, user.username, decision="deny")
    assert cb["error"] == ["access_denied"] and "code" not in cb


def test_consent_form_needs_its_csrf_token(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    _, challenge = pkce()
    params = authorize_params(cid, SCOPE, challenge)
    get_code(tc, params, user.username)  # logged in now
    for csrf in ("", "forged"):
        r = tc.post("/auth/authorize", data={**params, "decision": "allow", "csrf": csrf})
        assert r.status_code == 403 and "location" not in r.headers


def test_ehr_launch_passes_the_context_through(store: Store) -> None:
    a = auth_app(store)
    pat = store.create({"resourceType": "Patient", "name": [{"family": "李", "given": ["娜"]}]})
    doc = a.accounts.users.add(
        "dr.wang",
        role="practitioner",
        password="doctor pw 1",
        fhir_user="Practitioner/d1",
        organization="Organization/o1",
        practitioner_role="PractitionerRole/r1",
    )
    scope = "launch openid fhirUser user/*.rs patient/*.rs"
    cid = a.accounts.clients.add(
        "chart app",
        scopes=scope,
        client_type="public",
        redirect_uris=[REDIRECT],
        launch_uris=["https://chart.example/launch"],
    ).client.client_id
    launch = a.accounts.launches.create(
        patient=pat.rid,
        encounter="enc-1",
        user_id=doc.id,
        extra={"need_patient_banner": False, "smart_style_url": "https://ehr.example/style.json"},
    )
    tc = browser(a.app)
    verifier, challenge = pkce()
    cb = get_code(
        tc,
        authorize_params(cid, scope, challenge, launch=launch),
        "dr.wang",
        password="doctor pw 1",
    )
    tok = exchange(tc, cb["code"][0], verifier, cid).json()
    assert (tok["patient"], tok["encounter"]) == (pat.rid, "enc-1")
    assert tok["need_patient_banner"] is False
    assert tok["smart_style_url"] == "https://ehr.example/style.json"
    info = a.auth.verify_token(tok["access_token"], URLS)
    assert info.role == "practitioner" and info.organization == "Organization/o1"
    assert info.practitioner_role == "PractitionerRole/r1" and info.encounter == "enc-1"
    # a launch made for another user is refused
    other = a.accounts.launches.create(patient=pat.rid, user_id="someone-else")
    params = authorize_params(cid, scope, challenge, launch=other)
    r = tc.get("/auth/authorize", params=params)
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]


def test_a_clinician_picks_the_patient(store: Store) -> None:
    a = auth_app(store)
    pat = store.create(
        {
            "resourceType": "Patient",
            "name": [{"family": "赵", "given": ["敏"]}],
            "birthDate": "1980-02-03",
        }
    )
    store.create({"resourceType": "Patient", "name": [{"family": "钱", "given": ["多"]}]})
    a.accounts.users.add(
        "nurse.li", role="nurse", password="nurse pw 1", fhir_user="Practitioner/n1"
    )
    scope = "launch/patient patient/*.rs openid fhirUser"
    cid = public_app(a, scope)
    tc = browser(a.app)
    verifier, challenge = pkce()
    params = authorize_params(cid, scope, challenge)
    r = tc.get("/auth/authorize", params=params)
    nxt = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    from test_auth_support import login

    assert login(tc, "nurse.li", "nurse pw 1", nxt).status_code == 303
    page = tc.get("/auth/authorize", params={**params, "patient_q": "赵"})
    assert page.status_code == 200
    assert f'value="{pat.rid}"' in page.text and "1980-02-03" in page.text
    assert "钱" not in page.text
    csrf = field(page.text, "csrf")
    # allowing without picking does not issue a code
    r = tc.post("/auth/authorize", data={**params, "csrf": csrf, "decision": "allow"})
    assert r.status_code == 400 and "location" not in r.headers
    r = tc.post(
        "/auth/authorize", data={**params, "csrf": csrf, "decision": "allow", "patient": pat.rid}
    )
    assert r.status_code == 302
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    tok = exchange(tc, code, verifier, cid).json()
    assert tok["patient"] == pat.rid


# -- backend services ------------------------------------------------------------------------
def backend(
    a: AuthApp, alg: str = "RS384", scope: str = "system/Patient.rs system/Observation.rs"
) -> tuple[Any, str]:
    key, jwks = client_key(alg)
    cid = a.accounts.clients.add(
        "nightly export", scopes=scope, client_type="confidential-asymmetric", jwks=jwks
    ).client.client_id
    return key, cid


def cc(a: AuthApp, client_assertion: str, scope: str = "system/Patient.rs") -> Any:
    return browser(a.app).post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION,
            "client_assertion": client_assertion,
        },
    )


@pytest.mark.parametrize("alg", ["RS384", "ES384", "RS256", "ES256"])
def test_private_key_jwt_with_each_algorithm(store: Store, alg: str) -> None:
    a = auth_app(store)
    key, cid = backend(a, alg)
    r = cc(a, assertion(key, cid, alg=alg), "system/Patient.rs system/Observation.r")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.rs system/Observation.r"


def test_private_key_jwt_refusals(store: Store) -> None:
    a = auth_app(store)
    key, cid = backend(a)
    once = assertion(key, cid, jti="the-only-one")
    assert cc(a, once).status_code == 200
    replay = cc(a, once)
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    # a fresh assertion re-using the jti is a replay too
    assert cc(a, assertion(key, cid, jti="the-only-one")).json()["error"] == "invalid_client"
    refused = {
        "an hour-long assertion": assertion(key, cid, lifetime=3600),
        "an expired assertion": assertion(key, cid, lifetime=-120),
        "the wrong audience": assertion(key, cid, aud=f"{ORIGIN}/other/token"),
        "another key": assertion(client_key()[0], cid),
    }
    for what, value in refused.items():
        r = cc(a, value)
        assert r.json().get("error") == "invalid_client", what
    # HS256 "signed" with the registered public key
    import hashlib
    import hmac
    import json

    def b64(d: bytes) -> str:
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    body = b64(
        json.dumps(
            {"iss": cid, "sub": cid, "aud": f"{ORIGIN}/auth/token", "exp": now + 60, "jti": "hs"}
        ).encode()
    )
    pub = json.dumps(key.as_dict(private=False)).encode()
    sig = b64(hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert cc(a, f"{head}.{body}.{sig}").json()["error"] == "invalid_client"
    # scopes: only system/ scopes the client registered
    assert cc(a, assertion(key, cid), "system/Condition.rs").json()["error"] == "invalid_scope"
    assert cc(a, assertion(key, cid), "patient/*.rs").json()["error"] == "invalid_scope"
    r = cc(a, assertion(key, cid), "system/Patient.rs system/Condition.rs")
    assert r.status_code == 200 and r.json()["scope"] == "system/Patient.rs"


def test_client_secret_basic(store: Store) -> None:
    a = auth_app(store)
    new = a.accounts.clients.add(
        "lab gateway", scopes="system/Observation.cru", client_type="confidential-symmetric"
    )
    assert new.secret and new.client.grant_types == ("client_credentials",)
    tc = browser(a.app)
    data = {"grant_type": "client_credentials", "scope": "system/Observation.cru"}
    ok = tc.post("/auth/token", data=data, auth=(new.client.client_id, new.secret))
    assert ok.status_code == 200, ok.text
    bad = tc.post("/auth/token", data=data, auth=(new.client.client_id, new.secret + "x"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    none = tc.post("/auth/token", data={**data, "client_id": new.client.client_id})
    assert none.status_code in (400, 401) and none.json()["error"] == "invalid_client"


def test_introspection_and_revocation(store: Store) -> None:
    a = auth_app(store)
    tc, tok = code_flow(a)
    cid = tok["client_id"]
    meta = introspect(a, tok["access_token"])
    assert meta["active"] is True and meta["client_id"] == cid and meta["scope"] == SCOPE
    assert meta["patient"] == tok["patient"] and meta["aud"] == [FHIR_BASE]
    assert introspect(a, tok["refresh_token"])["active"] is True
    assert introspect(a, "garbage") == {"active": False}
    # a confidential client may introspect its own tokens only
    other = a.accounts.clients.add(
        "other service", scopes="system/Patient.r", client_type="confidential-symmetric"
    )
    assert other.secret is not None
    r = tc.post(
        "/auth/introspect",
        data={"token": tok["access_token"]},
        auth=(other.client.client_id, other.secret),
    )
    assert r.status_code == 200 and r.json() == {"active": False}
    # a public client may not introspect
    r = tc.post("/auth/introspect", data={"token": tok["access_token"], "client_id": cid})
    assert r.status_code in (400, 401)
    # revoking the access token
    assert (
        tc.post("/auth/revoke", data={"token": tok["access_token"], "client_id": cid}).status_code
        == 200
    )
    assert introspect(a, tok["access_token"]) == {"active": False}
    assert introspect(a, tok["refresh_token"])["active"] is True
    # revoking the refresh token ends the grant
    assert (
        tc.post("/auth/revoke", data={"token": tok["refresh_token"], "client_id": cid}).status_code
        == 200
    )
    assert introspect(a, tok["refresh_token"]) == {"active": False}
    r = tc.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": cid,
            "refresh_token": tok["refresh_token"],
        },
    )
    assert r.json()["error"] == "invalid_grant"


def test_discovery_documents(store: Store) -> None:
    a = auth_app(store)
    tc = browser(a.app)
    smart = tc.get("/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200 and smart.headers["access-control-allow-origin"] == "*"
    doc = smart.json()
    assert doc["authorization_endpoint"] == f"{ORIGIN}/auth/authorize"
    assert doc["token_endpoint"] == f"{ORIGIN}/auth/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-passthrough-banner",
        "context-standalone-patient",
        "context-ehr-patient",
        "permission-offline",
        "permission-online",
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
        "authorize-post",
    } <= set(doc["capabilities"])
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(doc["token_endpoint_auth_signing_alg_values_supported"])
    oidc = tc.get("/auth/.well-known/openid-configuration").json()
    assert oidc["issuer"] == doc["issuer"] == f"{ORIGIN}/auth"
    assert oidc["jwks_uri"] == f"{ORIGIN}/auth/jwks"
    assert tc.get("/.well-known/openid-configuration").json() == oidc
    assert tc.get("/auth/jwks").json()["keys"][0]["kty"] == "EC"
    # the FHIR API itself is still there
    assert tc.get("/fhir/metadata").status_code == 200


def test_private_key_jwt_with_a_jwks_uri_follows_key_rotation(store: Store) -> None:
    import httpx

    from ehr.accounts import JwksCache

    a = auth_app(store)
    key1, jwks1 = client_key("ES384")
    served = {"jwks": jwks1}
    fetches: list[str] = []

    def keys_host(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return httpx.Response(200, json=served["jwks"])

    a.auth.jwks_cache = JwksCache(
        min_refresh_s=0, client=httpx.Client(transport=httpx.MockTransport(keys_host))
    )
    cid = a.accounts.clients.add(
        "regional exchange",
        scopes="system/*.rs",
        client_type="confidential-asymmetric",
        jwks_uri="https://exchange.example.cn/.well-known/jwks.json",
    ).client.client_id
    assert cc(a, assertion(key1, cid, alg="ES384"), "system/*.rs").status_code == 200
    assert cc(a, assertion(key1, cid, alg="ES384"), "system/Patient.r").status_code == 200
    assert fetches == ["https://exchange.example.cn/.well-known/jwks.json"]  # cached
    # the client rotates its key: the unknown kid makes the server fetch the JWKS again
    key2, jwks2 = client_key("ES384")
    served["jwks"] = jwks2
    assert cc(a, assertion(key2, cid, alg="ES384"), "system/*.rs").status_code == 200
    assert len(fetches) == 2
    r = cc(a, assertion(key1, cid, alg="ES384"), "system/*.rs")  # the old key is gone
    assert r.json()["error"] == "invalid_client"


def test_security_events_reach_the_listeners(store: Store) -> None:
    a = auth_app(store)
    events: list[tuple[str, dict[str, Any]]] = []
    a.auth.listeners.append(lambda name, data: events.append((name, data)))
    user, patient_id = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    from test_auth_support import login

    assert login(tc, user.username, "wrong").status_code == 401
    verifier, challenge = pkce()
    code = get_code(tc, authorize_params(cid, SCOPE, challenge), user.username)["code"][0]
    assert exchange(tc, code, verifier, cid).status_code == 200
    assert exchange(tc, code, verifier, cid).status_code == 400
    names = [n for n, _ in events]
    assert names == ["login", "login", "token", "grant-revoked", "oauth-error"]
    assert events[0][1]["outcome"] == "invalid" and events[1][1]["outcome"] == "ok"
    assert events[2][1]["patient"] == patient_id and events[2][1]["user_id"] == user.id
    assert events[3][1]["reason"] == "authorization code reused"
    assert events[4][1]["error"] == "invalid_grant" and events[4][1]["client_id"] == cid
