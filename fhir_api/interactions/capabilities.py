"""capabilities: ``GET [base]/metadata`` (http://hl7.org/fhir/R4/http.html#capabilities).

The CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html) is built from what is
really registered, never from a static file: the interactions come from the app's routes (each
route's ``name`` is its interaction code), the resource types from the definitions, and the
search parameters (with their documentation) from the store's registry, custom SearchParameters
that clients wrote included (:mod:`ehr.search.custom`). It is built on the first request (after
every router is mounted) and cached per base URL and generation of the custom parameters: a
SearchParameter created, changed or deleted (here or, within the refresh interval, by another
worker) makes the next request build it afresh. ``app.state.security`` fills the
``rest.security`` section (a placeholder until SMART on FHIR sets it; a callable is given the
base URL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from ehr.definitions import resource_types
from ehr.model import FHIR_VERSION
from ehr.store import Store

from ..content import FHIR_JSON, fhir_response, negotiate
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..limits import in_thread
from .patch import PATCH_FORMATS

__all__ = ["DEFAULT_SECURITY", "capability_statement", "router"]

router = APIRouter()

#: route name -> type-level interaction code
TYPE_INTERACTIONS = {
    "read": "read",
    "vread": "vread",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
    "history-instance": "history-instance",
    "history-type": "history-type",
    "create": "create",
    "search-type": "search-type",
}
#: route name -> system-level interaction code
SYSTEM_INTERACTIONS = {
    "transaction": "transaction",
    "batch": "batch",
    "search-system": "search-system",
    "history-system": "history-system",
}

DEFAULT_SECURITY: dict[str, Any] = {
    "cors": False,
    "description": "No authorization is enforced yet: SMART on FHIR is not configured.",
}


def _route_names(app: FastAPI) -> set[str]:
    return {name for r in app.router.routes if (name := getattr(r, "name", None))}


def _search_params(store: Store, rtype: str) -> list[dict[str, Any]]:
    out = []
    for code, sp in sorted(store.registry.for_type(rtype).items()):
        entry: dict[str, Any] = {"name": code}
        if sp.url:
            entry["definition"] = sp.url
        entry["type"] = sp.type
        if sp.description:
            entry["documentation"] = sp.description
        out.append(entry)
    return out


def capability_statement(app: FastAPI, store: Store, base: str) -> dict[str, Any]:
    """The CapabilityStatement of ``app`` as it is mounted now."""
    names = _route_names(app)
    type_codes = [code for name, code in TYPE_INTERACTIONS.items() if name in names]
    resource_entry: dict[str, Any] = {
        "interaction": [{"code": c} for c in type_codes],
        "versioning": "versioned-update",
        "readHistory": "vread" in names,
        "updateCreate": "update" in names,
        "conditionalCreate": "create" in names,
        "conditionalRead": "full-support" if "read" in names else "not-supported",
        "conditionalUpdate": "conditional-update" in names,
        "conditionalDelete": "multiple" if "conditional-delete" in names else "not-supported",
    }
    resources = []
    for rtype in sorted(resource_types()):
        entry = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            **resource_entry,
        }
        if "search-type" in names:
            entry["searchParam"] = _search_params(store, rtype)
        resources.append(entry)
    security = getattr(app.state, "security", None) or DEFAULT_SECURITY
    if callable(security):  # depends on the public base URL (OAuth endpoint URIs)
        security = security(base)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": security,
        "resource": resources,
        "interaction": [{"code": c} for n, c in SYSTEM_INTERACTIONS.items() if n in names],
    }
    if "search-system" in names:
        rest["searchParam"] = _search_params(store, "Resource")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now,
        "publisher": "Regional health-record exchange",
        "kind": "instance",
        "software": {"name": "ehr-exchange FHIR server", "version": app.version},
        "implementation": {
            "description": "Regional health-record exchange FHIR R4 API",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "patchFormat": list(PATCH_FORMATS),
        "rest": [rest],
    }


@router.get("/metadata", name="capabilities", response_class=Response)
async def capabilities(
    request: Request,
    access: Annotated[Access, Depends(authorize("capabilities"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    negotiate(request)
    custom = store.custom
    if custom is not None and custom.refresh_due:  # another worker may have changed them
        await in_thread(store.refresh_search_parameters)
    key = f"{custom.generation if custom is not None else 0} {base}"
    cache: dict[str, bytes] = request.app.state.capability_cache
    body = cache.get(key)
    if body is None:
        body = orjson.dumps(capability_statement(request.app, store, base))
        for stale in [k for k in cache if not k.startswith(key.split(" ", 1)[0] + " ")]:
            cache.pop(stale, None)
        cache[key] = body
    return fhir_response(request, body)
