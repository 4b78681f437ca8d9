"""Full flows through a real uvicorn socket, driven by Authlib's OAuth client as an app would:

* a citizen logs in (the HTML login form), authorizes a SMART app on the consent page, the app
  exchanges the code (PKCE S256) for a token with the citizen's patient context, reads the
  record with it, and refreshes;
* a backend service (a counter terminal) gets a token with ``private_key_jwt`` (RS384), and
  Authlib's default one-hour assertion is refused (SMART: at most five minutes).
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from test_auth_support import PASSWORD, REDIRECT, auth_app, citizen, client_key, field, live

from ehr.accounts import verify_access_token
from ehr.store import Store


class SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's private_key_jwt with the SMART five-minute assertion lifetime and a kid."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        key = auth.client_secret
        return str(
            private_key_jwt_sign(
                key,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                alg=self.alg,
                header={"kid": key.kid},
                expires_in=300,
            )
        )


def test_citizen_logs_in_and_authorizes_an_app(store: Store) -> None:
    a = auth_app(store)
    user, patient_id = citizen(a)
    store.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "体重"},
            "subject": {"reference": f"Patient/{patient_id}"},
        }
    )
    scope = "launch/patient openid fhirUser offline_access patient/*.rs"
    cid = a.accounts.clients.add(
        "掌上健康", scopes=scope, client_type="public", redirect_uris=[REDIRECT]
    ).client.client_id
    with live(a.app) as origin:
        fhir = f"{origin}/fhir"
        conf = httpx.get(f"{fhir}/.well-known/smart-configuration").json()
        app = OAuth2Client(cid, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256")
        verifier = generate_token(64)
        url, state = app.create_authorization_url(
            conf["authorization_endpoint"], code_verifier=verifier, aud=fhir
        )
        with httpx.Client(follow_redirects=False) as phone:  # the citizen's browser
            r = phone.get(url)
            assert r.status_code == 303
            r = phone.get(r.headers["location"])
            assert r.status_code == 200 and '<html lang="zh-CN">' in r.text and "登录" in r.text
            switch = re.search(r'<a href="([^"]+)" lang="en">English</a>', r.text)
            assert switch is not None  # the citizen switches the page to English
            r = phone.get(origin + html.unescape(switch.group(1)))
            assert r.status_code == 200 and '<html lang="en">' in r.text and "Sign in" in r.text
            r = phone.post(
                conf["authorization_endpoint"].replace("/authorize", "/login"),
                data={
                    "csrf": field(r.text, "csrf"),
                    "next": field(r.text, "next"),
                    "username": user.username,
                    "password": PASSWORD,
                    "lang": "en",
                },
            )
            assert r.status_code == 303, r.text
            consent = phone.get(origin + r.headers["location"])
            assert consent.status_code == 200 and "掌上健康" in consent.text
            assert "Read and search your health records (all kinds)" in consent.text
            form = dict(parse_qs(urlsplit(url).query, keep_blank_values=True))
            data = {k: v[0] for k, v in form.items()}
            r = phone.post(
                conf["authorization_endpoint"],
                data={**data, "csrf": field(consent.text, "csrf"), "decision": "allow"},
            )
            assert r.status_code == 302
            callback = r.headers["location"]
        assert callback.startswith(REDIRECT)
        token = app.fetch_token(
            conf["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert token["patient"] == patient_id and token["token_type"] == "Bearer"
        assert token.get("id_token") and token.get("refresh_token")
        # the token is usable on the API and verifiable with the published JWKS alone
        from joserfc.jwk import KeySet

        keys = KeySet.import_key_set(httpx.get(conf["jwks_uri"]).json())
        info = verify_access_token(
            token["access_token"], keys, issuer=conf["issuer"], audience=fhir
        )
        assert info.patient == patient_id and info.allows("patient", "Observation", "s")
        api = OAuth2Client(cid, token=token)
        r = api.get(f"{fhir}/Patient/{patient_id}")
        assert r.status_code == 200 and r.json()["id"] == patient_id
        bundle = api.get(f"{fhir}/Observation", params={"subject": f"Patient/{patient_id}"}).json()
        assert bundle["total"] == 1 if "total" in bundle else len(bundle["entry"]) == 1
        # refresh: a new pair, the old refresh token is spent
        old = token["refresh_token"]
        new = app.refresh_token(conf["token_endpoint"], refresh_token=old)
        assert new["refresh_token"] != old and new["patient"] == patient_id
        with pytest.raises(OAuthError) as err:
            app.refresh_token(conf["token_endpoint"], refresh_token=old)
        assert err.value.error == "invalid_grant"
        app.close()
        api.close()


def test_backend_service_gets_a_token_with_private_key_jwt(store: Store) -> None:
    a = auth_app(store)
    key, jwks = client_key("RS384")
    cid = a.accounts.clients.add(
        "counter terminal 3",
        scopes="system/Patient.rs system/Appointment.cru",
        client_type="confidential-asymmetric",
        jwks=jwks,
    ).client.client_id
    with live(a.app) as origin:
        conf = httpx.get(f"{origin}/fhir/.well-known/smart-configuration").json()
        assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
        terminal = OAuth2Client(
            cid, key, token_endpoint_auth_method="private_key_jwt", scope="system/Patient.rs"
        )
        terminal.register_client_auth_method(
            SmartPrivateKeyJWT(conf["token_endpoint"], alg="RS384")
        )
        token = terminal.fetch_token(conf["token_endpoint"], grant_type="client_credentials")
        assert token["scope"] == "system/Patient.rs" and "refresh_token" not in token
        info = a.auth.verify_token(token["access_token"], _urls(origin))
        assert info.client_id == cid and info.allows("system", "Patient", "r")
        assert terminal.get(f"{origin}/fhir/Patient").status_code == 200
        # Authlib's default assertion lives an hour: SMART Backend Services refuses it
        plain = OAuth2Client(
            cid, key, token_endpoint_auth_method="private_key_jwt", scope="system/Patient.rs"
        )
        plain.register_client_auth_method(
            PrivateKeyJWT(conf["token_endpoint"], alg="RS384", headers={"kid": key.kid})
        )
        with pytest.raises(OAuthError) as err:
            plain.fetch_token(conf["token_endpoint"], grant_type="client_credentials")
        assert err.value.error == "invalid_client"
        terminal.close()
        plain.close()


def _urls(origin: str) -> Any:
    from fhir_api.auth import Urls

    return Urls.build(f"{origin}/fhir", "/fhir")
