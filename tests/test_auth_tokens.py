"""Access-token verification: what any API worker does with only the JWKS. Expired, wrong
audience, wrong issuer, bad signature, ``alg=none``, HS/RS confusion and unknown keys are
refused; key rotation keeps old tokens valid until they expire; an external OIDC issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc.jwk import KeySet, RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse
from test_auth_support import FHIR_BASE, ORIGIN, auth_app, browser

from ehr.accounts import InvalidToken, JwksCache, TokenInfo, verify_access_token
from ehr.accounts.tokens import sign_jwt
from ehr.errors import FhirError
from ehr.store import Store
from fhir_api.auth import Urls, token_info

ISSUER = f"{ORIGIN}/auth"
URLS = Urls.build(FHIR_BASE, "/fhir")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {
        "iss": ISSUER,
        "aud": FHIR_BASE,
        "sub": "u1",
        "client_id": "app",
        "scope": "patient/*.rs",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "patient": "p1",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def jwks_over_http(store: Store) -> KeySet:
    """The JWKS as a worker would fetch it: over HTTP from the public endpoint."""
    a = auth_app(store)
    return KeySet.import_key_set(browser(a.app).get("/auth/jwks").json())


def verify(token: str, keys: KeySet) -> TokenInfo:
    return verify_access_token(token, keys, issuer=ISSUER, audience=FHIR_BASE)


def test_issued_backend_token_verifies_with_only_the_published_jwks(store: Store) -> None:
    from test_auth_support import assertion, client_key

    a = auth_app(store)
    key, jwks = client_key("ES384")
    cid = a.accounts.clients.add(
        "counter terminal",
        scopes="system/Patient.rs system/Appointment.cru",
        client_type="confidential-asymmetric",
        jwks=jwks,
    ).client.client_id
    tc = browser(a.app)
    r = tc.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs system/Appointment.cru",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(key, cid, alg="ES384"),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "refresh_token" not in body
    # a worker with nothing but the JWKS document (fetched over HTTP, no database)
    keys = KeySet.import_key_set(tc.get("/auth/jwks").json())
    info = verify_access_token(body["access_token"], keys, issuer=ISSUER, audience=FHIR_BASE)
    assert info.client_id == cid and info.subject == cid
    assert info.allows("system", "Patient", "s") and not info.allows("system", "Patient", "d")
    assert time.time() < info.expires_at <= time.time() + 3600


def test_signed_claims_round_trip(store: Store) -> None:
    a = auth_app(store)
    alg, key = a.accounts.keys.signing_key()
    info = verify(
        sign_jwt(claims(encounter="e1", fhirUser=f"{FHIR_BASE}/Patient/p1"), alg, key),
        jwks_over_http(store),
    )
    assert (info.patient, info.encounter, info.subject) == ("p1", "e1", "u1")
    assert info.fhir_user == f"{FHIR_BASE}/Patient/p1"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "token expired"),
        ({"aud": "https://other.example/fhir"}, "invalid claim"),
        ({"iss": "https://evil.example/auth"}, "invalid claim"),
        ({"iat": int(time.time()) + 3600}, "invalid claim"),
        ({"sub": None}, "invalid claim"),
        ({"client_id": None}, "invalid claim: client_id"),
    ],
)
def test_bad_claims_are_refused(store: Store, over: dict[str, Any], reason: str) -> None:
    a = auth_app(store)
    alg, key = a.accounts.keys.signing_key()
    with pytest.raises(InvalidToken) as err:
        verify(sign_jwt(claims(**over), alg, key), jwks_over_http(store))
    assert err.value.reason.startswith(reason)


def test_bad_signature_and_foreign_key_are_refused(store: Store) -> None:
    a = auth_app(store)
    alg, key = a.accounts.keys.signing_key()
    keys = jwks_over_http(store)
    good = sign_jwt(claims(), alg, key)
    head, payload, sig = good.split(".")
    tampered_payload = b64(json.dumps(claims(patient="someone-else")).encode())
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(f"{head}.{tampered_payload}.{sig}", keys)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[5] ^= 0xFF
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(f"{head}.{payload}.{b64(bytes(raw))}", keys)
    # an attacker's key that claims our kid
    from joserfc.jwk import ECKey

    forged_key = ECKey.generate_key("P-256", private=True, parameters={"kid": str(key.kid)})
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(sign_jwt(claims(), "ES256", forged_key), keys)


def test_alg_none_is_refused(store: Store) -> None:
    a = auth_app(store)
    _, key = a.accounts.keys.signing_key()
    head = b64(json.dumps({"alg": "none", "kid": key.kid, "typ": "JWT"}).encode())
    token = f"{head}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        verify(token, jwks_over_http(store))


def test_hs256_signed_with_our_public_key_is_refused(store: Store) -> None:
    """The classic RS/HS confusion: the attacker HMACs with our (public) RSA key."""
    a = auth_app(store, signing_alg="RS256")
    alg, key = a.accounts.keys.signing_key()
    assert alg == "RS256"
    keys = jwks_over_http(store)
    public = keys.get_by_kid(key.kid)
    assert isinstance(public, RSAKey)
    assert verify(sign_jwt(claims(), alg, key), keys).subject == "u1"  # RS256 itself is fine
    secrets_tried = [
        public.as_pem(private=False),
        json.dumps(public.as_dict(private=False)).encode(),
    ]
    for secret in secrets_tried:
        head = b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode())
        body = b64(json.dumps(claims()).encode())
        sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        with pytest.raises(InvalidToken, match="algorithm 'HS256'"):
            verify(f"{head}.{body}.{sig}", keys)


def test_unknown_or_missing_kid_is_refused(store: Store) -> None:
    a = auth_app(store)
    keys = jwks_over_http(store)
    from joserfc.jwk import ECKey

    stranger = ECKey.generate_key("P-256", private=True)
    stranger.ensure_kid()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verify(sign_jwt(claims(), "ES256", stranger), keys)
    _, key = a.accounts.keys.signing_key()
    from joserfc import jwt

    no_kid = jwt.encode({"alg": "ES256"}, claims(), key, algorithms=["ES256"])
    with pytest.raises(InvalidToken, match="kid"):
        verify(no_kid, keys)
    with pytest.raises(InvalidToken, match="malformed"):
        verify("not-a-jwt", keys)


def test_rotation_keeps_old_tokens_valid_until_the_key_is_unpublished(store: Store) -> None:
    a = auth_app(store)
    tc = browser(a.app)
    alg, old = a.accounts.keys.signing_key()
    old_token = sign_jwt(claims(), alg, old)
    new_kid = a.accounts.keys.rotate()
    alg, new = a.accounts.keys.signing_key()
    assert new.kid == new_kid != old.kid
    published = {k["kid"] for k in tc.get("/auth/jwks").json()["keys"]}
    assert published == {old.kid, new.kid}
    keys = KeySet.import_key_set(tc.get("/auth/jwks").json())
    assert verify(old_token, keys).subject == "u1"
    assert verify(sign_jwt(claims(), alg, new), keys).subject == "u1"
    # the server's own verifier (keys from the database, cached) follows the rotation too
    assert a.auth.verify_token(sign_jwt(claims(), alg, new), URLS).subject == "u1"
    # once retired longer than the longest token lifetime, the old key is gone
    a.accounts.keys.publish_retired_s = 0
    a.accounts.keys._public = None
    assert {k["kid"] for k in a.accounts.keys.jwks()["keys"]} == {new.kid}
    with pytest.raises(InvalidToken, match="unknown signing key"):
        a.auth.verify_token(old_token, URLS)


def test_private_keys_are_encrypted_at_rest_when_a_secret_is_set(store: Store) -> None:
    from sqlalchemy import select

    from ehr.accounts import AccountStore
    from ehr.accounts.tables import signing_keys

    accounts = AccountStore(store.engine, key_secret="s3cret")
    _, key = accounts.keys.signing_key()
    with store.read_conn() as c:
        stored = c.execute(select(signing_keys.c.private_jwk)).scalar_one()
    assert stored.startswith("aesgcm:") and '"d"' not in stored
    again = AccountStore(store.engine, key_secret="s3cret")
    assert again.keys.signing_key()[1].kid == key.kid
    with pytest.raises(RuntimeError, match="EHR_AUTH_KEY_SECRET"):
        AccountStore(store.engine).keys.signing_key()


def test_tokens_of_a_configured_external_issuer(store: Store) -> None:
    from joserfc.jwk import ECKey

    idp_key = ECKey.generate_key("P-256", private=True)
    idp_key.ensure_kid()
    idp_jwks = {"keys": [idp_key.as_dict(private=False)]}
    fetched: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json=idp_jwks)

    a = auth_app(
        store,
        external_issuer="https://idp.example.cn/realms/health",
        external_jwks_url="https://idp.example.cn/realms/health/certs",
    )
    a.auth.jwks_cache = JwksCache(client=httpx.Client(transport=httpx.MockTransport(idp)))
    ext = claims(
        iss="https://idp.example.cn/realms/health",
        client_id=None,
        azp="portal",
        scope=None,
        scp=["user/*.rs", "openid"],
    )
    info = a.auth.verify_token(sign_jwt(ext, "ES256", idp_key), URLS)
    assert info.external and info.client_id == "portal" and info.allows("user", "Observation", "r")
    assert fetched == ["https://idp.example.cn/realms/health/certs"]
    # the external issuer cannot mint tokens in our name, nor we in its name
    with pytest.raises(InvalidToken):
        a.auth.verify_token(sign_jwt(claims(), "ES256", idp_key), URLS)
    alg, ours = a.accounts.keys.signing_key()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        a.auth.verify_token(sign_jwt(ext, alg, ours), URLS)
    with pytest.raises(InvalidToken, match="unknown issuer"):
        a.auth.verify_token(sign_jwt(claims(iss="https://else.example"), alg, ours), URLS)


def test_token_info_reads_the_bearer_token_of_an_api_request(store: Store) -> None:
    a = auth_app(store)

    async def probe(request: Request) -> JSONResponse:
        try:
            info = await token_info(request, check_revoked=True)
        except FhirError as err:
            return JSONResponse({"status": err.status}, 401, headers=err.headers)
        return JSONResponse(None if info is None else {"sub": info.subject, "pt": info.patient})

    a.app.add_api_route("/probe", probe)
    tc = browser(a.app)
    alg, key = a.accounts.keys.signing_key()
    good = sign_jwt(claims(), alg, key)
    assert tc.get("/probe").json() is None
    r = tc.get("/probe", headers={"Authorization": f"Bearer {good}"})
    assert r.json() == {"sub": "u1", "pt": "p1"}
    expired = sign_jwt(claims(exp=int(time.time()) - 300), alg, key)
    r = tc.get("/probe", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="fhir", error="invalid_token"')
    r = tc.get("/probe", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401 and 'error="invalid_request"' in r.headers["www-authenticate"]
    jti = claims()["jti"]
    revoked = sign_jwt(claims(jti=jti), alg, key)
    a.accounts.revocations.revoke_token(jti, (int(time.time()) + 3600) * 1_000_000, "test")
    r = tc.get("/probe", headers={"Authorization": f"Bearer {revoked}"})
    assert r.status_code == 401 and "revoked" in r.headers["www-authenticate"]
