"""SMART App Launch 2 grants on Authlib's OAuth 2.0 core.

* :class:`SmartAuthorizationCode` (https://hl7.org/fhir/smart-app-launch/app-launch.html):
  authorization code with PKCE S256 required for every client (:class:`S256Only`; ``plain``
  refused), ``redirect_uri`` required, ``aud`` must be our FHIR base, ``launch`` resolved to the
  EHR launch context, ``system/`` scopes never granted to a user-facing app. A code is single
  use: presenting it again revokes every token issued from it.
* :class:`SmartOpenIDCode`: ``openid`` gives an id_token signed with our key, with ``fhirUser``
  (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-identity-data).
* :class:`SmartRefreshToken`: refresh tokens rotate on use; a rotated token presented again
  revokes its whole family (theft detection, RFC 9700 section 4.14.2); the requested scope may
  narrow, never widen (checked with SMART semantics: ``patient/Observation.rs`` is within
  ``patient/*.read``).
* :class:`SmartClientCredentials` (https://hl7.org/fhir/smart-app-launch/backend-services.html):
  ``system/`` scopes for backend services and counter terminals.
* :class:`PrivateKeyJwt`: ``private_key_jwt`` client authentication (RFC 7523): RS384/ES384
  (and RS256/ES256), verified with the client's registered JWKS (keys or ``jwks_uri``),
  ``aud`` = our token endpoint, ``exp`` no more than five minutes ahead, ``jti`` single use.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ehr.accounts import InvalidScope, JwksError, parse_scopes

from .models import CodeRecord, OAuthClient, RefreshRecord

if TYPE_CHECKING:
    from .adapter import OAuthRequest
    from .server import AuthServer

__all__ = [
    "ASSERTION_ALGS",
    "PrivateKeyJwt",
    "S256Only",
    "SmartAuthorizationCode",
    "SmartClientCredentials",
    "SmartOpenIDCode",
    "SmartRefreshToken",
]

#: client assertion algorithms (SMART Backend Services: RS384 and ES384 SHALL be supported)
ASSERTION_ALGS = ["RS384", "ES384", "RS256", "ES256"]
#: every client authentication method, in the order tried
AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE (RFC 7636) required for every client, S256 only."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


class SmartAuthorizationCode(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: AuthServer
    request: OAuthRequest

    def validate_authorization_request(self) -> str:
        req = self.request
        if not req.payload.redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri' in request.")
        redirect_uri: str = super().validate_authorization_request()
        try:
            self._validate_smart()
        except OAuth2Error as err:
            err.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _validate_smart(self) -> None:
        req = self.request
        data = req.payload.data
        aud = data.get("aud")
        if not aud or not _same_url(aud, req.urls.fhir_base):
            raise InvalidRequestError(f"'aud' must be this server's FHIR base {req.urls.fhir_base}")
        try:
            requested = parse_scopes(req.scope)
        except InvalidScope as exc:
            raise InvalidScopeError(str(exc)) from exc
        kept = [n for n in requested.names if not n.startswith("system/")]
        if not kept:
            raise InvalidScopeError("no scope requested that an app acting for a user may have")
        req.scope = " ".join(kept)
        req.launch_context = None
        if "launch" in kept:
            launch = data.get("launch")
            if not launch:
                raise InvalidRequestError("The 'launch' scope needs the 'launch' parameter")
            ctx = self.server.accounts.launches.resolve(launch)
            if ctx is None or (ctx.client_id and ctx.client_id != req.client.get_client_id()):
                raise InvalidRequestError("Unknown or expired 'launch'")
            req.launch_context = ctx

    def save_authorization_code(self, code: str, request: OAuthRequest) -> None:
        data = request.payload.data
        self.server.accounts.codes.issue(
            code=code,
            client_id=request.client.get_client_id(),
            user_id=request.user.id,
            scope=request.scope,
            code_challenge=data["code_challenge"],
            code_challenge_method="S256",
            redirect_uri=request.payload.redirect_uri,
            context=request.smart_context,
            nonce=data.get("nonce"),
            auth_time=request.auth_time or int(time.time()),
            ttl_s=self.server.config.code_ttl_s,
        )

    def query_authorization_code(self, code: str, client: OAuthClient) -> CodeRecord | None:
        res = self.server.accounts.codes.consume(code, client.get_client_id())
        if res.reused_grant is not None:
            self.server.revoke_grant(res.reused_grant, "authorization code reused")
            return None
        return CodeRecord(res.code) if res.code is not None else None

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        return None  # consumed (marked used) when it was presented

    def authenticate_user(self, authorization_code: CodeRecord) -> Any:
        user = self.server.accounts.users.get(authorization_code.code.user_id)
        return user if user is not None and not user.disabled else None

    @hooked  # type: ignore[misc]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        req = self.request
        code: CodeRecord = req.authorization_code
        user = self.authenticate_user(code)
        if not user:
            raise InvalidGrantError("There is no 'user' for this code.")
        req.user = user
        token = self.server.issue_tokens(
            req,
            client=req.client,
            user=user,
            scope=code.code.scope,
            context=code.code.context,
            grant_id=code.code.grant_id,
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """id_token for ``openid``; ``fhirUser`` claim for ``fhirUser``."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False  # a nonce is bound to one code, and codes are single use

    def encode_id_token(self, token: dict[str, Any], request: OAuthRequest) -> str:
        server: AuthServer = request.server
        alg, key = server.accounts.keys.signing_key()
        user = request.user
        code: CodeRecord | None = request.authorization_code
        now = int(time.time())
        scope = parse_scopes(token.get("scope", ""))
        claims: dict[str, Any] = {
            "iss": request.urls.issuer,
            "sub": user.id,
            "aud": request.client.get_client_id(),
            "iat": now,
            "exp": now + server.config.id_token_ttl_s,
            "auth_time": code.get_auth_time() if code else now,
        }
        if code and code.get_nonce():
            claims["nonce"] = code.get_nonce()
        if "fhirUser" in scope and user.fhir_user:
            claims["fhirUser"] = f"{request.urls.fhir_base}/{user.fhir_user}"
        if "profile" in scope or "fhirUser" in scope:
            if user.display_name:
                claims["name"] = user.display_name
            if user.locale:
                claims["locale"] = user.locale
        at_hash = create_half_hash(token["access_token"], alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode()
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, [alg])


