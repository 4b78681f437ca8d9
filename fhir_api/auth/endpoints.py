"""Token introspection (RFC 7662, https://www.rfc-editor.org/rfc/rfc7662) and revocation
(RFC 7009, https://www.rfc-editor.org/rfc/rfc7009) on Authlib's endpoint classes.

* Introspection is for confidential clients (resource servers): a client may introspect the
  tokens issued to it; a client registered with the ``introspect`` scope may introspect any.
  An expired, revoked, rotated, unknown or foreign token answers ``{"active": false}``.
* Revocation accepts an access token (its ``jti`` is listed as revoked until it expires) or a
  refresh token (its whole grant is revoked: refresh tokens and the access tokens issued in it).
  Any client, public ones included, may revoke its own tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ehr.accounts import InvalidToken

from .grants import AUTH_METHODS
from .models import AccessTokenRecord, OAuthClient, RefreshRecord

if TYPE_CHECKING:
    from .adapter import OAuthRequest
    from .server import AuthServer

__all__ = ["SmartIntrospection", "SmartRevocation"]

Record = AccessTokenRecord | RefreshRecord


def _query_token(
    server: AuthServer, request: OAuthRequest, token: str, hint: str | None
) -> Record | None:
    if hint != "refresh_token" and token.count(".") == 2:
        try:
            info = server.verify_token(token, request.urls)
        except InvalidToken:
            return None
        return AccessTokenRecord(info, server.is_revoked(info))
    if hint == "access_token":
        return None
    rt = server.accounts.refresh_tokens.find(token)
    return RefreshRecord(rt) if rt is not None else None


class SmartIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS[:3]
    server: AuthServer

    def authenticate_token(self, request: OAuthRequest, client: OAuthClient) -> Record | None:
        self.check_params(request, client)
        token = _query_token(
            self.server, request, request.form["token"], request.form.get("token_type_hint")
        )
        if token and self.check_permission(token, client, request):
            return token
        return None

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        raise NotImplementedError  # authenticate_token needs the request (for our URLs)

    def check_permission(self, token: Record, client: OAuthClient, request: Any) -> bool:
        return token.client_id == client.get_client_id() or "introspect" in client.record.scope_set

    def introspect_token(self, token: Record) -> dict[str, Any]:
        issuer = token.info.issuer if isinstance(token, AccessTokenRecord) else ""
        return token.introspect(issuer)


class SmartRevocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: AuthServer

    def authenticate_token(self, request: OAuthRequest, client: OAuthClient) -> Record | None:
        self.check_params(request, client)
        token = _query_token(
            self.server, request, request.form["token"], request.form.get("token_type_hint")
        )
        if token is not None and not token.check_client(client):
            return None  # RFC 7009 section 2.2: answer 200 and do nothing
        return token

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        raise NotImplementedError

    def revoke_token(self, token: Record, request: Any) -> None:
        accounts = self.server.accounts
        if isinstance(token, AccessTokenRecord):
            if token.info.jti:
                accounts.revocations.revoke_token(
                    token.info.jti, (token.info.expires_at + 3600) * 1_000_000, "revoked by client"
                )
        else:
            self.server.revoke_grant(token.token.family_id, "refresh token revoked by client")
