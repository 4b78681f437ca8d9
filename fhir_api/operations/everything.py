"""``Patient/{id}/$everything`` (http://hl7.org/fhir/R4/patient-operation-everything.html) and
``Patient/{id}/$summary`` (an International-Patient-Summary-style document Bundle).

``$everything`` takes ``_since``, ``_type`` and ``_count`` (GET query or POST Parameters) and
pages with a cursor. On a golden record (EMPI) it spans every linked source Patient; with
``_mdm=true`` (HAPI FHIR's parameter) a hospital's record spans every record of its citizen too.
Either way only the records the requester may see (:mod:`ehr.empi.spans`).
Semantics: :mod:`ehr.operations.everything` and :mod:`ehr.operations.summary`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.empi.service import linked_patient_ids, person_patient_ids
from ehr.operations.everything import everything_bundle, parameters_to_params
from ehr.operations.summary import patient_summary

from ..content import body_type, fhir_response, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..interactions._common import check_id
from ..limits import in_thread

__all__ = ["router"]

router = APIRouter()
Op = Annotated[Access, Depends(authorize("operation"))]


@router.api_route(
    "/Patient/{rid}/$everything",
    methods=["GET", "POST"],
    name="patient-everything",
    response_class=Response,
)
async def everything(
    request: Request, rid: str, access: Op, store: StoreDep, base: BaseUrlDep
) -> Response:
    check_id(rid)
    negotiate(request)
    params = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]
    if request.method == "POST" and await request.body():
        body_type(request)
        params += parameters_to_params(await read_json_body(request))
    span = person_patient_ids if ("_mdm", "true") in params else linked_patient_ids
    ids = await in_thread(span, store, rid)
    body = await in_thread(everything_bundle, store, rid, params, base=base, patient_ids=ids)
    return fhir_response(request, body)


@router.get("/Patient/{rid}/$summary", name="patient-summary", response_class=Response)
async def summary(
    request: Request, rid: str, access: Op, store: StoreDep, base: BaseUrlDep
) -> Response:
    check_id(rid)
    negotiate(request)
    return fhir_response(request, await in_thread(patient_summary, store, rid, base=base))
