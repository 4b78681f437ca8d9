"""create: ``POST [base]/[type]`` (http://hl7.org/fhir/R4/http.html#create), and conditional
create with ``If-None-Exist`` (http://hl7.org/fhir/R4/http.html#ccreate).

201 with ``Location: [base]/[type]/[id]/_history/[vid]``, ``ETag`` and ``Last-Modified``.
With ``If-None-Exist``: one match -> 200 with the existing resource (nothing written), several
matches -> 412. Any id in the body is ignored (the server assigns one). Checked before any work:
the type (404), the body's content type (415), JSON (400), its resourceType against the URL (400);
then the store validates (422).

A plain Starlette route, like read (no FastAPI dependency injection, a large share of the
request's CPU time on this hot path); its first statement is the authorization check.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ehr.store import Store

from ..content import body_type, negotiate, read_json_body
from ..deps import base_url, check_access
from ..limits import in_thread
from ._common import TYPE, check_body, check_type, if_none_exist, write_response

__all__ = ["router"]


async def create(request: Request) -> Response:
    await check_access(request, "create")
    rtype: str = request.path_params["rtype"]
    store: Store = request.app.state.store
    base = await base_url(request)
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


router = APIRouter()
router.routes.append(Route(TYPE, create, methods=["POST"], name="create"))