class SmartRefreshToken(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: AuthServer
    request: OAuthRequest

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        rt = self.server.accounts.refresh_tokens.find(refresh_token)
        if rt is None or rt.revoked:
            return None
        if rt.rotated is not None:  # used before: a copy is being replayed
            self.server.revoke_grant(rt.family_id, "rotated refresh token reused")
            return None
        if not rt.active:
            return None
        return RefreshRecord(rt)

    def _validate_token_scope(self, token: RefreshRecord) -> None:
        scope = self.request.payload.scope
        if not scope:
            return
        try:
            granted, requested = parse_scopes(token.get_scope()), parse_scopes(scope)
        except InvalidScope as exc:
            raise InvalidScopeError(str(exc)) from exc
        if not granted.covers(requested):
            raise InvalidScopeError("A refresh may narrow the scope, never widen it")

    def authenticate_user(self, refresh_token: RefreshRecord) -> Any:
        user_id = refresh_token.token.user_id
        user = self.server.accounts.users.get(user_id) if user_id else None
        return user if user is not None and not user.disabled else None

    @hooked  # type: ignore[misc]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        req = self.request
        record: RefreshRecord = req.refresh_token
        rt = record.token
        user = self.authenticate_user(record)
        if not user:
            raise InvalidGrantError("There is no 'user' for this token.")
        if not self.server.accounts.refresh_tokens.rotate(rt.token_hash):
            self.server.revoke_grant(rt.family_id, "refresh token used twice")
            raise InvalidGrantError("The refresh token was already used")
        req.user = user
        token = self.server.issue_tokens(
            req,
            client=req.client,
            user=user,
            scope=req.payload.scope or rt.scope,
            refresh_scope=rt.scope,
            context=rt.context,
            grant_id=rt.family_id,
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        return None  # rotated in create_token_response


class SmartClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS[:3]
    server: AuthServer
    request: OAuthRequest

    def validate_token_request(self) -> None:
        super().validate_token_request()
        req = self.request
        try:
            requested = parse_scopes(req.payload.scope)
        except InvalidScope as exc:
            raise InvalidScopeError(str(exc)) from exc
        granted = req.client.record.scope_set.covering(requested)
        kept = [n for n in granted.names if n.startswith("system/")]
        if not kept:
            raise InvalidScopeError("Request system/ scopes this client is registered for")
        req.scope = " ".join(kept)

    @hooked  # type: ignore[misc]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        req = self.request
        token = self.server.issue_tokens(
            req, client=req.client, user=None, scope=req.scope, context={}, grant_id=None
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` for one request (the token endpoint URL is the request's)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: AuthServer, request: OAuthRequest) -> None:
        super().__init__(validate_jti=True, leeway=server.config.leeway_s)
        self.server = server
        self.urls = request.urls

    def get_audiences(self) -> list[str]:
        return [self.urls.token, self.urls.issuer]

    def resolve_client_public_key(self, client: OAuthClient) -> Any:
        record = client.record
        if record.type != "confidential-asymmetric":
            raise InvalidClientError(description="The client has no registered keys")
        if record.jwks is not None:
            return KeySet.import_key_set(record.jwks)  # type: ignore[arg-type]
        uri = record.jwks_uri
        assert uri is not None
        cache = self.server.jwks_cache

        def resolve(obj: Any) -> Any:
            kid = obj.headers().get("kid")
            keyset = cache.keyset(uri, kid)
            return keyset.get_by_kid(kid) if kid else keyset

        return resolve

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGS)
        except (JoseError, JwksError) as exc:
            raise InvalidClientError(description=f"Invalid client assertion: {exc}") from exc
        claims: dict[str, Any] = token.claims
        self.verify_claims(claims)
        return claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        limit = time.time() + self.server.config.max_assertion_lifetime_s + self.leeway
        if isinstance(exp, int | float) and exp > limit:
            raise InvalidClientError(
                description="The client assertion must expire within five minutes"
            )
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self.server.accounts.assertion_ids.first_use(
            str(claims["sub"]), str(jti), int(claims["exp"]) + self.leeway
        )
