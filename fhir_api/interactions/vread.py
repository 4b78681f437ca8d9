"""vread: ``GET [base]/[type]/[id]/_history/[vid]`` (http://hl7.org/fhir/R4/http.html#vread).

Serves the stored bytes of that version; 404 for an unknown version, 410 for a deletion version.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ..content import fhir_response, negotiate
from ..deps import Access, StoreDep, authorize
from ..headers import not_modified, version_headers
from ..limits import in_thread
from ._common import TYPE

__all__ = ["router"]

router = APIRouter()


@router.get(TYPE + "/{rid}/_history/{vid}", name="vread", response_class=Response)
async def vread(
    request: Request,
    rtype: str,
    rid: str,
    vid: str,
    access: Annotated[Access, Depends(authorize("vread"))],
    store: StoreDep,
) -> Response:
    media = negotiate(request)
    found = await in_thread(store.vread, rtype, rid, vid)
    headers = version_headers(found.version, found.last_updated)
    if not_modified(request, found.version, found.last_updated):
        return Response(status_code=304, headers=headers)
    return fhir_response(request, found.data, headers=headers, media_type=media)
