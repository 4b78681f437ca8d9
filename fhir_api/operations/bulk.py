"""FHIR Bulk Data Access 2.0 (https://hl7.org/fhir/uv/bulkdata/export.html): the async pattern.

* kick-off: ``GET|POST [base]/$export``, ``[base]/Patient/$export``, ``[base]/Group/{id}/$export``
  with ``Prefer: respond-async`` -> 202 + ``Content-Location: [base]/$bulk-status/{job}``;
  ``POST [base]/$import`` (Parameters with ndjson ``file://`` inputs) likewise;
* status: ``GET [base]/$bulk-status/{job}`` -> 202 with ``X-Progress`` and ``Retry-After`` while
  it runs, 200 with the manifest when complete, 500 with an OperationOutcome if it failed;
  ``DELETE`` cancels (202) and removes the files;
* files: ``GET [base]/$bulk-files/{job}/{name}`` (``requiresAccessToken: true``: the same token
  that started the job; a job is visible to its owner only).

Jobs are persisted and run by :class:`ehr.bulk.BulkWorker` in the background (started with the
app); they survive a restart.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ehr import bulk
from ehr.errors import BadRequest

from ..auth import token_info
from ..content import body_type, fhir_response, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..headers import prefer
from ..limits import in_thread

__all__ = ["router"]

router = APIRouter()
Export = Annotated[Access, Depends(authorize("export"))]


async def _owner(request: Request) -> str | None:
    info = await token_info(request)
    return info.client_id if info else None


def _async_required(request: Request) -> None:
    if prefer(request).get("respond-async") is None:
        raise BadRequest("Bulk Data requests need the header 'Prefer: respond-async'", "invalid")


async def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    if request.method == "POST" and await request.body():
        body_type(request)
        body = await read_json_body(request)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest("A POST $export body must be a Parameters resource", "structure")
        for p in body.get("parameter") or ():
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(value, dict) and "reference" in value:
                value = value["reference"]
            if p.get("name") and value is not None:
                out.setdefault(p["name"], []).append(str(value))
    return out


async def _kick_off(
    request: Request, store: Any, base: str, level: str, group_id: str | None
) -> Response:
    _async_required(request)
    p = await _params(request)
    job = await in_thread(
        bulk.kick_off,
        store,
        level,
        group_id=group_id,
        types=",".join(p.get("_type", [])) or None,
        since=next(iter(p.get("_since", [])), None),
        type_filters=p.get("_typeFilter"),
        output_format=next(iter(p.get("_outputFormat", [])), None),
        patients=p.get("patient"),
        owner=await _owner(request),
        request_url=str(request.url),
    )
    worker = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.notify()
    return Response(status_code=202, headers={"Content-Location": f"{base}/$bulk-status/{job}"})


@router.api_route(
    "/$export", methods=["GET", "POST"], name="export-system", response_class=Response
)
async def export_system(
    request: Request, access: Export, store: StoreDep, base: BaseUrlDep
) -> Response:
    return await _kick_off(request, store, base, "system", None)


@router.api_route(
    "/Patient/$export", methods=["GET", "POST"], name="export-patient", response_class=Response
)
async def export_patient(
    request: Request, access: Export, store: StoreDep, base: BaseUrlDep
) -> Response:
    return await _kick_off(request, store, base, "patient", None)


@router.api_route(
    "/Group/{rid}/$export", methods=["GET", "POST"], name="export-group", response_class=Response
)
async def export_group(
    request: Request, rid: str, access: Export, store: StoreDep, base: BaseUrlDep
) -> Response:
    return await _kick_off(request, store, base, "group", rid)


@router.post("/$import", name="import", response_class=Response)
async def import_(
    request: Request,
    access: Annotated[Access, Depends(authorize("import"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    _async_required(request)
    body_type(request)
    inputs, fmt = bulk.parse_import_parameters(await read_json_body(request))
    job = await in_thread(
        bulk.kick_off_import,
        store,
        inputs,
        input_format=fmt,
        owner=await _owner(request),
        request_url=str(request.url),
    )
    worker = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.notify()
    return Response(status_code=202, headers={"Content-Location": f"{base}/$bulk-status/{job}"})


@router.get("/$bulk-status/{job}", name="bulk-status", response_class=Response)
async def job_status(
    request: Request, job: str, access: Export, store: StoreDep, base: BaseUrlDep
) -> Response:
    st = await in_thread(
        bulk.status, store, job, base_url=f"{base}/$bulk-files", owner=await _owner(request)
    )
    if st.in_progress:
        return Response(
            status_code=202, headers={"X-Progress": st.progress, "Retry-After": str(st.retry_after)}
        )
    if st.status == "failed":
        return fhir_response(request, st.outcome, status=500)
    return fhir_response(request, st.manifest, media_type="application/json")


@router.delete("/$bulk-status/{job}", name="bulk-cancel", response_class=Response)
async def job_cancel(request: Request, job: str, access: Export, store: StoreDep) -> Response:
    await in_thread(
        bulk.cancel,
        store,
        job,
        owner=await _owner(request),
        data_dir=request.app.state.settings.data_dir,
    )
    return Response(status_code=202)


@router.get("/$bulk-files/{job}/{name}", name="bulk-file", response_class=Response)
async def job_file(
    request: Request, job: str, name: str, access: Export, store: StoreDep
) -> Response:
    fh = await in_thread(
        bulk.open_file,
        store,
        job,
        name,
        owner=await _owner(request),
        data_dir=request.app.state.settings.data_dir,
    )

    def chunks() -> Any:
        with fh:
            while block := fh.read(256 * 1024):
                yield block

    return StreamingResponse(chunks(), media_type="application/fhir+ndjson")
