"""``$validate``: ``POST [base]/[type]/$validate`` and ``[base]/[type]/[id]/$validate``
(http://hl7.org/fhir/R4/resource-operation-validate.html).

The body is the resource or a Parameters (``resource``, ``mode``, ``profile``); ``mode`` and
``profile`` may also come as query parameters. The answer is always an OperationOutcome listing
every issue with its FHIRPath location (200, even when it reports errors: the operation worked).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.operations.validate import parse_validate_parameters, validate_operation

from ..content import body_type, fhir_response, negotiate, read_json_body
from ..deps import Access, StoreDep, authorize
from ..interactions._common import TYPE, check_id, check_type
from ..limits import in_thread

__all__ = ["router"]

router = APIRouter()


async def _run(request: Request, store: StoreDep, rtype: str, rid: str | None) -> Response:
    check_type(rtype)
    if rid is not None:
        check_id(rid)
    negotiate(request)
    resource, mode, profile = None, None, None
    if await request.body():
        body_type(request)
        resource, mode, profile = parse_validate_parameters(await read_json_body(request))
    mode = request.query_params.get("mode", mode)
    profile = request.query_params.get("profile", profile)
    outcome = await in_thread(
        validate_operation, store, rtype, resource, rid=rid, mode=mode, profile=profile
    )
    return fhir_response(request, outcome)


@router.post(TYPE + "/$validate", name="validate-type", response_class=Response)
async def validate_type(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("operation"))],
    store: StoreDep,
) -> Response:
    return await _run(request, store, rtype, None)


@router.post(TYPE + "/{rid}/$validate", name="validate-instance", response_class=Response)
async def validate_instance(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("operation"))],
    store: StoreDep,
) -> Response:
    return await _run(request, store, rtype, rid)
