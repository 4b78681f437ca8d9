"""read: ``GET [base]/[type]/[id]`` (http://hl7.org/fhir/R4/http.html#read), with conditional
read by ``If-None-Match`` / ``If-Modified-Since`` -> 304 (http://hl7.org/fhir/R4/http.html#cread).

The hot path: the stored bytes are served as they are (no parsing, no validation).
404 for an unknown type or id, 410 for a deleted resource, 400 for a malformed id.

A plain Starlette route (no FastAPI dependency injection, which costs about a third of the
request's CPU time here); its first statement is the authorization check.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ehr.store import Store

from ..content import fhir_response, negotiate
from ..deps import check_access
from ..headers import not_modified, version_headers
from ..limits import in_thread
from ._common import TYPE

__all__ = ["router"]


async def read(request: Request) -> Response:
    await check_access(request, "read")
    pp = request.path_params
    rtype, rid = pp["rtype"], pp["rid"]
    media = negotiate(request)
    store: Store = request.app.state.store
    found = await in_thread(store.read, rtype, rid)
    headers = version_headers(found.version, found.last_updated)
    if not_modified(request, found.version, found.last_updated):
        return Response(status_code=304, headers=headers)
    return fhir_response(request, found.data, headers=headers, media_type=media)


router = APIRouter()
router.routes.append(Route(TYPE + "/{rid}", read, methods=["GET"], name="read"))
