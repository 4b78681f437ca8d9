"""vread: ``GET [base]/[type]/[id]/_history/[vid]`` (http://hl7.org/fhir/R4/http.html#vread).

Serves the stored bytes of that version; 404 for an unknown version, 410 for a deletion version.
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


async def vread(request: Request) -> Response:
    await check_access(request, "vread")
    pp = request.path_params
    rtype, rid, vid = pp["rtype"], pp["rid"], pp["vid"]
    media = negotiate(request)
    store: Store = request.app.state.store
    found = await in_thread(store.vread, rtype, rid, vid)
    headers = version_headers(found.version, found.last_updated)
    if not_modified(request, found.version, found.last_updated):
        return Response(status_code=304, headers=headers)
    return fhir_response(request, found.data, headers=headers, media_type=media)


router = APIRouter()
router.routes.append(Route(TYPE + "/{rid}/_history/{vid}", vread, methods=["GET"], name="vread"))
