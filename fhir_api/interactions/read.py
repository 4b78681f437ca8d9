"""read: ``GET [base]/[type]/[id]`` (http://hl7.org/fhir/R4/http.html#read), with conditional
read by ``If-None-Match`` / ``If-Modified-Since`` -> 304 (http://hl7.org/fhir/R4/http.html#cread).

The hot path: the stored bytes are served as they are (no parsing, no validation).
404 for an unknown type or id, 410 for a deleted resource, 400 for a malformed id.
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


@router.get(TYPE + "/{rid}", name="read", response_class=Response)
async def read(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("read"))],
    store: StoreDep,
) -> Response:
    media = negotiate(request)
    found = await in_thread(store.read, rtype, rid)
    headers = version_headers(found.version, found.last_updated)
    if not_modified(request, found.version, found.last_updated):
        return Response(status_code=304, headers=headers)
    return fhir_response(request, found.data, headers=headers, media_type=media)
