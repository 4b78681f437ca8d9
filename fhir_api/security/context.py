"""What the request audit and the authorizer share about one request (kept in the ASGI
scope, so it crosses every layer between them without relying on task-local state)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ehr.security import Guard, Principal, Target

__all__ = ["SCOPE_KEY", "AuditContext", "audit_context"]

SCOPE_KEY = "ehr.audit"


class AuditContext:
    """Made empty on every request (no ``__init__`` to run: the class holds the defaults)."""

    target: Target | None = None
    principal: Principal | None = None
    guard: Guard | None = None
    public: bool = False
    recorded: bool = False
    #: why the authorizer refused (for ``AuditEvent.outcomeDesc``)
    detail: str | None = None


def audit_context(request: Request) -> AuditContext | None:
    ctx: Any = request.scope.get(SCOPE_KEY)
    return ctx if isinstance(ctx, AuditContext) else None
