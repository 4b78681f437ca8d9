"""The FastAPI application of the FHIR R4 REST API (http://hl7.org/fhir/R4/http.html).

``create_app()`` mounts every interaction under a prefix (``/fhir`` by default)::

    GET    /metadata                      capabilities
    GET    /_history                      history-system
    GET    / and POST /_search            search-system (``_type=``)
    GET    /{type}/_history               history-type
    POST   /{type}/_search                search-type (form-encoded)
    GET    /{type}/{id}/_history/{vid}    vread
    GET    /{type}/{id}/_history          history-instance
    GET    /{compartment}/{id}/{type}     compartment search
    GET    /{type}/{id}                   read
    PUT    /{type}/{id}  PUT /{type}?…    update, conditional update
    PATCH  /{type}/{id}  PATCH /{type}?…  patch, conditional patch
    DELETE /{type}/{id}  DELETE /{type}?… delete, conditional delete
    POST   /{type}                        create (conditional with If-None-Exist)
    POST   /                              batch / transaction
    GET    /{type}                        search-type

Routes are matched in that order, so the literal segments (``metadata``, ``_history``,
``_search``) win over ``{type}``/``{id}``. Routers added later (``$operations``, batch) must be
included with :func:`include_before_interactions` so they are matched before the generic ones.

Middleware: the edge (:mod:`fhir_api.edge`: catch-all 500, ``Cache-Control: no-store``, body size
limit 413, time limit 408/503), where the security layer hooks the audit in (``state.edge_hooks``).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route

from appointments import install as install_appointments
from appointments.http import ActorResolver
from appointments.http import router as appointments_router
from appointments.service import installed as installed_appointments
from ehr.bulk import BulkWorker
from ehr.empi.service import install as install_empi
from ehr.settings import Settings, get_settings
from ehr.store import Store

from .actors import actor_from_token
from .apps import install_apps
from .auth import install as install_auth
from .cards import install as install_cards
from .deps import Authorizer, allow_all
from .edge import EdgeHooks, EdgeMiddleware
from .errors import install_error_handlers
from .interactions import (
    batch,
    capabilities,
    create,
    delete,
    history,
    patch,
    read,
    search,
    update,
    vread,
)
from .operations import bulk as op_bulk
from .operations import empi as op_empi
from .operations import everything as op_everything
from .operations import reindex as op_reindex
from .operations import validate as op_validate
from .route_filter import index_routes, prefilter

__all__ = ["DEFAULT_PREFIX", "INTERACTIONS", "create_app", "include_before_interactions"]

DEFAULT_PREFIX = "/fhir"
VERSION = "0.1.0"


#: $operation route modules (matched before the generic interaction routes)
OPERATIONS = (op_validate, op_empi, op_bulk, op_everything, op_reindex)

#: interaction modules in matching order (literal segments before {type}/{id})
INTERACTIONS = (capabilities, history, vread, search, read, update, patch, delete, create, batch)


def _copy_routes(app: FastAPI, router: APIRouter, prefix: str) -> list[BaseRoute]:
    """Add ``router``'s routes to ``app`` under ``prefix`` as plain routes (so their name,
    methods and path stay visible to the CapabilityStatement and to 405 ``Allow``)."""
    before = len(app.router.routes)
    for route in router.routes:
        if isinstance(route, APIRoute):
            app.router.add_api_route(
                prefix + route.path,
                route.endpoint,
                methods=sorted(route.methods or ()),
                name=route.name,
                response_class=route.response_class,
                dependencies=route.dependencies,
                include_in_schema=route.include_in_schema,
                summary=route.summary,
                description=route.description,
                tags=route.tags,
            )
        elif isinstance(route, Route):
            methods = sorted(route.methods or ())
            app.router.routes.append(
                Route(prefix + route.path, route.endpoint, methods=methods, name=route.name)
            )
        else:
            raise TypeError(f"only routes can be mounted here, not {route!r}")
    return app.router.routes[before:]


def include_before_interactions(app: FastAPI, router: APIRouter) -> None:
    """Mount ``router``'s routes under the FHIR prefix, matched before the generic interaction
    routes (for ``$operations``, batch/transaction at the base, ...)."""
    added = _copy_routes(app, router, app.state.prefix)
    if not added:
        return
    prefilter(added)  # cheap path pre-check before each route's matches (fhir_api.route_filter)
    del app.router.routes[-len(added) :]
    first: int = app.state.first_fhir_route
    app.router.routes[first:first] = added
    app.state.first_fhir_route = first + len(added)
    app.state.capability_cache.clear()


#: the collector's thresholds while serving. CPython's default (700, 10, 10) collects the young
#: generation whenever 700 more container objects are alive than before: several times in a
#: single create (validating an Observation builds a model of hundreds of objects), each pass
#: promoting that model, so the older generations fill and are walked too. Measured in-process
#: (sequential creates of an Observation, secured app): 0.27 young, 0.03 middle and 0.002 full
#: collections per create, ~70 µs of it per create; with 50,000, one collection per ~800
#: creates (~14 µs per create), 10-20 ms each. Cyclic garbage waits a little longer for its
#: collection (a few MB at most).
GC_THRESHOLDS = (50_000, 20, 20)


def settle_collector() -> None:
    """Once a serving process has loaded what it keeps (the app, the modules, the definitions
    tables: ~340k objects), keep it out of the collector's full passes (~140 ms each) and
    collect with :data:`GC_THRESHOLDS`. The workers and the audit shipper call it."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    store: Store | None = None,
    settings: Settings | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    authorizer: Authorizer | None = None,
    actor_resolver: ActorResolver | None = None,
) -> FastAPI:
    """The API. Without ``store``, one is built from ``settings`` (default: the environment);
    the app then disposes of it at shutdown. The schema must already be migrated
    (``ehr migrate``; ``ehr serve`` does it)."""
    settings = settings or get_settings()
    owns_store = store is None
    if store is None:
        store = Store.from_settings(settings)
    built: Store = store

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prefilter(app.router.routes)  # also the routes installed or replaced after create_app
        index_routes(app.router)
        worker = BulkWorker(built, settings.data_dir)  # Bulk Data jobs survive restarts
        app.state.bulk_worker = worker
        worker.start()
        settle_collector()  # what exists now lives as long as the process
        try:
            yield
        finally:
            worker.stop()
            if owns_store:
                built.dispose()

    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    app = FastAPI(
        title="FHIR R4 API",
        version=VERSION,
        lifespan=lifespan,
        docs_url=f"{prefix}/docs",
        openapi_url=f"{prefix}/openapi.json",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=f"{prefix}/docs/oauth2-redirect",
        # FastAPI's own OpenTelemetry hooks ask the (unconfigured) providers on every request;
        # the server has its own audit trail and no tracing set up
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    state: Any = app.state
    state.store = built
    state.settings = settings
    state.prefix = prefix
    state.authorizer = authorizer or allow_all
    state.capability_cache = {}
    state.first_fhir_route = len(app.router.routes)
    for module in INTERACTIONS:
        _copy_routes(app, module.router, prefix)
    for op in OPERATIONS:
        include_before_interactions(app, op.router)
    install_auth(app)  # SMART on FHIR authorization server (public OAuth endpoints, discovery)
    install_cards(app)  # health one-card: terminal operations, issuer JWKS
    install_apps(app)  # the SMART web apps under /app/ (static pages, their OAuth clients)
    # the booking rules hook on plain FHIR writes (kept if the store already has one installed)
    state.appointments = installed_appointments(built) or install_appointments(built)
    if settings.empi:  # regional patient identity: matching on every Patient write
        install_empi(built)
    include_before_interactions(
        app, appointments_router(resolve_actor=actor_resolver or actor_from_token)
    )
    install_error_handlers(app)
    prefilter(app.router.routes)  # cheap path pre-check before each route's matches
    index_routes(app.router)  # and only the routes that can match a path are asked
    state.edge_hooks = EdgeHooks()  # (the audit observes there: fhir_api.security)
    app.add_middleware(  # catch-all 500, Cache-Control: no-store, body (413) and time limits
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.request_timeout_s,
        hooks=state.edge_hooks,
    )
    return app
