"""The request audit: one :class:`ehr.security.AuditRecord` per FHIR interaction, refusals
included (http://hl7.org/fhir/R4/auditevent.html; see :mod:`ehr.security.audit`).

An observer of the API's edge (:class:`fhir_api.edge.EdgeHooks`), so it sees the final status
of every request the authorizer looked at (401, 403, 404 from the policy, 4xx/5xx from the
work, the edge's own 413/408/503 and its catch-all 500). The record is made and spooled when
the response *starts*, before any byte of it leaves: there is no response without its audit
record. Its work is one JSON line (:func:`entry_of`) and one append to the spool; the shipper
(or the writer thread) does the rest. Not a middleware of its own: a layer costs a coroutine
per request and one per message sent.

Not recorded: the public routes (``/metadata``), requests that match no FHIR route (they reach
no interaction), and everything outside the FHIR prefix (the authorization server records its
own events: logins, token grants, OAuth errors, through its listeners).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import Message, Scope

from ehr.security import AuditTrail, Principal
from ehr.security.audit import Entry, new_event_id, resolve_key
from ehr.security.visibility import compartment_types

from .context import SCOPE_KEY, AuditContext

__all__ = ["AuditObserver", "entry_of"]

_INSTANCE = frozenset({"read", "vread", "history-instance", "update", "patch", "delete"})
#: the types whose records name their patients (:func:`compartment_types`)
_COMPARTMENT = compartment_types()


def _purpose(p: Principal) -> str | None:
    if p.anonymous:
        return None
    if p.is_clinician:
        return "TREAT"
    if p.is_citizen:
        return "PATRQT"
    return None if p.is_user else "HOPERAT"


#: the requester's fields of a record (``user`` … ``organizations``) and its purpose, by token
#: (``jti``): the same for every request made with one token, so made once
_WHO: dict[str, tuple[str, str, dict[str, Any], str | None]] = {}
_NOBODY: tuple[dict[str, Any], str | None] = ({}, None)


def _who(p: Principal | None) -> tuple[dict[str, Any], str | None]:
    if p is None or p.anonymous:
        return _NOBODY
    key = p.token_id
    hit = _WHO.get(key) if key is not None else None
    # (a token of another issuer could repeat a jti: the subject and client must match too)
    if hit is not None and hit[0] == p.subject and hit[1] == p.client_id:
        return hit[2], hit[3]
    who: dict[str, Any] = {}
    for k, v in (("user", p.fhir_user), ("subject", p.subject),
                 ("client_id", p.client_id or None), ("token_id", key)):  # fmt: skip
        if v is not None:
            who[k] = v
    if p.organizations:
        who["organizations"] = list(p.organizations)
    purpose = _purpose(p)
    if key is not None:
        if len(_WHO) >= 10_000:
            _WHO.clear()
        _WHO[key] = (p.subject, p.client_id, who, purpose)
    return who, purpose


def entry_of(scope: Scope, ctx: AuditContext, status: int, raw_headers: Any, site: str) -> Entry:
    """The audit record of a finished request, serialized: the bytes ``AuditRecord.line()``
    gives for it (its non-default fields in field order; ``tests/test_audit.py`` holds them
    equal), built straight into a dict. This runs on every request, with the caches cold (the
    request's own work came between): as few steps as will do, the requester's part made once
    per token (:func:`_who`)."""
    t, g = ctx.target, ctx.guard
    assert t is not None
    interaction, rtype, rid, version = t.interaction, t.rtype, t.rid, t.version
    if interaction == "create" and status in (200, 201):
        for name, value in raw_headers:
            if name.lower() == b"location":
                parts = value.decode("latin-1").rsplit("/_history/", 1)
                if len(parts) == 2:
                    rid, version = parts[0].rsplit("/", 1)[-1], None
                break
    recorded = time.time_ns() // 1000
    event_id = new_event_id(recorded)
    # (an HTTP scope always has its method and path)
    d: dict[str, Any] = {"interaction": interaction, "status": status, "id": event_id,
                         "recorded": recorded, "kind": "rest", "method": scope["method"],
                         "path": scope["path"]}  # fmt: skip
    query = scope.get("query_string")
    if query and (interaction.startswith("search") or t.conditional or t.operation):
        d["query"] = query.decode("latin-1")
    if rtype is not None:
        d["rtype"] = rtype
    if rid is not None:
        d["rid"] = rid
    if version is not None:
        d["version"] = version
    if t.operation is not None:
        d["operation"] = t.operation
    p = ctx.principal
    who, purpose = _who(p)
    if who:
        d.update(who)
    if client := scope.get("client"):
        d["ip"] = client[0]
    patients = sorted(g.patients) if g is not None and g.patients else []
    # whose record was touched; never for a refusal (the requester may read their own
    # AuditEvents and must not learn from them whose resource it was)
    resolve = (
        status < 400
        and rid
        and rtype in _COMPARTMENT
        and (not patients or interaction in _INSTANCE)
    )
    if patients or resolve:
        d["patients"] = patients
    if resolve:
        d["resolve"] = True
    if purpose is not None:
        d["purpose"] = purpose
    if g is not None and g.break_glass and p is not None and p.break_glass is not None:
        d["break_glass"] = p.break_glass
    if ctx.detail is not None:
        d["detail"] = ctx.detail
    d["site"] = site
    return (orjson.dumps(d), resolve_key(resolve, rtype, rid), event_id, recorded)


class AuditObserver:
    """The edge's observer (:class:`fhir_api.edge.Observer`) that audits ``prefix``'s requests."""

    def __init__(self, trail: AuditTrail, prefix: str) -> None:
        self.trail = trail
        self.prefix = prefix

    def begin(self, scope: Scope) -> AuditContext | None:
        if not scope["path"].startswith(self.prefix):
            return None
        ctx = scope[SCOPE_KEY] = AuditContext()
        return ctx

    def started(self, scope: Scope, seen: AuditContext, message: Message) -> None:
        if seen.recorded:  # (once: a failure here must not repeat on the catch-all's answer)
            return
        seen.recorded = True
        if seen.target is not None and not seen.public:
            trail = self.trail
            trail.record_entry(
                entry_of(scope, seen, message["status"], message.get("headers", ()), trail.site)
            )
