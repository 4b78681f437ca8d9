"""Accounts and OAuth state of the SMART on FHIR authorization server (no web framework here;
the HTTP side is ``fhir_api.auth``).

Spec anchors: SMART App Launch 2.x (https://hl7.org/fhir/smart-app-launch/), OAuth 2.0
(RFC 6749), PKCE (RFC 7636), JWT client authentication (RFC 7523), token introspection
(RFC 7662) and revocation (RFC 7009), OpenID Connect Core 1.0.

Modules: :mod:`.tables` (schema), :mod:`.users` (users and throttled logins), :mod:`.clients`
(registered apps), :mod:`.grants` (codes, refresh tokens, revocations, assertion ids),
:mod:`.keys` (our signing keys), :mod:`.launch` (EHR launch contexts), :mod:`.scopes` (SMART
scopes), :mod:`.tokens` (access-token verification), :mod:`.jwks` (remote JWKS cache).
"""

from __future__ import annotations

from .clients import CLIENT_TYPES, Client, Clients, NewClient
from .grants import AuthorizationCode, RefreshToken
from .jwks import JwksCache, JwksError
from .keys import SIGNING_ALGS, SigningKeys
from .launch import LaunchContext, Launches
from .passwords import Passwords
from .scopes import (
    SCOPES_SUPPORTED,
    InvalidScope,
    ScopeSet,
    SmartScope,
    allows,
    constraints,
    parse_scope,
    parse_scopes,
)
from .store import AccountStore
from .tokens import InvalidToken, TokenInfo, TokenVerifier, TrustedIssuer, verify_access_token
from .users import ROLES, LoginPolicy, LoginResult, User, Users

__all__ = [
    "CLIENT_TYPES",
    "ROLES",
    "SCOPES_SUPPORTED",
    "SIGNING_ALGS",
    "AccountStore",
    "AuthorizationCode",
    "Client",
    "Clients",
    "InvalidScope",
    "InvalidToken",
    "JwksCache",
    "JwksError",
    "LaunchContext",
    "Launches",
    "LoginPolicy",
    "LoginResult",
    "NewClient",
    "Passwords",
    "RefreshToken",
    "ScopeSet",
    "SigningKeys",
    "SmartScope",
    "TokenInfo",
    "TokenVerifier",
    "TrustedIssuer",
    "User",
    "Users",
    "allows",
    "constraints",
    "parse_scope",
    "parse_scopes",
    "verify_access_token",
]
