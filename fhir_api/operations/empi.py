"""Regional patient identity (EMPI) operations:

* ``POST Patient/$match`` (http://hl7.org/fhir/R4/patient-operation-match.html);
* ``POST Patient/$merge`` (the FHIR R5 Patient/$merge shape) and ``POST Patient/$unmerge``
  (ours: the body names the merge Provenance in ``merge-record``);
* ``POST Patient/{id}/$empi-link`` / ``$empi-unlink`` (``golden`` = the golden record);
* ``POST Task/{id}/$empi-resolve`` (``decision`` = match | no-match, optional ``golden``).

The review queue is plain search: ``GET Task?code=…/empi|empi-review&status=ready``.
Semantics are in :mod:`ehr.empi.service`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.empi import service
from ehr.errors import BadRequest

from ..auth import token_info
from ..content import body_type, fhir_response, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..limits import in_thread

__all__ = ["router"]

router = APIRouter()
Op = Annotated[Access, Depends(authorize("operation"))]


async def _body(request: Request) -> Any:
    negotiate(request)
    body_type(request)
    return await read_json_body(request)


async def _by(request: Request) -> str | None:
    info = await token_info(request)
    return (info.fhir_user or f"Device/{info.client_id}") if info else None


def _param(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The body must be a Parameters resource", "structure")
    for p in body.get("parameter") or ():
        if p.get("name") == name:
            for k, v in p.items():
                if k.startswith("value"):
                    return v["reference"].split("/")[-1] if k == "valueReference" else v
    return None


@router.post("/Patient/$match", name="patient-match", response_class=Response)
async def match(request: Request, access: Op, store: StoreDep, base: BaseUrlDep) -> Response:
    body = await _body(request)
    return fhir_response(request, await in_thread(service.match_operation, store, body, base=base))


@router.post("/Patient/$merge", name="patient-merge", response_class=Response)
async def merge(request: Request, access: Op, store: StoreDep) -> Response:
    body = await _body(request)
    return fhir_response(
        request, await in_thread(service.merge_operation, store, body, by=await _by(request))
    )


@router.post("/Patient/$unmerge", name="patient-unmerge", response_class=Response)
async def unmerge(request: Request, access: Op, store: StoreDep) -> Response:
    record = _param(await _body(request), "merge-record")
    if not isinstance(record, str):
        raise BadRequest("$unmerge needs 'merge-record' (a Provenance reference or id)", "required")
    return fhir_response(
        request, await in_thread(service.unmerge, store, record, by=await _by(request))
    )


@router.post("/Patient/{rid}/$empi-link", name="patient-empi-link", response_class=Response)
async def link(request: Request, rid: str, access: Op, store: StoreDep) -> Response:
    golden = _param(await _body(request), "golden")
    if not isinstance(golden, str):
        raise BadRequest("$empi-link needs 'golden' (the golden record)", "required")
    return fhir_response(
        request, await in_thread(service.link, store, rid, golden, by=await _by(request))
    )


@router.post("/Patient/{rid}/$empi-unlink", name="patient-empi-unlink", response_class=Response)
async def unlink(request: Request, rid: str, access: Op, store: StoreDep) -> Response:
    golden = _param(await _body(request), "golden")
    if not isinstance(golden, str):
        raise BadRequest("$empi-unlink needs 'golden' (the golden record)", "required")
    new_golden = await in_thread(service.unlink, store, rid, golden, by=await _by(request))
    out = {
        "resourceType": "Parameters",
        "parameter": [{"name": "golden", "valueReference": {"reference": f"Patient/{new_golden}"}}],
    }
    return fhir_response(request, out)


@router.post("/Task/{rid}/$empi-resolve", name="task-empi-resolve", response_class=Response)
async def resolve(request: Request, rid: str, access: Op, store: StoreDep) -> Response:
    body = await _body(request)
    decision = _param(body, "decision")
    if decision not in ("match", "no-match"):
        raise BadRequest("$empi-resolve needs 'decision' = match | no-match", "required")
    task = await in_thread(
        service.resolve_review,
        store,
        rid,
        decision,
        golden_id=_param(body, "golden"),
        by=await _by(request),
        note=_param(body, "note"),
    )
    return fhir_response(request, task)
