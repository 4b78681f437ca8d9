"""HTTP routes of the authorization server (all public: no access token needed).

=========================================================  ====================================
``GET  {fhir base}/.well-known/smart-configuration``       SMART discovery (MUST be under the
                                                           FHIR base)
``GET  /auth/.well-known/openid-configuration``            OpenID Connect discovery (issuer
``GET  /.well-known/openid-configuration``                 ``{root}/auth``; also at the root)
``GET  /auth/jwks``                                        our public signing keys
``GET|POST /auth/authorize``                               authorization endpoint: login
                                                           redirect, consent page, code
``GET|POST /auth/login``, ``POST /auth/logout``            login page and form
``GET|POST /auth/end-session``                             OIDC RP-Initiated Logout (an app's
                                                           sign-out ends the login session)
``POST /auth/token``                                       token endpoint (all grants)
``POST /auth/introspect``                                  RFC 7662
``POST /auth/revoke``                                      RFC 7009
``POST /auth/witness``                                     a second clinician's signature for a
                                                           double check (双人核对): Bearer token
                                                           of the first one; a witness JWT
=========================================================  ====================================

The endpoints are plain functions run in the thread pool (Authlib and the store are
synchronous); :func:`~.adapter.read_request` has read the body before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import orjson
from authlib.oauth2.rfc6749 import InsecureTransportError, OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ehr.accounts.tokens import InvalidToken, TokenInfo

from .adapter import HttpRequest, OAuthRequest, read_request
from .discovery import openid_configuration, smart_configuration
from .i18n import describe_scope, pick_lang, t
from .pages import consent_page, error_page, login_page, message_page
from .server import WITNESS_ROLES, WITNESS_TTL_S, AuthServer
from .session import (
    CSRF_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    csrf_cookie,
    set_cookie,
)

__all__ = ["router"]

#: the longest ``purpose`` of a witness assertion
MAX_PURPOSE = 200
#: authorization request parameters never echoed back into pages or redirects
PRIVATE = {"csrf", "decision", "patient", "password", "username", "lang", "next"}
CORS = {"Access-Control-Allow-Origin": "*"}


async def get_auth(request: Request) -> AuthServer:
    auth: AuthServer = request.app.state.auth
    return auth


HttpDep = Annotated[HttpRequest, Depends(read_request)]
AuthDep = Annotated[AuthServer, Depends(get_auth)]


def _json(body: Any, *, cache: str = "no-store", status: int = 200, cors: bool = True) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**(CORS if cors else {}), "Cache-Control": cache},
    )


def _lang(http: HttpRequest) -> str:
    return pick_lang(http.param("lang"), http.param("ui_locales"), http.cookies.get(LANG_COOKIE))


def _switch_url(http: HttpRequest, lang: str) -> str:
    """This page in the other language (GET, without any secret)."""
    pairs = http.query if http.method == "GET" else http.form or http.query
    keep = [
        (k, v) for k, v in pairs if k not in ("lang", "csrf", "password", "username", "decision")
    ]
    other = "zh-CN" if lang == "en" else "en"
    return http.path + "?" + urlencode([*keep, ("lang", other)])


def _safe_next(http: HttpRequest, value: str | None) -> str | None:
    """A post-login target: only our own authorization endpoint, as a path."""
    if not value or "\\" in value or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != http.urls.auth_path + "/authorize":
        return None
    return value


def _locked(lang: str, retry_after_s: int) -> str:
    """The "account locked, try again in N minutes" text (N rounded up, at least 1)."""
    return t(lang, "locked", minutes=str(max(1, -(-retry_after_s // 60))))


def _finish(response: Response, http: HttpRequest, lang: str) -> Response:
    if http.param("lang"):
        set_cookie(response, http, LANG_COOKIE, lang, 365 * 86_400)
    return response


def _oauth(fn: Callable[[], Response]) -> Response:
    try:
        response = fn()
    except InsecureTransportError:
        return _json(
            {"error": "invalid_request", "error_description": "https is required"}, status=400
        )
    response.headers.update(CORS)
    return response


# -- discovery -------------------------------------------------------------------------------
def smart_config(http: HttpDep, auth: AuthDep) -> Response:
    return _json(smart_configuration(http.urls, auth.config.signing_alg), cache="max-age=300")


def openid_config(http: HttpDep, auth: AuthDep) -> Response:
    return _json(openid_configuration(http.urls, auth.config.signing_alg), cache="max-age=300")


def jwks(auth: AuthDep) -> Response:
    auth.accounts.keys.signing_key()  # make the first key if there is none yet
    return _json(auth.accounts.keys.jwks(), cache="max-age=300")


# -- token endpoints ---------------------------------------------------------------------------
def token(http: HttpDep, auth: AuthDep) -> Response:
    return _oauth(lambda: auth.create_token_response(http))


def introspect(http: HttpDep, auth: AuthDep) -> Response:
    return _oauth(lambda: auth.create_endpoint_response("introspection", http))


def revoke(http: HttpDep, auth: AuthDep) -> Response:
    return _oauth(lambda: auth.create_endpoint_response("revocation", http))


# -- witness (双人核对) ---------------------------------------------------------------------------
def _error(status: int, error: str, description: str, **headers: str) -> Response:
    """A witness endpoint's error (same origin only: no CORS headers)."""
    resp = _json({"error": error, "error_description": description}, status=status, cors=False)
    resp.headers.update(headers)
    return resp


