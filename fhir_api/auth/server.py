"""The authorization server: Authlib's ``AuthorizationServer`` wired to our account store, our
grants and endpoints, and to Starlette responses; token issuance; token verification.

Token response (https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5):
``access_token`` (a JWT signed with our current key, see :mod:`ehr.accounts.tokens`),
``token_type`` Bearer, ``expires_in``, ``scope``, the launch context (``patient``,
``encounter``, ``need_patient_banner``, ``smart_style_url`` and any ``intent``/``fhirContext``),
``id_token`` for ``openid``, and ``refresh_token`` for ``offline_access`` / ``online_access``.

Witness assertions (双人核对, ``POST /auth/witness``): :meth:`AuthServer.issue_witness` signs a
short-lived ``witness+jwt`` (claims in :mod:`ehr.accounts.tokens`) once a second clinician has
signed in on the first one's device; :meth:`AuthServer.witness_for` verifies one given back with
an API request (signature, issuer, audience, expiry, purpose; the witness's account still active
staff; requested by this request's user and not witnessed by them).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidScopeError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ehr.accounts import (
    AccountStore,
    InvalidScope,
    JwksCache,
    TokenInfo,
    TokenVerifier,
    TrustedIssuer,
    User,
    parse_scopes,
)
from ehr.accounts.tokens import (
    EXTERNAL_ALGS,
    WITNESS_TYP,
    InvalidToken,
    WitnessAssertion,
    sign_jwt,
    verify_id_token_hint,
    verify_witness_assertion,
)
from ehr.errors import FhirError
from ehr.model import loads
from ehr.store import Store

from ..deps import base_url
from .adapter import HttpRequest, OAuthRequest, Urls
from .bearer import token_info
from .config import AuthSettings, account_store
from .endpoints import SmartIntrospection, SmartRevocation
from .grants import (
    PrivateKeyJwt,
    S256Only,
    SmartAuthorizationCode,
    SmartClientCredentials,
    SmartOpenIDCode,
    SmartRefreshToken,
)
from .models import OAuthClient
from .session import SESSION_COOKIE, Signer

__all__ = ["AuthServer"]

log = logging.getLogger("fhir_api.auth")

US = 1_000_000
#: extra launch-context keys passed through to the token response
PASSTHROUGH = ("need_patient_banner", "smart_style_url", "intent", "fhirContext", "tenant")
#: roles that may ask for, and give, a witness assertion (clinical staff with a Practitioner)
WITNESS_ROLES = ("nurse", "practitioner")
#: lifetime of a witness assertion: the double check happens at the bedside, now
WITNESS_TTL_S = 300


class AuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        config: AuthSettings | None = None,
        accounts: AccountStore | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.config = config or AuthSettings()
        self.accounts = accounts or account_store(store.engine, self.config)
        self.jwks_cache = JwksCache()
        #: ``fn(event, data)`` called on every security event (for the audit trail): login
        #: (ok | invalid | locked), token (issued), grant-revoked, oauth-error (a refusal)
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.register_client_auth_method("private_key_jwt", self._private_key_jwt)
        self.register_grant(SmartAuthorizationCode, [S256Only(required=True), SmartOpenIDCode()])
        self.register_grant(SmartRefreshToken)
        self.register_grant(SmartClientCredentials)
        self.register_endpoint(SmartIntrospection)
        self.register_endpoint(SmartRevocation)

    # -- Authlib framework hooks -------------------------------------------------------------
    def query_client(self, client_id: str) -> OAuthClient | None:
        if not isinstance(client_id, str) or len(client_id) > 64:
            return None
        record = self.accounts.clients.get(client_id)
        return OAuthClient(record) if record is not None and not record.disabled else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        return None  # refresh tokens are stored when issued; access tokens are self-contained

    def create_oauth2_request(self, request: Any) -> OAuthRequest:
        if isinstance(request, OAuthRequest):
            return request
        assert isinstance(request, HttpRequest)
        req = OAuthRequest(request)
        req.server = self
        return req

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> Response:
        hdrs = dict(headers)
        if isinstance(body, dict):
            hdrs.pop("Content-Type", None)
            return Response(
                orjson.dumps(body), status_code=status, headers=hdrs, media_type="application/json"
            )
        return Response(body or b"", status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("auth signal %s", name)

    def handle_error_response(self, request: Any, error: Any) -> Response:
        payload = getattr(request, "payload", None)
        http = getattr(request, "http", None)
        self.emit(
            "oauth-error",
            error=error.error,
            description=error.get_error_description(),
            client_id=payload.client_id if payload is not None else None,
            ip=http.client_ip if http is not None else None,
        )
        return super().handle_error_response(request, error)  # type: ignore[no-any-return]

    def emit(self, event: str, **data: Any) -> None:
        """Tell the listeners (they must not raise; a failing one is logged and skipped)."""
        for fn in self.listeners:
            try:
                fn(event, data)
            except Exception:
                log.exception("auth listener failed on %s", event)

    def validate_requested_scope(self, scope: str | None) -> None:
        try:
            parse_scopes(scope)
        except InvalidScope as exc:
            raise InvalidScopeError(str(exc)) from exc

    def _private_key_jwt(self, query_client: Any, request: OAuthRequest) -> Any:
        return PrivateKeyJwt(self, request)(query_client, request)

    # -- login session and launch context ----------------------------------------------------
    @property
    def signer(self) -> Signer:
        return Signer(self.accounts.keys.shared_secret("session"))

    def session_user(self, http: HttpRequest) -> tuple[User, int] | None:
        """The logged-in user (and when they logged in), from the session cookie."""
        payload = self.signer.unsign(http.cookies.get(SESSION_COOKIE))
        if payload is None or not isinstance(payload.get("uid"), str):
            return None
        user = self.accounts.users.get(payload["uid"])
        if user is None or user.disabled:
            return None
        return user, int(payload.get("at", 0))

    def launch_context(
        self, request: OAuthRequest, user: User, chosen_patient: str | None
    ) -> tuple[dict[str, Any], bool]:
        """The context a token will carry, and whether a clinician must still pick a patient.

        A citizen's patient context is always their own Patient. A clinician gets the EHR
        launch's patient, else the one they pick (``launch/patient``)."""
        scope = parse_scopes(request.scope)
        launch = request.launch_context
        ctx: dict[str, Any] = {"need_patient_banner": True}
        if launch is not None:
            if launch.user_id and launch.user_id != user.id:
                raise AccessDeniedError("This launch was made for another user")
            ctx.update({k: v for k, v in launch.extra.items() if k in PASSTHROUGH})
            if launch.patient:
                ctx["patient"] = launch.patient
            if launch.encounter:
                ctx["encounter"] = launch.encounter
        wants_patient = "launch/patient" in scope or "patient" in scope.contexts()
        if user.role == "citizen":
            own = user.patient_id
            if ctx.get("patient") not in (None, own):
                raise AccessDeniedError("A citizen can only launch with their own record")
            if (wants_patient or ctx.get("patient")) and own:
                ctx["patient"] = own
                if "launch/patient" in scope and (launch is None or not launch.patient):
                    return self._citizen_choice(ctx, own, chosen_patient)
            return ctx, False
        if "launch/patient" in scope and not ctx.get("patient"):
            if chosen_patient and self._patient_exists(chosen_patient):
                ctx["patient"] = chosen_patient
                return ctx, False
            return ctx, True
        return ctx, False

    def _citizen_choice(
        self, ctx: dict[str, Any], own: str, chosen: str | None
    ) -> tuple[dict[str, Any], bool]:
        """A citizen who may act for others (a child: :func:`family_of`) picks whom the app is
        for: themselves or one of them. The token then carries that Patient and, for a proxy,
        ``acting_for`` (the RelatedPerson that allows it, checked again here)."""
        family = self.family_of(own)
        if not family:
            return ctx, False
        if chosen == own:
            return ctx, False
        if chosen in family:
            ctx["patient"] = chosen
            ctx["acting_for"] = f"RelatedPerson/{family[chosen]}"
            return ctx, False
        return ctx, True

    def family_of(self, own: str) -> dict[str, str]:
        """Patient id -> RelatedPerson id of the patients the citizen ``Patient/own`` may act
        for today (:func:`appointments.actors.proxy_for`: an active RelatedPerson carrying the
        citizen's protected citizen-ID identifier, whose period covers today)."""
        from appointments.actors import Actor, proxy_for
        from appointments.fhirdata import CST, Reader
        from ehr.identifiers import CITIZEN_ID_HASH_SYSTEM

        today = datetime.now(CST).date()
        out: dict[str, str] = {}
        with Reader.open(self.store) as reader:
            me = reader.get("Patient", own) or {}
            hashes = [
                str(i["value"])
                for i in me.get("identifier") or ()
                if i.get("system") == CITIZEN_ID_HASH_SYSTEM and i.get("value")
            ]
            for value in hashes[:1]:
                found = reader.find(
                    "RelatedPerson", [("identifier", f"{CITIZEN_ID_HASH_SYSTEM}|{value}")], limit=20
                )
                for rp in found:
                    ref = str((rp.get("patient") or {}).get("reference") or "")
                    pid = ref.split("/", 1)[1] if ref.startswith("Patient/") else None
                    if not pid or pid == own or pid in out:
                        continue
                    allowed = proxy_for(reader, Actor.citizen(own), pid, today)
                    if allowed is not None and reader.get("Patient", pid) is not None:
                        out[pid] = str(allowed["id"])
        return out

    def patient_choices(self, user: User, query: str) -> list[tuple[str, str]]:
        """The consent page's patient picker: a citizen's own record and those they act for
        (no search); a clinician's search results."""
        if user.role == "citizen" and user.patient_id:
            own = user.patient_id
            return [
                (own, self.patient_label(own)),
                *((pid, self.patient_label(pid)) for pid in self.family_of(own)),
            ]
        return self.find_patients(query)

    def _patient_exists(self, rid: str) -> bool:
        try:
            return self.store.exists("Patient", rid)
        except FhirError:
            return False

    def patient_label(self, rid: str) -> str:
        try:
            return _patient_label(self.store.read("Patient", rid).data, rid)
        except FhirError:
            return rid

    def find_patients(self, query: str, limit: int = 10) -> list[tuple[str, str]]:
        """Patients matching a name (or an identifier), for the clinician's picker."""
        query = query.strip()[:100]
        if not query:
            return []
        found: dict[str, str] = {}
        for params in ([("name", query)], [("identifier", query)]):
            try:
                page = self.store.search("Patient", [*params, ("_count", str(limit))])
            except FhirError:
                continue
            for hit in page.matches:
                found.setdefault(hit.rid, _patient_label(hit.data, hit.rid))
        return list(found.items())[:limit]

    # -- tokens --------------------------------------------------------------------------------
    def issue_tokens(
        self,
        request: OAuthRequest,
        *,
        client: OAuthClient,
        user: User | None,
        scope: str,
        context: dict[str, Any],
        grant_id: str | None,
        refresh_scope: str | None = None,
    ) -> dict[str, Any]:
        """The token response of one grant; a refresh token (same family) for
        ``offline_access``/``online_access`` when the client may refresh."""
        c = self.config
        urls = request.urls
        alg, key = self.accounts.keys.signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": urls.issuer,
            "aud": urls.fhir_base,
            "sub": user.id if user else client.get_client_id(),
            "client_id": client.get_client_id(),
            "scope": scope,
            "iat": now,
            "exp": now + c.access_token_ttl_s,
            "jti": uuid.uuid4().hex,
        }
        if grant_id:
            claims["gid"] = grant_id
        if user is not None:
            if user.fhir_user:
                claims["fhirUser"] = f"{urls.fhir_base}/{user.fhir_user}"
            claims["role"] = user.role
            if user.organization:
                claims["organization"] = user.organization
            if user.practitioner_role:
                claims["practitioner_role"] = user.practitioner_role
        for k in ("patient", "encounter", "acting_for"):
            if context.get(k):
                claims[k] = context[k]
        token: dict[str, Any] = {
            "access_token": sign_jwt(claims, alg, key, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": c.access_token_ttl_s,
            "scope": scope,
        }
        for k in ("patient", "encounter", *PASSTHROUGH):
            if context.get(k) is not None:
                token[k] = context[k]
        if user is not None:
            token.setdefault("need_patient_banner", True)
            if c.smart_style_url:
                token.setdefault("smart_style_url", c.smart_style_url)
        rscope = parse_scopes(refresh_scope or scope)
        wants = "offline_access" in rscope or "online_access" in rscope
        if wants and grant_id and client.check_grant_type("refresh_token"):
            ttl = c.offline_refresh_ttl_s if "offline_access" in rscope else c.online_refresh_ttl_s
            token["refresh_token"] = self.accounts.refresh_tokens.issue(
                family_id=grant_id,
                client_id=client.get_client_id(),
                user_id=user.id if user else None,
                scope=str(rscope),
                context=context,
                ttl_s=ttl,
            )
        self.emit(
            "token",
            grant_type=request.payload.grant_type,
            client_id=client.get_client_id(),
            user_id=user.id if user else None,
            scope=scope,
            patient=context.get("patient"),
            jti=claims["jti"],
            ip=request.http.client_ip,
        )
        return token

    def revoke_grant(self, grant_id: str, reason: str) -> None:
        """Revoke a grant's refresh tokens and its access tokens (until they would expire)."""
        log.warning("revoking grant %s: %s", grant_id, reason)
        self.emit("grant-revoked", grant_id=grant_id, reason=reason)
        until = (int(time.time()) + self.config.access_token_ttl_s + 3600) * US
        self.accounts.revoke_grant(grant_id, until, reason)

    def verifier(self, urls: Urls) -> TokenVerifier:
        """Verifies our tokens (keys from the database, cached) and the external issuer's."""
        c = self.config
        issuers = [TrustedIssuer(urls.issuer, self.accounts.keys.public_keyset)]
        if c.external_issuer and c.external_jwks_url:
            cache, jwks_url = self.jwks_cache, c.external_jwks_url

            def external_keys(kid: str | None) -> Any:
                return cache.keyset(jwks_url, kid)

            issuers.append(
                TrustedIssuer(
                    c.external_issuer,
                    external_keys,
                    algorithms=EXTERNAL_ALGS,
                    audience=c.external_audience or None,
                    external=True,
                )
            )
        return TokenVerifier(issuers, leeway=c.leeway_s)

    def verify_token(self, token: str, urls: Urls) -> TokenInfo:
        """Verify a bearer access token for this FHIR base (raises :class:`InvalidToken`)."""
        return self.verifier(urls).verify(token, urls.fhir_base)

    def id_token_hint(self, hint: str, urls: Urls) -> tuple[str, list[str]]:
        """``(user id, client ids)`` of an id_token we issued, given back to end a session
        (raises :class:`InvalidToken`)."""
        return verify_id_token_hint(hint, self.accounts.keys.public_keyset, issuer=urls.issuer)

    # -- witness assertions (双人核对) ---------------------------------------------------------
    def issue_witness(
        self, urls: Urls, witness: User, requester: TokenInfo, purpose: str
    ) -> tuple[str, dict[str, Any]]:
        """``(assertion, claims)``: ``witness`` (signed in just now) witnessed ``purpose`` for
        the user of ``requester``'s access token."""
        alg, key = self.accounts.keys.signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": urls.issuer,
            "aud": urls.fhir_base,
            "sub": witness.id,
            "fhirUser": f"{urls.fhir_base}/{witness.fhir_user}",
            "role": witness.role,
            "purpose": purpose,
            "act": {"sub": requester.subject, "client_id": requester.client_id},
            "iat": now,
            "exp": now + WITNESS_TTL_S,
            "jti": uuid.uuid4().hex,
        }
        return sign_jwt(claims, alg, key, typ=WITNESS_TYP), claims

    def verify_witness(self, token: str, urls: Urls, purpose: str) -> WitnessAssertion:
        """A witness assertion we issued for ``purpose``, whose witness is still an active
        staff account (raises :class:`InvalidToken`)."""
        found = verify_witness_assertion(
            token,
            self.accounts.keys.public_keyset,
            issuer=urls.issuer,
            audience=urls.fhir_base,
            purpose=purpose,
            leeway=self.config.leeway_s,
        )
        user = self.accounts.users.get(found.subject)
        if user is None or user.disabled or user.role not in WITNESS_ROLES:
            raise InvalidToken("the witness's account is not active clinical staff")
        if user.fhir_user != f"Practitioner/{found.practitioner}":
            raise InvalidToken("the witness's account is not that Practitioner's")
        return found

    async def witness_for(self, request: Request, token: str, purpose: str) -> WitnessAssertion:
        """The witness assertion ``token`` given with API ``request`` for ``purpose``: valid
        (:meth:`verify_witness`), asked for by the user of the request's access token, and not
        witnessed by that same user (raises :class:`InvalidToken`)."""
        state: Any = request.app.state
        urls = Urls.build(await base_url(request), state.prefix, self.config.issuer)
        info = await token_info(request)
        found = await run_in_threadpool(self.verify_witness, token, urls, purpose)
        if info is None or found.requested_by != info.subject:
            raise InvalidToken("the witness assertion was asked for by another user")
        if found.subject == info.subject:
            raise InvalidToken("the witness is the acting user")
        return found

    def is_revoked(self, info: TokenInfo) -> bool:
        """The one database lookup that makes a revocation effective before expiry."""
        return (not info.external) and self.accounts.revocations.is_revoked(info.jti, info.grant_id)


def _patient_label(data: bytes, rid: str) -> str:
    """``张伟 · female · 1980-02-03`` (Chinese names family first, without a space)."""
    res = loads(data)
    n = (res.get("name") or [{}])[0]
    family, given = n.get("family", ""), n.get("given", [])
    cjk = any("\u4e00" <= ch <= "\u9fff" for ch in family + "".join(given))
    name = n.get("text") or (family + "".join(given) if cjk else " ".join([*given, family]).strip())
    parts = [name or rid, res.get("gender", ""), res.get("birthDate", "")]
    return " · ".join(p for p in parts if p)
