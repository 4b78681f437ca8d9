"""Our account records seen through Authlib's model protocols (``ClientMixin``,
``AuthorizationCodeMixin``, ``TokenMixin``): duck-typed wrappers, so ``ehr.accounts`` stays free
of OAuth library types."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ehr.accounts import Client, TokenInfo
from ehr.accounts.grants import AuthorizationCode, RefreshToken

__all__ = ["AccessTokenRecord", "CodeRecord", "OAuthClient", "RefreshRecord"]


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _without_loopback_port(uri: str) -> tuple[str, str, str, str] | None:
    """``(scheme, host, path, query)`` of an ``http`` loopback URI (None for any other URI)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return parts.scheme, parts.hostname, parts.path, parts.query


@dataclass(frozen=True)
class OAuthClient:
    record: Client

    @property
    def client_id(self) -> str:
        return self.record.client_id

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # SMART: the app always sends redirect_uri

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """What of ``scope`` the client is registered for; None when nothing (invalid_scope)."""
        from ehr.accounts import InvalidScope, parse_scopes

        if not scope:
            return None
        try:
            granted = self.record.scope_set.covering(parse_scopes(scope))
        except InvalidScope:
            return None
        return str(granted) if granted else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match, except that a loopback redirect URI matches with any port (RFC 8252
        section 7.3): the apps served by this server on a random or local port."""
        if redirect_uri in self.record.redirect_uris:
            return True
        asked = _without_loopback_port(redirect_uri)
        return asked is not None and any(
            _without_loopback_port(uri) == asked for uri in self.record.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return self.record.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        own = self.record.auth_method
        if endpoint == "introspection" and own == "none":
            return False  # introspection is for confidential clients (resource servers)
        if own == "client_secret_basic":
            return method in ("client_secret_basic", "client_secret_post")
        return method == own

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.record.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.record.grant_types


@dataclass(frozen=True)
class CodeRecord:
    code: AuthorizationCode

    @property
    def code_challenge(self) -> str:
        return self.code.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.code.code_challenge_method

    def get_redirect_uri(self) -> str | None:
        return self.code.redirect_uri

    def get_scope(self) -> str:
        return self.code.scope

    def get_nonce(self) -> str | None:
        return self.code.nonce

    def get_auth_time(self) -> int:
        return self.code.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


@dataclass(frozen=True)
class RefreshRecord:
    token: RefreshToken

    @property
    def client_id(self) -> str:
        return self.token.client_id

    def check_client(self, client: OAuthClient) -> bool:
        return self.token.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.token.scope

    def is_expired(self) -> bool:
        return self.token.expires <= time.time() * 1_000_000

    def is_revoked(self) -> bool:
        return self.token.revoked or self.token.rotated is not None

    def introspect(self, issuer: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": self.token.client_id,
            "scope": self.token.scope,
            "sub": self.token.user_id or self.token.client_id,
            "exp": self.token.expires // 1_000_000,
        }
        if issuer:
            out["iss"] = issuer
        return out


@dataclass(frozen=True)
class AccessTokenRecord:
    info: TokenInfo
    revoked: bool

    @property
    def client_id(self) -> str:
        return self.info.client_id

    def check_client(self, client: OAuthClient) -> bool:
        return self.info.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.info.scopes

    def is_expired(self) -> bool:
        return self.info.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked

    def introspect(self, issuer: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "client_id": self.info.client_id,
            "scope": self.info.scopes,
            "sub": self.info.subject,
            "exp": self.info.expires_at,
            "iat": self.info.issued_at,
            "iss": self.info.issuer,
            "aud": list(self.info.audience),
            "jti": self.info.jti,
        }
        for claim in ("patient", "encounter", "fhirUser"):
            if self.info.claims.get(claim):
                out[claim] = self.info.claims[claim]
        return {k: v for k, v in out.items() if v is not None}
