"""Bearer access tokens on API requests (RFC 6750, https://www.rfc-editor.org/rfc/rfc6750):
the bridge the enforcement step uses.

:func:`token_info` reads ``Authorization: Bearer …`` and verifies the token for this FHIR base
(our issuer, or the configured external one). Our keys are cached in memory, so in the steady
state verification is pure CPU and runs in the event loop; a token of the external issuer
(whose JWKS may have to be fetched) or a cold key cache goes to the thread pool.
An invalid token is a 401 with ``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ehr.accounts import InvalidToken, TokenInfo
from ehr.accounts.tokens import unverified_claims
from ehr.errors import FhirError

from ..deps import base_url
from .adapter import Urls

__all__ = ["token_info", "unauthorized"]


def unauthorized(description: str, error: str | None = "invalid_token") -> FhirError:
    challenge = 'Bearer realm="fhir"'
    if error:
        safe = description.replace('"', "'")
        challenge += f', error="{error}", error_description="{safe}"'
    return FhirError(401, "login", description, headers={"WWW-Authenticate": challenge})


async def token_info(request: Request, *, check_revoked: bool = False) -> TokenInfo | None:
    """The request's verified access token; None when it carries none; FhirError 401 when it
    is not acceptable (``check_revoked``: also refuse a revoked one, one database lookup)."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authorization must be 'Bearer <access token>'", "invalid_request")
    state: Any = request.app.state
    auth = state.auth
    urls = Urls.build(await base_url(request), state.prefix, auth.config.issuer)
    try:
        ours = unverified_claims(token).get("iss") == urls.issuer
        if ours and auth.accounts.keys.keys_cached():
            info: TokenInfo = auth.verify_token(token, urls)
        else:
            info = await run_in_threadpool(auth.verify_token, token, urls)
    except InvalidToken as exc:
        raise unauthorized(exc.reason) from exc
    if check_revoked and await run_in_threadpool(auth.is_revoked, info):
        raise unauthorized("token revoked")
    return info
