"""Full flows through a real uvicorn socket on the *secured* app (``ehr serve``'s), driven by
Authlib's OAuth client as an app would, on both databases:

* a citizen logs in, authorizes an app (PKCE S256), and the app reads their own record with the
  token, and only theirs: another citizen's resources answer as if they did not exist, and
  searches leave them out; the citizen then sees under their own token who read their record;
* a backend client (a counter terminal) gets a token with ``private_key_jwt`` and reads what its
  scopes allow, nothing else.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from test_auth_live import SmartPrivateKeyJWT
from test_auth_support import PASSWORD, REDIRECT, client_key, field, live
from test_security_support import _obs, secure_app

from ehr.store import Store


def test_citizen_app_reads_only_their_own_record(store: Store, tmp_path: Path) -> None:
    mine = store.create(
        {"resourceType": "Patient", "name": [{"family": "张", "given": ["伟"]}]}
    ).rid
    theirs = store.create({"resourceType": "Patient", "name": [{"family": "李"}]}).rid
    my_obs = store.create(_obs(mine)).rid
    their_obs = store.create(_obs(theirs)).rid
    with secure_app(store, tmp_path) as sa:
        user = sa.accounts.users.add("zhang.wei", role="citizen", fhir_user=f"Patient/{mine}",
                                     password=PASSWORD, display_name="张伟")  # fmt: skip
        scope = "launch/patient openid fhirUser patient/*.rs"
        cid = sa.accounts.clients.add(
            "掌上健康", scopes=scope, client_type="public", redirect_uris=[REDIRECT]
        ).client.client_id
        with live(sa.app) as origin:
            fhir = f"{origin}/fhir"
            conf = httpx.get(f"{fhir}/.well-known/smart-configuration").json()
            app = OAuth2Client(
                cid, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256"
            )
            verifier = generate_token(64)
            url, _ = app.create_authorization_url(
                conf["authorization_endpoint"], code_verifier=verifier, aud=fhir
            )
            with httpx.Client(follow_redirects=False) as phone:
                r = phone.get(phone.get(url).headers["location"])
                r = phone.post(
                    conf["authorization_endpoint"].replace("/authorize", "/login"),
                    data={"csrf": field(r.text, "csrf"), "next": html.unescape(field(r.text, "next")),
                          "username": user.username, "password": PASSWORD},
                )  # fmt: skip
                assert r.status_code == 303, r.text
                consent = phone.get(origin + r.headers["location"])
                form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                r = phone.post(conf["authorization_endpoint"],
                               data={**form, "csrf": field(consent.text, "csrf"), "decision": "allow"})  # fmt: skip
                assert r.status_code == 302
            token = app.fetch_token(conf["token_endpoint"], authorization_response=r.headers["location"],
                                    code_verifier=verifier)  # fmt: skip
            assert token["patient"] == mine
            api = OAuth2Client(cid, token=token)
            assert api.get(f"{fhir}/Patient/{mine}").json()["id"] == mine
            found = api.get(f"{fhir}/Observation").json()
            assert [e["resource"]["id"] for e in found["entry"]] == [my_obs]
            # another citizen's record: exactly as if it did not exist
            for path in (f"Patient/{theirs}", f"Observation/{their_obs}"):
                denied, missing = api.get(f"{fhir}/{path}"), api.get(f"{fhir}/{path}x")
                assert denied.status_code == 404 == missing.status_code
                assert denied.text.replace(path, path + "x") == missing.text
            search = api.get(f"{fhir}/Observation", params={"subject": f"Patient/{theirs}"})
            assert search.status_code == 200 and "entry" not in search.json()
            assert api.get(f"{fhir}/Observation/{their_obs}/_history").status_code == 404
            assert api.post(f"{fhir}/Observation", json=_obs(mine),
                            headers={"Content-Type": "application/fhir+json"}).status_code == 403  # fmt: skip
            # ... and the citizen sees who read their record: this app, and no one else's reads
            log = api.get(f"{fhir}/AuditEvent", params={"patient": mine, "_count": "100"}).json()
            apps = {a["who"]["display"] for e in log["entry"] for a in e["resource"]["agent"]
                    if a["who"].get("identifier")}  # fmt: skip
            assert apps == {cid}
            patients = {x["what"]["reference"] for e in log["entry"] for x in e["resource"]["entity"]
                        if x.get("role", {}).get("code") == "1"}  # fmt: skip
            assert patients == {f"Patient/{mine}"}  # (their own refused requests included)
            app.close()
            api.close()


def test_backend_client_reads_what_its_scopes_allow(store: Store, tmp_path: Path) -> None:
    pid = store.create({"resourceType": "Patient", "name": [{"family": "王"}]}).rid
    obs = store.create(_obs(pid)).rid
    with secure_app(store, tmp_path, audit=False) as sa:
        key, jwks = client_key("ES384")
        cid = sa.accounts.clients.add(
            "门诊一楼 1 号窗口", scopes="system/Patient.rs system/Appointment.rus",
            client_type="confidential-asymmetric", jwks=jwks,
        ).client.client_id  # fmt: skip
        with live(sa.app) as origin:
            conf = httpx.get(f"{origin}/fhir/.well-known/smart-configuration").json()
            terminal = OAuth2Client(cid, key, token_endpoint_auth_method="private_key_jwt",
                                    scope="system/Patient.rs")  # fmt: skip
            terminal.register_client_auth_method(
                SmartPrivateKeyJWT(conf["token_endpoint"], alg="ES384")
            )
            token: dict[str, Any] = terminal.fetch_token(
                conf["token_endpoint"], grant_type="client_credentials"
            )
            assert token["scope"] == "system/Patient.rs"
            assert terminal.get(f"{origin}/fhir/Patient/{pid}").status_code == 200
            # not granted (Appointment was not asked for), nor registered (Observation)
            for path in (f"Observation/{obs}", "Appointment", "Observation/nope"):
                r = terminal.get(f"{origin}/fhir/{path}")
                assert r.status_code == 403 and re.search(r"do not allow", r.text), path
            terminal.close()
