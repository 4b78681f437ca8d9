"""The authorizer of every FHIR route (``app.state.authorizer``, see :mod:`fhir_api.deps`).

For each request, before any work:

1. **Token** (RFC 6750): ``Authorization: Bearer <jwt>``, verified by the authorization server
   (:meth:`fhir_api.auth.AuthServer.verifier`: signature, issuer, audience = our FHIR base,
   expiry; our tokens and those of a configured external OpenID Connect issuer). A missing token
   is a 401 with ``WWW-Authenticate: Bearer realm="fhir"``; a bad one a 401 with
   ``error="invalid_token"``. A token's signature is checked once and the result cached until it
   expires; whether it was revoked is asked again after ``revocation_ttl_s`` (5 s).
   A clinician may add ``X-Break-Glass: <reason>`` (percent-encoded UTF-8, so Chinese text
   travels in an ASCII header) or carry a ``break_glass`` claim.
2. **Policy** (:class:`ehr.security.Policy`): scopes (403), then, in a worker thread when it
   needs the database, the instance check (404 for what the requester cannot see) and
   break-the-glass. A request that may read AuditEvents first brings the trail up to date.
3. The decision is handed down: ``ehr.security.current_guard`` (write checks in the store's
   hooks), ``ehr.search.engine.ambient_restriction`` (every search and conditional match of
   the request), ``request.state.check_bundle_entry`` (batch / transaction entries).

Public: ``capabilities`` (``/metadata``); the authorization server's routes and
``/.well-known/smart-configuration`` are not FHIR routes and never reach this.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from ehr.accounts import InvalidToken, TokenInfo, TokenVerifier
from ehr.errors import FhirError, NotFound
from ehr.search.engine import ambient_restriction
from ehr.security import ANONYMOUS, Guard, Policy, Principal, Target, current_guard
from ehr.security.audit import AuditTrail

from ..deps import Access, base_url
from ..limits import in_thread
from .context import audit_context

__all__ = ["OpenAuthorizer", "SmartAuthorizer", "target_of"]

PUBLIC = frozenset({"capabilities"})
REALM = 'Bearer realm="fhir"'


def _unauthorized(description: str | None = None) -> FhirError:
    if description is None:
        header = REALM
        text = "This request needs an access token (Authorization: Bearer …)"
    else:
        safe = description.replace('"', "'")[:200]
        header = f'{REALM}, error="invalid_token", error_description="{safe}"'
        text = f"The access token is not valid: {description}"
    return FhirError(401, "login", text, headers={"WWW-Authenticate": header})


def target_of(request: Request, access: Access) -> Target:
    """The policy's view of a route's :class:`~fhir_api.deps.Access`. For an ``$operation`` the
    name, type and id come from the path when the route has no ``rtype``/``rid`` parameters
    (``/Patient/$match``, ``/Patient/{rid}/$empi-link``)."""
    interaction = access.interaction
    operation = None
    rtype, rid = access.rtype, access.rid
    if interaction in ("operation", "export", "import"):
        prefix = request.app.state.prefix
        path = request.url.path[len(prefix) :] if request.url.path.startswith(prefix) else ""
        parts = [p for p in path.split("/") if p]
        named = [p for p in parts if p.startswith("$")]
        if named and not parts[-1].startswith("$"):  # $bulk-status/{job}, $bulk-files/{job}/{f}
            operation = named[0]
        elif parts and parts[-1].startswith("$"):
            operation = parts[-1]
            if rtype is None and len(parts) >= 2 and parts[0][:1].isupper():
                rtype = parts[0]
                if rid is None and len(parts) == 3:
                    rid = parts[1]
    conditional = (interaction in ("update", "patch", "delete") and access.rid is None) or (
        interaction == "create" and "if-none-exist" in request.headers
    )
    params: tuple[tuple[str, str], ...] = ()
    if interaction.startswith("search") or interaction in ("operation", "export", "import"):
        params = tuple(request.query_params.multi_items())
    vid = request.path_params.get("vid")
    return Target(
        interaction=interaction,
        rtype=rtype,
        rid=rid,
        compartment=access.compartment,
        conditional=conditional,
        operation=operation,
        params=params,
        version=str(vid) if vid is not None else None,
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _touches_audit(target: Target) -> bool:
    """May this request read AuditEvents (then the trail is synced first)?"""
    if target.rtype == "AuditEvent":
        return True
    if target.params and any("AuditEvent" in k + v for k, v in target.params):
        return True  # _include/_revinclude/_has naming AuditEvent
    if target.interaction == "search-system":
        types = {t for k, v in target.params if k == "_type" for t in v.split(",")}
        return not types or "AuditEvent" in types
    if target.compartment is not None and target.rtype is None:
        return True
    return target.interaction in ("operation", "export") and (target.operation or "") in (
        "$everything",
        "$export",
    )


class SmartAuthorizer:
    """``app.state.authorizer`` enforcing SMART on FHIR scopes and the security policy."""

    def __init__(
        self,
        policy: Policy,
        *,
        auth: Any,
        trail: AuditTrail | None,
        token_cache: int = 10_000,
        revocation_ttl_s: float = 5.0,
    ) -> None:
        self.policy = policy
        self.auth = auth  # fhir_api.auth.AuthServer
        self.trail = trail
        self.cache_size = token_cache
        self.revocation_ttl = revocation_ttl_s
        self._tokens: OrderedDict[str, TokenInfo] = OrderedDict()
        self._revocation_checked: dict[str, float] = {}
        self._verifiers: dict[str, tuple[TokenVerifier, str]] = {}
        self._lock = threading.Lock()

    # -- tokens --------------------------------------------------------------------------------
    def _verifier(self, request: Request, base: str) -> tuple[TokenVerifier, str]:
        from fhir_api.auth import Urls

        found = self._verifiers.get(base)
        if found is None:
            urls = Urls.build(base, request.app.state.prefix, self.auth.config.issuer)
            found = (self.auth.verifier(urls), urls.fhir_base)
            self._verifiers[base] = found
        return found

    def _cached(self, token: str) -> TokenInfo | None:
        with self._lock:
            info = self._tokens.get(token)
            if info is None:
                return None
            if info.expires_at + 30 < time.time():
                del self._tokens[token]
                return None
            self._tokens.move_to_end(token)
            return info

    def _remember(self, token: str, info: TokenInfo) -> None:
        with self._lock:
            self._tokens[token] = info
            while len(self._tokens) > self.cache_size:
                old, _ = self._tokens.popitem(last=False)
                self._revocation_checked.pop(old, None)

    async def verify(self, request: Request, token: str) -> TokenInfo:
        info = self._cached(token)
        if info is None:
            verifier, audience = self._verifier(request, await base_url(request))
            try:
                info = verifier.verify(token, audience)
            except InvalidToken as exc:
                raise _unauthorized(exc.reason) from exc
            self._remember(token, info)
        if info.expires_at + self.auth.config.leeway_s < time.time():
            raise _unauthorized("token expired")
        checked = self._revocation_checked.get(token)
        now = time.monotonic()
        if checked is None or now - checked > self.revocation_ttl:
            if await in_thread(self.auth.is_revoked, info):
                with self._lock:
                    self._tokens.pop(token, None)
                raise _unauthorized("token revoked")
            self._revocation_checked[token] = now
        return info

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("use the Bearer scheme")
        info = await self.verify(request, token)
        btg = request.headers.get("x-break-glass")  # percent-encoded UTF-8 (headers are ASCII)
        return Principal.from_token(
            info, break_glass=unquote(btg) if btg else None, ip=_client_ip(request)
        )

    # -- the hook ------------------------------------------------------------------------------
    async def __call__(self, request: Request, access: Access) -> None:
        await self.authorize(request, access)

    async def authorize(
        self, request: Request, access: Access, *, hand_down: bool = True, policy: bool = True
    ) -> None:
        """The check of one request (see the module docstring). ``hand_down=False``: decide
        (scopes, the instance check, break-the-glass, audit) but do not restrict the store calls
        of the request (a domain service that applies its own rules: :mod:`.domain`).
        ``policy=False``: only authenticate (the route checks its own operation scopes)."""
        try:
            await self._authorize(request, access, hand_down=hand_down, policy=policy)
        except FhirError as exc:
            ctx = audit_context(request)
            if ctx is not None:
                ctx.detail = exc.diagnostics
            raise

    async def _authorize(
        self, request: Request, access: Access, *, hand_down: bool, policy: bool
    ) -> None:
        ctx = audit_context(request)
        target = target_of(request, access)
        if ctx is not None:
            ctx.target = target
        if access.interaction in PUBLIC:
            if ctx is not None:
                ctx.public = True
            return
        principal = await self.authenticate(request)
        if ctx is not None:
            ctx.principal = principal
        if self.trail is not None and not self.trail.accepting():
            raise FhirError(
                503, "transient", "The audit trail is backlogged; try again shortly",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        if not policy:
            return
        guard = self.policy.plan(principal, target)
        if ctx is not None:
            ctx.guard = guard
        if guard.needs_db:
            await in_thread(guard.precheck)
        if self.trail is not None and _touches_audit(target):
            await in_thread(self.trail.sync)
        if hand_down:
            install_guard(request, guard)


def install_guard(request: Request, guard: Guard) -> None:
    """Hand the decision down to the store calls of this request."""
    current_guard.set(guard)
    ambient_restriction.set(guard.restrict)
    if guard.target.interaction == "transaction":
        request.state.check_bundle_entry = _entry_checker(guard)


def _entry_checker(guard: Guard) -> Any:
    def check(entry: Any) -> None:
        try:
            guard.check_entry(entry)
        except NotFound as exc:
            if getattr(entry, "vid", None) is not None:  # the reader's wording for a missing one
                raise NotFound(f"{entry.rtype}/{entry.rid}/_history/{entry.vid} not found") from exc
            raise

    return check


class OpenAuthorizer:
    """``EHR_AUTH_DISABLED=1``: no token needed and nothing restricted (local demos only).
    Requests are still audited, as anonymous."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def authorize(
        self, request: Request, access: Access, *, hand_down: bool = True, policy: bool = True
    ) -> None:
        await self(request, access)

    async def __call__(self, request: Request, access: Access) -> None:
        ctx = audit_context(request)
        target = target_of(request, access)
        if ctx is not None:
            ctx.target = target
            ctx.principal = ANONYMOUS
            ctx.public = access.interaction in PUBLIC
