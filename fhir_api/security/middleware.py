"""The audit middleware: one :class:`ehr.security.AuditRecord` per FHIR interaction, refusals
included (http://hl7.org/fhir/R4/auditevent.html; see :mod:`ehr.security.audit`).

A pure ASGI middleware, outermost, so it sees the final status of every request the authorizer
looked at (401, 403, 404 from the policy, 4xx/5xx from the work, 500 from the catch-all). The
record is made and spooled when the response *starts*, before any byte of it leaves: there is
no response without its audit record. Its work is one JSON line (:func:`entry_of`) and one
append to the spool; the shipper (or the writer thread) does the rest.

Not recorded: the public routes (``/metadata``), requests that match no FHIR route (they reach
no interaction), and everything outside the FHIR prefix (the authorization server records its
own events: logins, token grants, OAuth errors, through its listeners).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehr.security import AuditTrail
from ehr.security.audit import Entry, new_event_id, resolve_key
from ehr.security.visibility import compartment_types

from .context import SCOPE_KEY, AuditContext

__all__ = ["AuditMiddleware", "entry_of"]

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


def entry_of(scope: Scope, ctx: AuditContext, status: int, raw_headers: Any, site: str) -> Entry:
    """The audit record of a finished request, serialized: the bytes ``AuditRecord.line()``
    gives for it (its non-default fields in field order; ``tests/test_audit.py`` holds them
    equal), built straight into a dict: this runs on every request, and an ``AuditRecord``
    with its defaults, filtered again into a dict, cost ~15 % more."""
    t, p, g = ctx.target, ctx.principal, ctx.guard
    assert t is not None
    interaction, rtype, rid, version = t.interaction, t.rtype, t.rid, t.version
    if interaction == "create" and status in (200, 201):
        for name, value in raw_headers:
            if name.lower() == b"location":
                parts = value.decode("latin-1").rsplit("/_history/", 1)
                if len(parts) == 2:
                    rid, version = parts[0].rsplit("/", 1)[-1], None
                break
    event_id, recorded = new_event_id(), time.time_ns() // 1000
    d: dict[str, Any] = {"interaction": interaction, "status": status, "id": event_id,
                         "recorded": recorded, "kind": "rest"}  # fmt: skip
    if (method := scope.get("method")) is not None:
        d["method"] = method
    if (path := scope.get("path")) is not None:
        d["path"] = path
    query = scope.get("query_string", b"")
    if query and (interaction.startswith("search") or t.conditional or t.operation):
        d["query"] = query.decode("latin-1")
    for k, v in (("rtype", rtype), ("rid", rid), ("version", version), ("operation", t.operation)):
        if v is not None:
            d[k] = v
    user = p is not None and not p.anonymous
    if user:
        assert p is not None
        for k, v in (("user", p.fhir_user), ("subject", p.subject),
                     ("client_id", p.client_id or None), ("token_id", p.token_id)):  # fmt: skip
            if v is not None:
                d[k] = v
        if p.organizations:
            d["organizations"] = list(p.organizations)
    client = scope.get("client")
    if client:
        d["ip"] = client[0]
    patients = sorted(g.patients) if g is not None else []
    # whose record was touched; never for a refusal (the requester may read their own
    # AuditEvents and must not learn from them whose resource it was)
    resolve = bool(
        status < 400
        and rtype
        and rid
        and rtype in compartment_types()
        and (not patients or interaction in _INSTANCE)
    )
    if patients or resolve:
        d["patients"] = patients
    if resolve:
        d["resolve"] = True
    if user and (purpose := _purpose(ctx)) is not None:
        d["purpose"] = purpose
    if g is not None and g.break_glass and p is not None and p.break_glass is not None:
        d["break_glass"] = p.break_glass
    if ctx.detail is not None:
        d["detail"] = ctx.detail
    d["site"] = site
    return (orjson.dumps(d), resolve_key(resolve, rtype, rid), event_id, recorded)


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
                    trail = self.trail
                    status, headers = int(message["status"]), message.get("headers", ())
                    trail.record_entry(entry_of(scope, ctx, status, headers, trail.site))
            await send(message)

        await self.app(scope, receive, audited_send)
