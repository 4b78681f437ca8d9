"""Registered OAuth clients (SMART apps, backend services, counter terminals).

Client types (https://hl7.org/fhir/smart-app-launch/client-authentication.html):

* ``public``: no secret; authenticates with PKCE only (``token_endpoint_auth_method`` none);
* ``confidential-symmetric``: a random secret, sent with HTTP Basic (``client_secret_basic``);
  only its SHA-256 is stored, the secret is shown once at registration;
* ``confidential-asymmetric``: ``private_key_jwt`` (RFC 7523, SMART Backend Services) with the
  public keys registered as a JWKS document or a ``jwks_uri``.

Grant types follow from the registration unless given: ``authorization_code`` and
``refresh_token`` for a client with redirect URIs, ``client_credentials`` for a confidential
client with ``system/`` scopes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, insert, select, update

from ._db import dump_json, load_json, now_us, read_tx, write_tx
from .crypto import equal, new_secret, secret_hash
from .scopes import InvalidScope, ScopeSet, parse_scopes
from .tables import oauth_clients, refresh_tokens

__all__ = ["CLIENT_TYPES", "GRANT_TYPES", "Client", "Clients", "NewClient"]

CLIENT_TYPES = ("public", "confidential-symmetric", "confidential-asymmetric")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    type: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    redirect_uris: tuple[str, ...]
    scopes: str
    grant_types: tuple[str, ...]
    launch_uris: tuple[str, ...]
    disabled: bool = False

    @property
    def scope_set(self) -> ScopeSet:
        return parse_scopes(self.scopes)

    @property
    def auth_method(self) -> str:
        return {
            "public": "none",
            "confidential-symmetric": "client_secret_basic",
            "confidential-asymmetric": "private_key_jwt",
        }[self.type]

    def check_secret(self, secret: str) -> bool:
        return self.secret_hash is not None and equal(secret_hash(secret), self.secret_hash)


@dataclass(frozen=True)
class NewClient:
    """A registration's result: the client, and its secret (shown only once) if it has one."""

    client: Client
    secret: str | None


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        type=row.type,
        secret_hash=row.secret_hash,
        jwks=load_json(row.jwks),
        jwks_uri=row.jwks_uri,
        redirect_uris=tuple(load_json(row.redirect_uris, [])),
        scopes=row.scopes,
        grant_types=tuple(row.grant_types.split()),
        launch_uris=tuple(load_json(row.launch_uris, [])),
        disabled=bool(row.disabled),
    )


def _check_uri(uri: str, what: str, *, allow_custom_scheme: bool = False) -> None:
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.fragment:
        raise ValueError(f"{what} must not have a fragment: {uri}")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and loopback:
        return
    if allow_custom_scheme and parts.scheme not in ("", "http", "https", "javascript", "data"):
        return  # native apps: private-use URI scheme (RFC 8252 section 7.1)
    raise ValueError(f"{what} must be https (or http on loopback): {uri}")


def _check_jwks(jwks: dict[str, Any]) -> None:
    from joserfc.jwk import KeySet

    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("a JWKS must be a JSON object with a non-empty 'keys' list")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("client keys must be RSA or EC public keys")
        if any(p in key for p in ("d", "p", "q", "dp", "dq", "qi")):
            raise ValueError("the JWKS holds a PRIVATE key: register the public keys only")
    KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # raises on malformed keys


class Clients:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        name: str,
        *,
        scopes: str,
        client_type: str,
        redirect_uris: Sequence[str] = (),
        jwks: dict[str, Any] | None = None,
        jwks_uri: str | None = None,
        grant_types: Sequence[str] | None = None,
        launch_uris: Sequence[str] = (),
        client_id: str | None = None,
    ) -> NewClient:
        """Register a client; ValueError when the registration is inconsistent."""
        if client_type not in CLIENT_TYPES:
            raise ValueError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
        try:
            scope_set = parse_scopes(scopes)
        except InvalidScope as exc:
            raise ValueError(str(exc)) from exc
        if not scope_set:
            raise ValueError("a client needs at least one scope")
        for uri in redirect_uris:
            _check_uri(uri, "redirect URI", allow_custom_scheme=True)
        for uri in launch_uris:
            _check_uri(uri, "launch URI")
        secret: str | None = None
        if client_type == "confidential-asymmetric":
            if (jwks is None) == (jwks_uri is None):
                raise ValueError("an asymmetric client needs exactly one of a JWKS or a JWKS URI")
            if jwks is not None:
                _check_jwks(jwks)
            if jwks_uri is not None:
                _check_uri(jwks_uri, "JWKS URI")
        elif jwks is not None or jwks_uri is not None:
            raise ValueError("only confidential-asymmetric clients register keys")
        if client_type == "confidential-symmetric":
            secret = new_secret(32)
        has_system = "system" in scope_set.contexts() or any(
            n.startswith("system/") for n in scope_set.other
        )
        if grant_types is None:
            inferred: list[str] = []
            if redirect_uris:
                inferred += ["authorization_code", "refresh_token"]
            if has_system and client_type != "public":
                inferred.append("client_credentials")
            grant_types = inferred
        for g in grant_types:
            if g not in GRANT_TYPES:
                raise ValueError(f"unknown grant type {g!r}")
        if not grant_types:
            raise ValueError(
                "the client can use no grant: give redirect URIs (apps) or system/ scopes "
                "(backend services)"
            )
        if "authorization_code" in grant_types and not redirect_uris:
            raise ValueError("authorization_code needs at least one redirect URI")
        if "client_credentials" in grant_types and client_type == "public":
            raise ValueError("a public client cannot use client_credentials")
        client_id = client_id or uuid.uuid4().hex
        row: dict[str, Any] = {
            "client_id": client_id,
            "name": name,
            "type": client_type,
            "secret_hash": secret_hash(secret) if secret else None,
            "jwks": dump_json(jwks) if jwks is not None else None,
            "jwks_uri": jwks_uri,
            "redirect_uris": json.dumps(list(redirect_uris)),
            "scopes": str(scope_set),
            "grant_types": " ".join(grant_types),
            "launch_uris": json.dumps(list(launch_uris)),
            "disabled": False,
            "created": now_us(),
        }
        with write_tx(self.engine) as conn:
            conn.execute(insert(oauth_clients).values(**row))
        found = self.get(client_id)
        assert found is not None
        return NewClient(found, secret)

    def get(self, client_id: str) -> Client | None:
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(oauth_clients).where(oauth_clients.c.client_id == client_id)
            ).first()
        return _client(row) if row else None

    def list(self) -> Sequence[Client]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(select(oauth_clients).order_by(oauth_clients.c.name)).all()
        return [_client(r) for r in rows]

    def remove(self, client_id: str) -> bool:
        """Delete the client and revoke its refresh tokens (its access tokens stop passing
        introspection and expire on their own)."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.client_id == client_id)
                .values(revoked=True)
            )
            res = conn.execute(delete(oauth_clients).where(oauth_clients.c.client_id == client_id))
        return bool(res.rowcount)
