"""The apps' OAuth clients: public SMART clients (PKCE S256, no secret), registered on start,
idempotently, with the redirect URIs of the server's own origin.

Redirect URIs: the apps are served by the server itself, whose host and port vary. Registered
are the loopback forms (``http://127.0.0.1/app/<name>/``, ``http://localhost/…``,
``http://[::1]/…``), which the authorization server matches with any port (RFC 8252 section 7.3,
:meth:`fhir_api.auth.models.OAuthClient.check_redirect_uri`), and, when ``EHR_BASE_URL`` is set,
``<its origin>/app/<name>/``. No other origin is accepted.

To add an app: add an :class:`AppClient` to :data:`APP_CLIENTS` (its folder under ``static/``
and its client id). A registration that differs from the table (scopes, redirect URIs, name) is
replaced on the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ehr.accounts import AccountStore, parse_scopes

__all__ = ["APP_CLIENTS", "AppClient", "ensure_clients", "redirect_uris"]

log = logging.getLogger("fhir_api.apps")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class AppClient:
    folder: str  #: served at /app/<folder>/
    client_id: str
    name: str
    scopes: str  #: the most the app may ask for (it asks for what it needs)


APP_CLIENTS: tuple[AppClient, ...] = (
    AppClient(
        "booking",
        "booking-app",
        "预约挂号 Phone booking",
        "openid fhirUser launch/patient patient/*.rs patient/Appointment.cru",
    ),
    AppClient(
        "workstation",
        "workstation-app",
        "医生工作站 Clinician workstation",
        "openid fhirUser launch launch/patient user/*.crus patient/*.rs",
    ),
    AppClient(
        "nurse",
        "nurse-app",
        "护士站 Nurse station",
        "openid fhirUser launch launch/patient user/*.crus patient/*.rs",
    ),
)


def redirect_uris(folder: str, base_url: str = "") -> list[str]:
    """Where the app at ``/app/<folder>/`` may receive its authorization code."""
    path = f"/app/{folder}/"
    uris = [f"http://{host}{path}" for host in LOOPBACK_HOSTS]
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme and parts.netloc:
            uri = f"{parts.scheme}://{parts.netloc}{path}"
            if uri not in uris:
                uris.append(uri)
    return uris


def ensure_clients(accounts: AccountStore, base_url: str = "") -> list[str]:
    """Register (or bring up to date) every app's client; returns the client ids changed.
    A database without the account tables (not migrated yet) is logged and skipped."""
    changed: list[str] = []
    for app in APP_CLIENTS:
        uris = redirect_uris(app.folder, base_url)
        scopes = str(parse_scopes(app.scopes))
        try:
            current = accounts.clients.get(app.client_id)
            if current is not None:
                same = (
                    current.type == "public"
                    and current.name == app.name
                    and current.scopes == scopes
                    and list(current.redirect_uris) == uris
                    and not current.disabled
                )
                if same:
                    continue
                accounts.clients.remove(app.client_id)
            accounts.clients.add(
                app.name,
                scopes=scopes,
                client_type="public",
                redirect_uris=uris,
                client_id=app.client_id,
            )
            changed.append(app.client_id)
        except IntegrityError:  # another process registered it at the same moment
            continue
        except SQLAlchemyError as exc:
            log.warning("could not register the app client %s: %s", app.client_id, exc)
            return changed
    return changed