async def witness_body(request: Request, http: HttpDep) -> dict[str, str]:
    """The fields of a JSON object body, else of the form (:func:`read_request`)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return {}
        return {k: v for k, v in body.items() if isinstance(k, str) and isinstance(v, str)}
    out: dict[str, str] = {}
    for k, v in http.form:
        out.setdefault(k, v)
    return out


def witness(
    http: HttpDep, auth: AuthDep, body: Annotated[dict[str, str], Depends(witness_body)]
) -> Response:
    """A second clinician witnesses an act of the first (双人核对 of a high-alert drug): the
    first one's app sends its access token (Bearer; role nurse or practitioner) with the second
    one's ``username`` and ``password`` and the ``purpose`` (e.g.
    ``administer:MedicationRequest/42``). The password is checked like the login form's (same
    throttling and lockouts, same answer for an unknown user and a wrong password; an audited
    ``login`` event); the answer is a witness assertion (:meth:`AuthServer.issue_witness`):
    ``{"witness_token", "token_type": "witness+jwt", "expires_in", "purpose", "fhirUser",
    "display_name"}``. Errors are OAuth-style JSON: 400 invalid_request, 401 invalid_token (the
    Bearer token) or invalid_grant (the password), 403 access_denied, 429 (locked). Only for the
    apps served from this origin: no CORS headers (a password is entered here)."""
    lang = pick_lang(body.get("lang"), http.headers.get("accept-language"))
    header = http.headers.get("authorization") or ""
    scheme, _, bearer = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not bearer.strip():
            raise InvalidToken("Authorization must be 'Bearer <access token>'")
        requester = auth.verify_token(bearer.strip(), http.urls)
        if auth.is_revoked(requester):
            raise InvalidToken("token revoked")
    except InvalidToken as exc:
        challenge = f'Bearer realm="fhir", error="invalid_token", error_description="{exc.reason}"'
        return _error(401, "invalid_token", exc.reason, **{"WWW-Authenticate": challenge})
    if requester.external or requester.role not in WITNESS_ROLES:
        return _error(403, "access_denied", t(lang, "witness_requester"))
    username, password = body.get("username") or "", body.get("password") or ""
    purpose = body.get("purpose") or ""
    if not username or not password or not purpose or len(purpose) > MAX_PURPOSE:
        return _error(400, "invalid_request", t(lang, "witness_fields", n=str(MAX_PURPOSE)))
    result = auth.accounts.users.authenticate(username, password, http.client_ip)
    user = result.user
    refusal = None
    if user is not None and (
        user.role not in WITNESS_ROLES or not (user.fhir_user or "").startswith("Practitioner/")
    ):
        refusal = "witness_not_staff"
    elif user is not None and user.id == requester.subject:
        refusal = "witness_self"
    issued = (
        auth.issue_witness(http.urls, user, requester, purpose)
        if user is not None and refusal is None
        else None
    )
    _witness_event(auth, http, requester, username, purpose, result.status, refusal, issued)
    if result.status == "locked":
        return _error(
            429,
            "temporarily_unavailable",
            _locked(lang, result.retry_after_s),
            **{"Retry-After": str(result.retry_after_s)},
        )
    if user is None:
        return _error(401, "invalid_grant", t(lang, "invalid"))
    if refusal is not None or issued is None:
        return _error(403, "access_denied", t(lang, refusal or "witness_not_staff"))
    token, claims = issued
    return _json(
        {
            "witness_token": token,
            "token_type": "witness+jwt",
            "expires_in": WITNESS_TTL_S,
            "purpose": purpose,
            "fhirUser": claims["fhirUser"],
            "display_name": user.display_name or user.username,
        },
        cors=False,
    )


def _witness_event(
    auth: AuthServer,
    http: HttpRequest,
    requester: TokenInfo,
    username: str,
    purpose: str,
    status: str,
    refusal: str | None,
    issued: tuple[str, dict[str, Any]] | None,
) -> None:
    """The witness's sign-in, as a ``login`` event (outcome ok | invalid | locked | refused)
    that names what was witnessed and for whom."""
    outcome = "refused" if status == "ok" and refusal else status
    auth.emit(
        "login",
        outcome=outcome,
        username=username[:150],
        user_id=issued[1]["sub"] if issued else None,
        client_id=requester.client_id,
        jti=issued[1]["jti"] if issued else None,
        ip=http.client_ip,
        reason=f"witness for user {requester.subject}: {purpose[:MAX_PURPOSE]}"
        + (f" ({refusal})" if refusal else ""),
    )


def preflight() -> Response:
    return Response(
        status_code=204,
        headers={
            **CORS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        },
    )


# -- login -------------------------------------------------------------------------------------
def _login_form(
    http: HttpRequest, auth: AuthServer, lang: str, *, error: str | None = None, status: int = 200
) -> Response:
    cookie, new = csrf_cookie(http)
    resp = login_page(
        lang,
        action=http.urls.login,
        csrf=auth.signer.csrf_token(cookie, "login"),
        next_url=_safe_next(http, http.param("next")) or "",
        switch_url=_switch_url(http, lang),
        username=(http.param("username") or "")[:150] if error else "",
        error=error,
        status=status,
    )
    if new:
        set_cookie(resp, http, CSRF_COOKIE, cookie, None)
    return _finish(resp, http, lang)


def login_get(http: HttpDep, auth: AuthDep) -> Response:
    return _login_form(http, auth, _lang(http))


def login_post(http: HttpDep, auth: AuthDep) -> Response:
    lang = _lang(http)
    if not auth.signer.check_csrf(http, "login"):
        return _login_form(http, auth, lang, error=t(lang, "csrf"), status=400)
    result = auth.accounts.users.authenticate(
        http.param("username") or "", http.param("password") or "", http.client_ip
    )
    auth.emit(
        "login",
        outcome=result.status,
        username=(http.param("username") or "")[:150],
        user_id=result.user.id if result.user else None,
        ip=http.client_ip,
    )
    if result.status == "locked":
        return _login_form(http, auth, lang, error=_locked(lang, result.retry_after_s), status=429)
    if result.user is None:
        return _login_form(http, auth, lang, error=t(lang, "invalid"), status=401)
    target = _safe_next(http, http.param("next"))
    resp: Response = (
        RedirectResponse(target, status_code=303)
        if target
        else message_page(lang, t(lang, "signed_in"), _switch_url(http, lang))
    )
    session = auth.signer.sign(
        {"uid": result.user.id, "at": int(time.time())}, auth.config.session_ttl_s
    )
    set_cookie(resp, http, SESSION_COOKIE, session, auth.config.session_ttl_s)
    return _finish(resp, http, lang)


def logout(http: HttpDep, auth: AuthDep) -> Response:
    lang = _lang(http)
    if not auth.signer.check_csrf(http, "logout"):
        return error_page(lang, t(lang, "csrf"), _switch_url(http, lang), 400)
    target = _safe_next(http, http.param("next"))
    resp: Response = (
        RedirectResponse(target, status_code=303)
        if target
        else message_page(lang, t(lang, "signed_out"), _switch_url(http, lang))
    )
    clear_cookie(resp, http, SESSION_COOKIE)
    return resp


def end_session(http: HttpDep, auth: AuthDep) -> Response:
    """OpenID Connect RP-Initiated Logout 1.0 (``end_session_endpoint``): an app's sign-out
    ends the login session too, so on a shared nurse station or workstation the next person to
    sign in gets the login page, not the previous user's consent page.

    ``id_token_hint`` is required: an id_token we issued (signature and issuer checked; an
    expired one is accepted, as the spec asks). It proves the request comes from an app the user
    signed in to, so no confirmation page is needed; the session is ended only if it is that
    user's. ``post_logout_redirect_uri`` must be one of the app's registered redirect URIs
    (``state`` is passed back); without it, a "signed out" page."""
    lang = _lang(http)
    switch = _switch_url(http, lang)
    try:
        user_id, audiences = auth.id_token_hint(http.param("id_token_hint") or "", http.urls)
    except InvalidToken:
        return error_page(lang, t(lang, "logout_hint"), switch, 400)
    client_id = http.param("client_id") or audiences[0]
    target = http.param("post_logout_redirect_uri")
    if target:
        client = auth.query_client(client_id) if client_id in audiences else None
        if client is None or not client.check_redirect_uri(target):
            return error_page(lang, t(lang, "logout_target"), switch, 400)
        if http.param("state"):
            target += ("&" if "?" in target else "?") + urlencode({"state": http.param("state")})
    resp: Response = (
        RedirectResponse(target, status_code=303)
        if target
        else message_page(lang, t(lang, "signed_out"), switch)
    )
    session = auth.session_user(http)
    if session is not None and session[0].id == user_id:
        clear_cookie(resp, http, SESSION_COOKIE)
        auth.emit("logout", outcome="ok", user_id=user_id, client_id=client_id, ip=http.client_ip)
    return _finish(resp, http, lang)


# -- authorization endpoint --------------------------------------------------------------------
def authorize(http: HttpDep, auth: AuthDep) -> Response:
    lang = _lang(http)
    switch = _switch_url(http, lang)
    session = auth.session_user(http)
    user = session[0] if session else None
    try:
        grant = auth.get_consent_grant(http, end_user=user)
    except InsecureTransportError:
        return error_page(lang, "https is required", switch)
    except OAuth2Error as err:
        if err.redirect_uri:  # the client and its redirect URI are known: tell the app
            return auth.handle_error_response(None, err)
        return error_page(lang, err.description or err.error, switch)
    req: OAuthRequest = grant.request
    params = [(k, v) for k, v in req.payload.data.items() if k not in PRIVATE]
    if user is not None and req.payload.data.get("prompt") == "none":
        # this server always asks: without a page to show, consent is missing
        missing = ConsentRequiredError(redirect_uri=grant.redirect_uri, state=req.payload.state)
        return auth.handle_error_response(req, missing)
    if user is None or session is None:
        target = http.urls.auth_path + "/authorize?" + urlencode(params)
        login = http.urls.login + "?" + urlencode({"next": target, "lang": lang})
        return RedirectResponse(login, status_code=303)
    chosen = http.param("patient") if http.method == "POST" else None
    try:
        context, must_pick = auth.launch_context(req, user, chosen)
    except OAuth2Error as err:
        err.redirect_uri = grant.redirect_uri
        err.state = req.payload.state
        return auth.handle_error_response(req, err)
    error = None
    if http.method == "POST" and any(k == "decision" for k, _ in http.form):
        if not auth.signer.check_csrf(http, f"consent|{user.id}"):
            return error_page(lang, t(lang, "csrf"), switch, 403)
        if http.param("decision") != "allow":
            return auth.create_authorization_response(req, grant_user=None, grant=grant)
        if not must_pick:
            req.smart_context = context
            req.auth_time = session[1]
            return auth.create_authorization_response(req, grant_user=user, grant=grant)
        error = t(lang, "must_pick")
    return _consent(http, auth, lang, req, user, params, context, must_pick, error)


def _consent(
    http: HttpRequest,
    auth: AuthServer,
    lang: str,
    req: OAuthRequest,
    user: Any,
    params: list[tuple[str, str]],
    context: dict[str, Any],
    must_pick: bool,
    error: str | None,
) -> Response:
    cookie, new = csrf_cookie(http)
    own = user.role == "citizen"
    query = http.param("patient_q") if must_pick and not own else None
    resp = consent_page(
        lang,
        action=http.urls.authorize,
        logout_action=http.urls.logout,
        logout_next=http.urls.auth_path + "/authorize?" + urlencode(params),
        app_name=req.client.record.name,
        user_name=user.display_name or user.username,
        permissions=[describe_scope(n, lang, own=own) for n in req.scope.split()],
        params=params,
        csrf=auth.signer.csrf_token(cookie, f"consent|{user.id}"),
        logout_csrf=auth.signer.csrf_token(cookie, "logout"),
        switch_url=_switch_url(http, lang),
        patient_label=(
            auth.patient_label(context["patient"])
            if context.get("patient") and not must_pick
            else None
        ),
        picker=auth.patient_choices(user, query or "") if must_pick else None,
        picker_query=query,
        picker_search=not own,
        error=error,
        status=400 if error else 200,
    )
    if new:
        set_cookie(resp, http, CSRF_COOKIE, cookie, None)
    return _finish(resp, http, lang)


def router(prefix: str = "/fhir") -> APIRouter:
    """The routes, with absolute paths: ``/auth/...``, ``/.well-known/...`` and
    ``{prefix}/.well-known/smart-configuration``. Mount them before the FHIR interaction
    routes (``{prefix}/{type}/{id}`` would otherwise catch the SMART configuration):
    :func:`fhir_api.auth.install` does that."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    r = APIRouter(tags=["SMART on FHIR authorization"])

    def add(path: str, endpoint: Callable[..., Any], methods: list[str], name: str) -> None:
        r.add_api_route(path, endpoint, methods=methods, name=name, include_in_schema=False)

    add(
        f"{prefix}/.well-known/smart-configuration",
        smart_config,
        ["GET"],
        "auth-smart-configuration",
    )
    add(
        "/auth/.well-known/openid-configuration",
        openid_config,
        ["GET"],
        "auth-openid-configuration",
    )
    add(
        "/.well-known/openid-configuration",
        openid_config,
        ["GET"],
        "auth-openid-configuration-root",
    )
    add("/auth/jwks", jwks, ["GET"], "auth-jwks")
    add("/auth/authorize", authorize, ["GET", "POST"], "auth-authorize")
    add("/auth/login", login_get, ["GET"], "auth-login-page")
    add("/auth/login", login_post, ["POST"], "auth-login")
    add("/auth/logout", logout, ["POST"], "auth-logout")
    add("/auth/end-session", end_session, ["GET", "POST"], "auth-end-session")
    add("/auth/token", token, ["POST"], "auth-token")
    add("/auth/introspect", introspect, ["POST"], "auth-introspect")
    add("/auth/revoke", revoke, ["POST"], "auth-revoke")
    add("/auth/witness", witness, ["POST"], "auth-witness")
    for path in ("/auth/token", "/auth/introspect", "/auth/revoke"):
        add(path, preflight, ["OPTIONS"], "auth-preflight")
    return r
