"""Helpers for the authorization-server tests (no tests here): the real app with the
authorization server installed, a browser-like login/consent walk through the HTML forms,
PKCE pairs, client keys and client assertions, and a real uvicorn server."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from test_api_support import free_port, settings

from ehr.accounts import AccountStore, Passwords
from ehr.store import Store
from fhir_api import create_app
from fhir_api.auth import AuthServer, AuthSettings, install
from fhir_api.auth.config import account_store

#: argon2 with the cheapest parameters: the suite stays fast (production uses the defaults)
FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
ORIGIN = "http://localhost"
FHIR_BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
REDIRECT = "http://localhost:9/callback"
PASSWORD = "correct horse 电池"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AuthApp:
    app: FastAPI
    auth: AuthServer
    accounts: AccountStore
    store: Store


def auth_app(store: Store, **config: Any) -> AuthApp:
    app = create_app(store, settings())
    conf = AuthSettings(**config)
    accounts = account_store(store.engine, conf, FAST_PASSWORDS)
    auth = install(app, conf, accounts=accounts)
    return AuthApp(app, auth, accounts, store)


def browser(app: FastAPI, origin: str = ORIGIN) -> TestClient:
    return TestClient(app, base_url=origin, follow_redirects=False)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def field(page: str, name: str) -> str:
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert m, f"no field {name} in page"
    return html.unescape(m.group(1))


def citizen(a: AuthApp, username: str = "zhang.wei") -> tuple[Any, str]:
    """A citizen user and their Patient id."""
    pat = a.store.create({"resourceType": "Patient", "name": [{"family": "张", "given": ["伟"]}]})
    user = a.accounts.users.add(
        username,
        role="citizen",
        fhir_user=f"Patient/{pat.rid}",
        password=PASSWORD,
        display_name="张伟",
    )
    return user, pat.rid


def public_app(
    a: AuthApp, scope: str = "launch/patient patient/*.rs openid fhirUser offline_access"
) -> str:
    return a.accounts.clients.add(
        "健康助手", scopes=scope, client_type="public", redirect_uris=[REDIRECT]
    ).client.client_id


def authorize_params(client_id: str, scope: str, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": uuid.uuid4().hex,
        "aud": FHIR_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def login(tc: TestClient, username: str, password: str = PASSWORD, next_url: str = "") -> Any:
    page = tc.get("/auth/login", params={"next": next_url} if next_url else None)
    assert page.status_code == 200
    return tc.post(
        "/auth/login",
        data={
            "csrf": field(page.text, "csrf"),
            "next": next_url,
            "username": username,
            "password": password,
        },
    )


def get_code(
    tc: TestClient,
    params: dict[str, str],
    username: str,
    decision: str = "allow",
    password: str = PASSWORD,
    **form: str,
) -> dict[str, list[str]]:
    """Walk the browser part: authorize -> login -> consent -> redirect; the callback query."""
    r = tc.get("/auth/authorize", params=params)
    if r.status_code == 303 and "/auth/login" in r.headers["location"]:
        nxt = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
        r = login(tc, username, password, next_url=nxt)
        assert r.status_code == 303, r.text
        r = tc.get(r.headers["location"])
    assert r.status_code == 200, r.text
    r = tc.post(
        "/auth/authorize",
        data={**params, "csrf": field(r.text, "csrf"), "decision": decision, **form},
    )
    assert r.status_code == 302, r.text
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT)
    return parse_qs(urlsplit(loc).query)


def exchange(tc: TestClient, code: str, verifier: str | None, client_id: str, **extra: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        **extra,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return tc.post("/auth/token", data=data)


def client_key(alg: str = "RS384") -> tuple[RSAKey | ECKey, dict[str, Any]]:
    """A private key for ``alg`` and the JWKS to register (public part)."""
    key: RSAKey | ECKey
    if alg.startswith("RS"):
        key = RSAKey.generate_key(2048, private=True)
    else:
        key = ECKey.generate_key("P-384" if alg == "ES384" else "P-256", private=True)
    key.ensure_kid()
    public = key.as_dict(private=False)
    public["alg"] = alg
    return key, {"keys": [public]}


def assertion(
    key: RSAKey | ECKey,
    client_id: str,
    *,
    alg: str = "RS384",
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    jti: str | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + lifetime,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


@contextmanager
def live(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a thread); yields the origin URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
