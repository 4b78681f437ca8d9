"""The SMART on FHIR web apps people use, served as static pages under ``/app/``:

=======================  ===========================================  ====================
``/app/booking/``        phone booking (citizen)                      client ``booking-app``
``/app/workstation/``    clinician workstation                        ``workstation-app``
``/app/nurse/``          nurse station (tablet)                       ``nurse-app``
``/app/common/``         shared ES modules, stylesheet, vendored libraries
=======================  ===========================================  ====================

The pages are public HTML and JavaScript: every datum goes through the FHIR API and our
``$operations`` with the user's own token (SMART App Launch, authorization code + PKCE against
our authorization server). There is no private route into the store here.

``install_apps(app)`` mounts the files (:mod:`.static_files`: CSP and cache headers) and
registers the apps' public OAuth clients (:mod:`.clients`). The contract the apps code against
is in ``FRAMEWORK.md`` next to this file.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.routing import Mount

from .clients import APP_CLIENTS, AppClient, ensure_clients, redirect_uris
from .static_files import CSP, AppFiles

__all__ = [
    "APP_CLIENTS",
    "CSP",
    "STATIC_DIR",
    "AppClient",
    "ensure_clients",
    "install_apps",
    "redirect_uris",
]

STATIC_DIR = Path(__file__).parent / "static"


def install_apps(app: FastAPI) -> None:
    """Mount ``/app/`` and register the apps' OAuth clients (on the authorization server's
    account store, when the app has one)."""

    app.router.routes.append(
        Mount("/app", app=AppFiles(directory=STATIC_DIR, html=True), name="apps")
    )
    auth = getattr(app.state, "auth", None)
    if auth is not None:
        ensure_clients(auth.accounts, getattr(app.state.settings, "base_url", "") or "")
