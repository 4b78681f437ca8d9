"""``$reindex``: rebuild the search index over HTTP, as an asynchronous job.

There is no ``$reindex`` in FHIR R4 itself; this follows HAPI FHIR's operation of the same name
(https://hapifhir.io/hapi-fhir/docs/server_jpa/search.html#reindexing) and the async pattern of
http://hl7.org/fhir/R4/async.html. The work is :mod:`ehr.search.reindex` (the ``ehr reindex``
command runs the same jobs)::

    POST [base]/$reindex                   every resource (or ``type``) -> 202
    POST [base]/[type]/$reindex            the resources of one type    -> 202
    POST [base]/[type]/[id]/$reindex       one resource, at once        -> 200 Parameters
    GET  [base]/$reindex-status/{job}      202 + X-Progress while it runs; 200 when done or
                                           cancelled; 500 OperationOutcome when it failed
    DELETE [base]/$reindex-status/{job}    cancel (after the current chunk) -> 202

A job over one type has its status at ``[base]/[type]/$reindex-status/{job}`` (both forms
work), so a token scoped to that type can poll it.

Kick-off parameters, in the query or a ``Parameters`` body: ``type`` (system level only: one
resource type), ``searchParameter`` (the canonical url of a SearchParameter: the types it applies
to), ``batchSize`` (resources per transaction, default 500), ``job`` (resume that job instead of
starting one). The 202 carries ``Content-Location`` (the status URL) and the job as a
``Parameters`` resource (``job``, ``status``, ``done``, ``total``, ``rate``, ``eta-seconds``).

The job is a row of ``reindex_jobs`` that moves forward one committed chunk at a time, so it
**survives a restart**: the next status request (to any worker) finds it queued, paused or
``running`` without a heartbeat for a minute and resumes it from its last chunk
(:func:`ehr.search.reindex.ensure_running`). A failed job is resumed by ``POST $reindex`` with
``job``.

Who: a backend service with a ``system/`` write scope on the types concerned (``system/*.u``,
``system/*.cruds`` or ``system/Patient.u`` for ``Patient/$reindex``), or an administrator
(role ``admin``) with such a ``user/`` scope. Anyone else gets a 403 before any work: it
rewrites every record's index, which no patient- or clinician-level token should trigger.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.accounts.scopes import ScopeSet
from ehr.definitions import resource_types
from ehr.errors import BadRequest, Forbidden, Issue, NotFound, operation_outcome
from ehr.search.reindex import (
    DEFAULT_CHUNK,
    ReindexStatus,
    cancel_job,
    ensure_running,
    job_status,
    reindex_resource,
    start_background,
)
from ehr.security import current_guard

from ..content import body_type, fhir_response, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, check_access
from ..interactions._common import TYPE, check_id, check_type
from ..limits import in_thread

__all__ = ["PARAMETERS", "may_reindex", "router"]

router = APIRouter()

#: kick-off parameter -> the Parameters value[x] it comes as
PARAMETERS = {
    "type": "valueCode",
    "searchParameter": "valueUri",
    "batchSize": "valueInteger",
    "job": "valueString",
}
MAX_BATCH = 10_000
RETRY_AFTER_S = 2


def may_reindex(scopes: ScopeSet, roles: tuple[str, ...], is_user: bool, rtype: str | None) -> bool:
    """A backend service with an unconstrained ``system/`` write scope on ``rtype`` (``*`` when
    None), or an administrator with such a ``user/`` scope."""
    context = ("user" if "admin" in roles else None) if is_user else "system"
    if context is None:
        return False
    return any(
        s.context == context
        and "u" in s.interactions
        and not s.params
        and (s.rtype == "*" or (rtype is not None and s.rtype == rtype))
        for s in scopes.resources
    )


async def _admin(request: Request) -> Access:
    """The operation's authorization: the policy's check of the token (401/403), then the
    reindex rule (403). Without a security layer (``allow_all``) nothing is checked."""
    access = await check_access(request, "operation")
    guard = current_guard.get()
    if guard is not None:
        p = guard.principal
        rtype = request.path_params.get("rtype") or request.query_params.get("type")
        if not may_reindex(p.scopes, tuple(p.roles), p.is_user, rtype):
            raise Forbidden(
                "$reindex needs a system-level write scope (system/*.u, or system/[type].u for "
                "one type), or an administrator's user/*.u"
            )
    return access


Admin = Annotated[Access, Depends(_admin)]


async def _kick_off_params(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}

    def put(name: str, value: Any) -> None:
        if name not in PARAMETERS:
            raise BadRequest(
                f"Unknown $reindex parameter {name!r} (known: {', '.join(PARAMETERS)})",
                "not-supported",
            )
        if name in out:
            raise BadRequest(f"$reindex parameter {name!r} is given twice")
        out[name] = str(value)

    for k, v in request.query_params.multi_items():
        if k not in ("_format", "_pretty"):
            put(k, v)
    if await request.body():
        body_type(request)
        body = await read_json_body(request)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest("A $reindex body must be a Parameters resource", "structure")
        for p in body.get("parameter") or ():
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise BadRequest("Each parameter needs a name", "structure")
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if value is None:
                raise BadRequest(f"Parameter {p['name']!r} has no value", "required")
            put(p["name"], value)
    return out


def _batch_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_CHUNK
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest(f"batchSize must be an integer, not {raw!r}") from None
    if not 1 <= n <= MAX_BATCH:
        raise BadRequest(f"batchSize must be between 1 and {MAX_BATCH}")
    return n


def _status_url(base: str, job: ReindexStatus) -> str:
    """A one-type job's status is under its type, so a token scoped to that type may poll it."""
    typed = f"/{job.rtypes[0]}" if job.rtypes and len(job.rtypes) == 1 else ""
    return f"{base}{typed}/$reindex-status/{job.id}"


