"""create: ``POST [base]/[type]`` (http://hl7.org/fhir/R4/http.html#create), and conditional
create with ``If-None-Exist`` (http://hl7.org/fhir/R4/http.html#ccreate).

201 with ``Location: [base]/[type]/[id]/_history/[vid]``, ``ETag`` and ``Last-Modified``.
With ``If-None-Exist``: one match -> 200 with the existing resource (nothing written), several
matches -> 412. Any id in the body is ignored (the server assigns one). Checked before any work:
the type (404), the body's content type (415), JSON (400), its resourceType against the URL (400);
then the store validates (422).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ..content import body_type, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..limits import in_thread
from ._common import TYPE, check_body, check_type, if_none_exist, write_response

__all__ = ["router"]

router = APIRouter()


@router.post(TYPE, name="create", response_class=Response)
async def create(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("create"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    body_type(request)
    condition = if_none_exist(request)
    resource = check_body(await read_json_body(request), rtype)
    result = await in_thread(store.create, resource, if_none_exist=condition)
    if result.created:
        return write_response(request, result, base, status=201, location=True, message="Created")
    return write_response(
        request, result, base, status=200, location=False, message="Found existing"
    )
