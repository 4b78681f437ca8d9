"""Route dependencies as ``Annotated`` aliases, and the authorization gate.

Every route declares ``access: Annotated[Access, Depends(authorize("<interaction>"))]``. FastAPI
resolves it before the route body runs, so the check happens before any work (before the body is
read and before the store is touched). The two hot-path routes (read, vread) are plain Starlette
routes without dependency injection; their first statement is the same check
(:func:`check_access`). The check itself is ``app.state.authorizer``: allow-all
until SMART on FHIR installs a real one (``create_app(authorizer=...)``); it raises
``ehr.errors.FhirError`` (401 / 403) to refuse. The route keeps the :class:`Access` it was granted
so later checks (e.g. compartment filtering of a read result) can use it.

All dependencies here are ``async def`` that do no I/O: FastAPI runs a sync dependency in the
thread pool, which would cost a thread hop on every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends
from starlette.requests import Request

from ehr.settings import Settings
from ehr.store import Store

__all__ = [
    "Access",
    "Authorizer",
    "BaseUrlDep",
    "SettingsDep",
    "StoreDep",
    "allow_all",
    "authorize",
    "base_url",
    "check_access",
    "get_settings",
    "get_store",
]


@dataclass(frozen=True)
class Access:
    """What a request is about to do.

    ``interaction`` is a CapabilityStatement interaction code (read, vread, update, patch, delete,
    history-instance, history-type, history-system, create, search-type, search-system) or
    ``capabilities``. ``rtype``/``rid`` name the target (``rtype`` is None for system-level
    interactions); a compartment search carries ``compartment=("Patient", id)`` with ``rtype``
    the searched type (None for ``*``).
    """

    interaction: str
    rtype: str | None = None
    rid: str | None = None
    compartment: tuple[str, str] | None = None


class Authorizer(Protocol):
    """Raises a FhirError (401/403) when the request may not perform ``access``."""

    def __call__(self, request: Request, access: Access) -> Awaitable[None]: ...


async def allow_all(request: Request, access: Access) -> None:
    """The placeholder authorizer: everything is allowed (SMART on FHIR replaces it)."""
    return None


async def check_access(request: Request, interaction: str) -> Access:
    """Check ``interaction`` on the request's target (from its path parameters) with the app's
    authorizer; raise to refuse. Routes call it first, through :func:`authorize` or directly."""
    pp = request.path_params
    if "ctype" in pp:  # compartment search: /{rtype}/{rid}/{ctype}
        target = None if pp["ctype"] == "*" else pp["ctype"]
        access = Access(interaction, target, None, (pp["rtype"], pp["rid"]))
    else:
        access = Access(interaction, pp.get("rtype"), pp.get("rid"))
    await request.app.state.authorizer(request, access)
    return access


def authorize(interaction: str) -> Callable[[Request], Awaitable[Access]]:
    """A dependency that checks ``interaction`` on the route's target before the route runs."""

    async def check(request: Request) -> Access:
        return await check_access(request, interaction)

    check.__name__ = f"authorize_{interaction.replace('-', '_')}"
    return check


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def base_url(request: Request) -> str:
    """The public base of the FHIR API, for fullUrl, Location and paging links: the configured
    ``EHR_BASE_URL``, else derived from the request (scheme, host, root path and prefix)."""
    configured: str = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    server = scope.get("server")  # a list or a tuple, as the server gives it
    key = (scope.get("scheme"), server and tuple(server), scope.get("root_path"), _host(scope))
    found = _DERIVED_BASES.get(key)
    if found is None:
        found = str(request.base_url).rstrip("/") + request.app.state.prefix
        if len(_DERIVED_BASES) < 256:  # a few hosts serve one deployment
            _DERIVED_BASES[key] = found
    return found


#: base URLs derived from requests, by (scheme, server, root path, Host header): Starlette
#: builds and parses a URL for each, a few dozen microseconds on every request
_DERIVED_BASES: dict[tuple[Any, ...], str] = {}


def _host(scope: Any) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value  # type: ignore[no-any-return]
    return None


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BaseUrlDep = Annotated[str, Depends(base_url)]
