"""The audit middleware: one :class:`ehr.security.AuditRecord` per FHIR interaction, refusals
included (http://hl7.org/fhir/R4/auditevent.html; see :mod:`ehr.security.audit`).

A pure ASGI middleware, outermost, so it sees the final status of every request the authorizer
looked at (401, 403, 404 from the policy, 4xx/5xx from the work, 500 from the catch-all). The
record is made and spooled when the response *starts*, before any byte of it leaves: there is
no response without its audit record. It holds no JSON building and no I/O beyond one append
to the spool file; the writer thread does the rest.

Not recorded: the public routes (``/metadata``), requests that match no FHIR route (they reach
no interaction), and everything outside the FHIR prefix (the authorization server records its
own events: logins, token grants, OAuth errors, through its listeners).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehr.security import AuditRecord, AuditTrail
from ehr.security.visibility import compartment_types

from .context import SCOPE_KEY, AuditContext

__all__ = ["AuditMiddleware", "record_of"]

_INSTANCE = frozenset({"read", "vread", "history-instance", "update", "patch", "delete"})


def _purpose(ctx: AuditContext) -> str | None:
    p = ctx.principal
    if p is None or p.anonymous:
        return None
    if p.is_clinician:
        return "TREAT"
    if p.is_citizen:
        return "PATRQT"
    return None if p.is_user else "HOPERAT"


def record_of(scope: Scope, ctx: AuditContext, status: int, headers: Headers) -> AuditRecord:
    """The audit record of a finished request."""
    t, p, g = ctx.target, ctx.principal, ctx.guard
    assert t is not None
    rec = AuditRecord(
        interaction=t.interaction,
        status=status,
        method=scope.get("method"),
        path=scope.get("path"),
        rtype=t.rtype,
        rid=t.rid,
        version=t.version,
        operation=t.operation,
    )
    query = scope.get("query_string", b"")
    if query and (t.interaction.startswith("search") or t.conditional or t.operation):
        rec.query = query.decode("latin-1")
    client = scope.get("client")
    rec.ip = client[0] if client else None
    if p is not None and not p.anonymous:
        rec.user = p.fhir_user
        rec.subject = p.subject
        rec.client_id = p.client_id or None
        rec.token_id = p.token_id
        rec.organizations = list(p.organizations)
        rec.purpose = _purpose(ctx)
    if g is not None:
        rec.patients = sorted(g.patients)
        if g.break_glass and p is not None:
            rec.break_glass = p.break_glass
    if t.interaction == "create" and status in (200, 201):
        loc = headers.get("location", "")
        parts = loc.rsplit("/_history/", 1)
        if len(parts) == 2:
            rec.rid = parts[0].rsplit("/", 1)[-1]
            rec.version = None
    if status < 400 and rec.rtype and rec.rid and rec.rtype in compartment_types():
        # whose record was touched; never for a refusal (the requester may read their own
        # AuditEvents and must not learn from them whose resource it was)
        rec.resolve = not rec.patients or t.interaction in _INSTANCE
    return rec


class AuditMiddleware:
    def __init__(self, app: ASGIApp, trail: AuditTrail, prefix: str) -> None:
        self.app = app
        self.trail = trail
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        ctx = AuditContext()
        scope[SCOPE_KEY] = ctx

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not ctx.recorded:
                ctx.recorded = True
                if ctx.target is not None and not ctx.public:
                    headers = Headers(raw=message.get("headers", []))
                    detail = ctx.detail
                    rec = record_of(scope, ctx, int(message["status"]), headers)
                    rec.detail = detail
                    self.trail.record(rec)
            await send(message)

        await self.app(scope, receive, audited_send)
