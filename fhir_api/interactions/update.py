"""update: ``PUT [base]/[type]/[id]`` (http://hl7.org/fhir/R4/http.html#update), and conditional
update ``PUT [base]/[type]?[search]`` (http://hl7.org/fhir/R4/http.html#cond-update).

200 when an existing resource gets a new version, 201 (with ``Location``) when the update creates
it (update-as-create with the client's id, or re-creating a deleted resource). ``If-Match:
W/"n"`` makes it version-aware: a stale version is a 412
(http://hl7.org/fhir/R4/http.html#concurrency). The body's ``id`` must equal the URL's (400).
A conditional update matching several resources is a 412; matching none creates.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.store import WriteResult

from ..content import body_type, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..headers import if_match
from ..limits import in_thread
from ._common import TYPE, check_body, check_id, check_type, condition, write_response

__all__ = ["router"]

router = APIRouter()


def _answer(request: Request, result: WriteResult, base: str) -> Response:
    if result.created:
        return write_response(request, result, base, status=201, location=True, message="Created")
    return write_response(request, result, base, status=200, location=False, message="Updated")


@router.put(TYPE + "/{rid}", name="update", response_class=Response)
async def update(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("update"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    check_id(rid)
    negotiate(request)
    body_type(request)
    version = if_match(request)
    resource = check_body(await read_json_body(request), rtype, rid)
    result = await in_thread(store.update, rtype, rid, resource, if_match=version)
    return _answer(request, result, base)


@router.put(TYPE, name="conditional-update", response_class=Response)
async def conditional_update(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("update"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    query = condition(request)
    body_type(request)
    version = if_match(request)
    resource = check_body(await read_json_body(request), rtype)
    result = await in_thread(store.conditional_update, rtype, query, resource, if_match=version)
    return _answer(request, result, base)
