"""SMART on FHIR authorization server (SMART App Launch 2.x,
https://hl7.org/fhir/smart-app-launch/): Authlib's OAuth 2.0 core with a thin Starlette adapter.

    from fhir_api.auth import install
    app = create_app(store)
    auth = install(app)               # app.state.auth; routes mounted before the FHIR routes

Public surface: :func:`install`, :func:`router` (the routes alone), :class:`AuthServer`
(``verify_token``, ``is_revoked``, ``issue_tokens``, ``listeners``...), :class:`AuthSettings`,
:class:`Urls`, :func:`security_section` (CapabilityStatement ``rest.security``),
:func:`token_info` (the verified bearer token of an API request) and :func:`unauthorized`.
Verification without this server: :func:`ehr.accounts.verify_access_token`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ehr.accounts import AccountStore

from .adapter import Urls
from .bearer import token_info, unauthorized
from .config import AuthSettings
from .discovery import security_section
from .routes import router
from .server import AuthServer

__all__ = [
    "AuthServer",
    "AuthSettings",
    "Urls",
    "install",
    "router",
    "security_section",
    "token_info",
    "unauthorized",
]


def install(
    app: FastAPI, config: AuthSettings | None = None, *, accounts: AccountStore | None = None
) -> AuthServer:
    """Create the authorization server on ``app``'s store (``app.state.auth``) and mount its
    routes ahead of the FHIR interaction routes."""
    state: Any = app.state
    server = AuthServer(state.store, config, accounts)
    state.auth = server
    before = len(app.router.routes)
    app.include_router(router(state.prefix))
    added = app.router.routes[before:]
    del app.router.routes[before:]
    first: int = state.first_fhir_route
    app.router.routes[first:first] = added
    state.first_fhir_route = first + len(added)
    state.capability_cache.clear()
    return server
