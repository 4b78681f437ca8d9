"""Enforcement of SMART on FHIR authorization, consent and audit on the FHIR API.

    from fhir_api.security import create_secure_app
    app = create_secure_app(store)          # create_app + authorization server + this layer

or, on an app built elsewhere (before it serves its first request)::

    security = install(app)                 # app.state.security_layer

What :func:`install` does:

* mounts the authorization server (:func:`fhir_api.auth.install`) unless it is already there;
* sets ``app.state.authorizer`` to :class:`~.authorizer.SmartAuthorizer` (or, with
  ``EHR_AUTH_DISABLED=1``, an open one that still audits), and puts it in front of the domain
  ``$operations`` mounted outside the FHIR interaction routes (appointments, nurse station,
  workstation, health one-card: :mod:`.domain`);
* adds the store's write hooks: the guard pair (:class:`ehr.security.GuardHooks`) and the
  consent-rules hook (:class:`ehr.security.ConsentRulesHook`);
* starts the audit trail (:class:`ehr.security.AuditTrail`), an observer of the edge and
  subscribes it to the authorization server's events; stops it (after writing every record)
  when the app shuts down;
* fills the CapabilityStatement's ``rest.security`` (SMART-on-FHIR service, OAuth URIs).

Settings: :class:`~.config.SecuritySettings`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ehr.security import AuditRecord, AuditTrail, ConsentRulesHook, GuardHooks, Policy
from ehr.settings import Settings
from ehr.store import Store

from .authorizer import OpenAuthorizer, SmartAuthorizer, target_of
from .config import SecuritySettings
from .domain import gate_domain_routes
from .request_audit import AuditObserver

__all__ = [
    "Security",
    "SecuritySettings",
    "SmartAuthorizer",
    "audit_trail",
    "create_secure_app",
    "spool_dir",
    "install",
    "target_of",
]


@dataclass
class Security:
    """What :func:`install` put on an app (``app.state.security_layer``)."""

    policy: Policy
    authorizer: Any
    trail: AuditTrail | None
    settings: SecuritySettings

    def close(self) -> None:
        if self.trail is not None:
            self.trail.close()


def _security_section(app: FastAPI) -> Any:
    def section(base: str) -> dict[str, Any]:
        from fhir_api.auth import Urls, security_section

        auth = getattr(app.state, "auth", None)
        issuer = auth.config.issuer if auth is not None else ""
        return security_section(Urls.build(base, app.state.prefix, issuer))

    return section


#: an authorization-server event's outcome -> the status its audit record carries
_OUTCOME_STATUS = {"ok": 200, "invalid": 401, "refused": 403, "locked": 429}


def _auth_listener(trail: AuditTrail) -> Any:
    """Authorization-server events -> audit records (logins, token grants, refusals)."""

    def on_event(event: str, data: dict[str, Any]) -> None:
        outcome = data.get("outcome")
        if outcome is not None:  # logins (the second nurse's signature too), logouts
            status = _OUTCOME_STATUS.get(outcome, 401)
        else:
            status = 200 if event == "token" else 401
        rec = AuditRecord(
            interaction=event,
            kind=event,
            status=status,
            subject=data.get("user_id") or data.get("client_id"),
            client_id=data.get("client_id"),
            token_id=data.get("jti"),
            ip=data.get("ip"),
            patients=[data["patient"]] if data.get("patient") else [],
            detail=" ".join(
                f"{k}={data[k]}"
                for k in ("outcome", "username", "grant_type", "scope", "error", "description",
                          "grant_id", "reason")
                if data.get(k)
            )[:1000]
            or None,
        )  # fmt: skip
        trail.record(rec)

    return on_event


def audit_trail(
    store: Store, config: SecuritySettings, settings: Settings, *, shipper: bool = False
) -> AuditTrail:
    """The audit trail the settings describe: a server worker's, or (``shipper``) the one the
    shipper process writes through (no spool of its own: it reads the workers', at
    :func:`spool_dir`; :func:`ehr.security.shipper.run_shipper`)."""
    return AuditTrail(
        store,
        spool_dir=spool_dir(store, config, settings)
        if config.audit_spool and not shipper
        else None,
        flush_interval=config.audit_flush_ms / 1000,
        fsync_interval=config.audit_fsync_ms / 1000,
        batch_size=config.audit_batch,
        max_queue=config.audit_max_queue,
        materialize=config.audit_materialize,
        max_lag=config.audit_max_lag,
        site=config.site,
        shipper="process" if config.shipped and not shipper else "thread",
        yield_every=config.audit_shipper_yield if shipper else 0,
    )


def spool_dir(store: Store, config: SecuritySettings, settings: Settings) -> Path:
    """The audit spool folder of ``store``'s database."""
    return config.spool_for(
        settings.data_dir, store.engine.url.render_as_string(hide_password=True)
    )


def install(
    app: FastAPI,
    config: SecuritySettings | None = None,
    *,
    auth_config: Any = None,
    accounts: Any = None,
    trail: AuditTrail | None = None,
) -> Security:
    """Install the enforcement layer on ``app`` (see the module docstring). ``trail``: an audit
    trail to use instead of one built from the settings."""
    state: Any = app.state
    config = config or SecuritySettings()
    store: Store = state.store
    settings: Settings = state.settings
    if getattr(state, "auth", None) is None:
        from fhir_api.auth import install as install_auth

        install_auth(app, auth_config, accounts=accounts)
    policy = Policy(store)
    GuardHooks.install(store)
    ConsentRulesHook.install(store)
    if trail is None and config.audit:
        trail = audit_trail(store, config, settings)
    authorizer: Any
    if config.auth_disabled:
        authorizer = OpenAuthorizer(policy)
    else:
        authorizer = SmartAuthorizer(
            policy,
            auth=state.auth,
            trail=trail,
            token_cache=config.token_cache,
            revocation_ttl_s=config.revocation_ttl_s,
        )
    state.authorizer = authorizer
    gate_domain_routes(app)
    state.security = _security_section(app)
    state.capability_cache.clear()
    if trail is not None:
        state.edge_hooks.observer = AuditObserver(trail, state.prefix)
        state.auth.listeners.append(_auth_listener(trail))
    security = Security(policy, authorizer, trail, config)
    state.security_layer = security
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as value:
            yield value
        security.close()

    app.router.lifespan_context = lifespan
    return security


def create_secure_app(
    store: Store | None = None,
    settings: Settings | None = None,
    config: SecuritySettings | None = None,
    **kwargs: Any,
) -> FastAPI:
    """``create_app`` with the authorization server and this layer installed (the factory for
    ``ehr serve``). ``kwargs`` go to :func:`install`."""
    from fhir_api.app import create_app

    app = create_app(store, settings)
    install(app, config, **kwargs)
    return app