def _progress(job: ReindexStatus) -> str:
    total = "?" if job.total is None else str(job.total)
    return f"{job.status}: {job.done}/{total} resources"


async def _kick_off(request: Request, store: Any, base: str, rtype: str | None) -> Response:
    negotiate(request)
    p = await _kick_off_params(request)
    if rtype is not None and "type" in p:
        raise BadRequest("'type' is for [base]/$reindex; this URL already names the type")
    rtype = rtype or p.get("type")
    if rtype is not None and rtype not in resource_types():
        raise BadRequest(f"Unknown resource type {rtype!r}", "not-supported")
    chunk = _batch_size(p.get("batchSize"))
    job = await in_thread(
        start_background,
        store,
        rtype=rtype,
        param_url=p.get("searchParameter"),
        chunk=chunk,
        job_id=p.get("job"),
    )
    return fhir_response(
        request,
        job.to_parameters(),
        status=202,
        headers={"Content-Location": _status_url(base, job), "X-Progress": _progress(job)},
    )


@router.post("/$reindex", name="reindex-system", response_class=Response)
async def reindex_system(
    request: Request, access: Admin, store: StoreDep, base: BaseUrlDep
) -> Response:
    return await _kick_off(request, store, base, None)


@router.post(TYPE + "/$reindex", name="reindex-type", response_class=Response)
async def reindex_type(
    request: Request, rtype: str, access: Admin, store: StoreDep, base: BaseUrlDep
) -> Response:
    check_type(rtype)
    return await _kick_off(request, store, base, rtype)


@router.post(TYPE + "/{rid}/$reindex", name="reindex-instance", response_class=Response)
async def reindex_instance(
    request: Request, rtype: str, rid: str, access: Admin, store: StoreDep
) -> Response:
    check_type(rtype)
    check_id(rid)
    negotiate(request)
    rows = await in_thread(reindex_resource, store, rtype, rid)
    params: list[dict[str, Any]] = [{"name": "resource", "valueString": f"{rtype}/{rid}"}]
    params += [{"name": f"rows-{kind}", "valueInteger": n} for kind, n in sorted(rows.items())]
    return fhir_response(request, {"resourceType": "Parameters", "parameter": params})


def _job_of(store: Any, job: str, rtype: str | None) -> ReindexStatus:
    """The job, checked against the type of a typed status URL (404 for another type's job)."""
    st = job_status(store, job)
    if rtype is not None and st.rtypes != (rtype,):
        raise NotFound(f"No reindex job {job!r} of type {rtype}")
    return st


async def _status(request: Request, store: Any, job: str, rtype: str | None) -> Response:
    negotiate(request)
    await in_thread(_job_of, store, job, rtype)
    st = await in_thread(ensure_running, store, job)
    body = st.to_parameters()
    if st.status in ("queued", "running", "paused"):
        headers = {"X-Progress": _progress(st), "Retry-After": str(RETRY_AFTER_S)}
        return fhir_response(request, body, status=202, headers=headers)
    if st.status == "failed":
        issue = Issue(
            "exception",
            f"Reindex job {st.id} failed after {st.done} resources: {st.error}; "
            f"POST $reindex with job={st.id} resumes it",
        )
        return fhir_response(request, operation_outcome([issue]), status=500)
    return fhir_response(request, body)


async def _cancel(request: Request, store: Any, job: str, rtype: str | None) -> Response:
    negotiate(request)
    await in_thread(_job_of, store, job, rtype)
    st = await in_thread(cancel_job, store, job)
    return fhir_response(request, st.to_parameters(), status=202)


@router.get("/$reindex-status/{job}", name="reindex-status", response_class=Response)
async def reindex_status(request: Request, job: str, access: Admin, store: StoreDep) -> Response:
    return await _status(request, store, job, None)


@router.get(TYPE + "/$reindex-status/{job}", name="reindex-status-type", response_class=Response)
async def reindex_status_type(
    request: Request, rtype: str, job: str, access: Admin, store: StoreDep
) -> Response:
    return await _status(request, store, job, rtype)


@router.delete("/$reindex-status/{job}", name="reindex-cancel", response_class=Response)
async def reindex_cancel(request: Request, job: str, access: Admin, store: StoreDep) -> Response:
    return await _cancel(request, store, job, None)


@router.delete(TYPE + "/$reindex-status/{job}", name="reindex-cancel-type", response_class=Response)
async def reindex_cancel_type(
    request: Request, rtype: str, job: str, access: Admin, store: StoreDep
) -> Response:
    return await _cancel(request, store, job, rtype)
