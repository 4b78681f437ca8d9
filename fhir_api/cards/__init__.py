"""The health one-card on the API: terminal and registration-counter operations, issuer JWKS.

    from fhir_api.cards import install
    app = create_app(store)
    install(app)                       # app.state.cards (an ehr.cards.service.CardService)

What :func:`install` does:

* builds the :class:`~ehr.cards.service.CardService` from the ``EHR_CARD_*`` settings
  (:class:`~ehr.cards.config.CardSettings`) with an audit sink that writes to the security
  layer's trail (``app.state.security_layer.trail``) when there is one, else to a trail of its
  own (closed, after writing every record, when the app shuts down);
* registers :class:`~ehr.cards.guard.CardIdentifierGuard` on the store (card identifiers are
  issued, never copied);
* checks in with the appointment services of ``app.state.appointments`` (when the app has
  none, with services of its own on the store, without installing the booking-rules hook);
* mounts the routes of :mod:`.routes` before the generic interactions, and the public issuer
  JWKS at ``{root}/.well-known/health-card-jwks.json``.

Scopes: :data:`TAP_SCOPE` (``system/health-card.tap``) for counter terminals,
:data:`ISSUE_SCOPE` (``system/health-card.issue``) for the registration counter.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ehr.cards.config import CardSettings
from ehr.cards.guard import CardIdentifierGuard
from ehr.cards.service import CardService
from ehr.security.audit import AuditRecord, AuditTrail

from .routes import ISSUE_SCOPE, JWKS_PATH, TAP_SCOPE, jwks_router, router

__all__ = ["ISSUE_SCOPE", "JWKS_PATH", "TAP_SCOPE", "AppAudit", "install"]


class AppAudit:
    """The card operations' audit sink on an app: the security layer's trail when installed
    (looked up on each record, so the order of installation does not matter), else a trail of
    this app's own."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._own: AuditTrail | None = None
        self._lock = threading.Lock()

    def trail(self) -> AuditTrail:
        layer = getattr(self.app.state, "security_layer", None)
        shared = getattr(layer, "trail", None)
        if isinstance(shared, AuditTrail):
            return shared
        with self._lock:
            if self._own is None:
                self._own = AuditTrail(self.app.state.store)
            return self._own

    def __call__(self, rec: AuditRecord) -> None:
        self.trail().record(rec)

    def accepting(self) -> bool:
        return self.trail().accepting()

    def sync(self) -> None:
        """Write and materialize every record so far (tests; before reading AuditEvents)."""
        self.trail().sync()

    def close(self) -> None:
        with self._lock:
            own, self._own = self._own, None
        if own is not None:
            own.close()


def install(
    app: FastAPI, settings: CardSettings | None = None, *, cards: CardService | None = None
) -> CardService:
    """Mount the card operations on ``app`` (see the module docstring); returns the service.
    Installing again replaces the service (e.g. other settings) and mounts nothing twice."""
    from ..app import include_before_interactions  # (fhir_api.app may import this package)

    state: Any = app.state
    store = state.store
    audit: AppAudit = getattr(state, "card_audit", None) or AppAudit(app)
    if cards is None:
        key = state.settings.citizen_id_key.encode()
        cards = CardService.create(store, settings, audit=audit, pseudonym_key=key)
    state.cards = cards
    if getattr(state, "card_audit", None) is audit:
        return cards  # mounted already: only the service (its settings) is replaced
    state.card_audit = audit
    state.card_audit_accepting = audit.accepting
    CardIdentifierGuard.install(store)
    include_before_interactions(app, router())
    before = len(app.router.routes)
    app.include_router(jwks_router())
    added = app.router.routes[before:]
    del app.router.routes[before:]
    first: int = state.first_fhir_route
    app.router.routes[first:first] = added
    state.first_fhir_route = first + len(added)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as value:
            yield value
        audit.close()

    app.router.lifespan_context = lifespan
    return cards
