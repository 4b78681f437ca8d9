"""search: ``GET [base]/[type]?…`` and ``POST [base]/[type]/_search`` (form-encoded),
system-wide ``GET [base]?_type=…`` / ``POST [base]/_search``, and compartment search
``GET [base]/Patient/[id]/[type]`` (``*`` for every type)
(http://hl7.org/fhir/R4/http.html#search, http://hl7.org/fhir/R4/search.html).

The parameters go to :meth:`ehr.store.Store.search` as they came (``_format``/``_pretty`` are
kept for the paging links); the page is rendered by :func:`ehr.search.bundle.searchset_bundle`.
``Prefer: handling=strict`` makes unknown parameters a 400; by default they are ignored and
listed in an ``outcome`` entry (http://hl7.org/fhir/R4/search.html#errors). For POST the body
must be ``application/x-www-form-urlencoded`` (415 otherwise); its parameters join the URL's.

EMPI hook: the search runs through :func:`ehr.empi.spans.search`, so a reference to a golden
record (``Observation?subject=Patient/<golden>``, ``Patient/<golden>/Observation``) or HAPI's
``:mdm`` qualifier (``subject:mdm=Patient/x``) spans the citizen's linked records, within what
the requester may see.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.empi.spans import search as empi_search
from ehr.errors import BadRequest, NotFound
from ehr.search.bundle import searchset_bundle
from ehr.store import Store

from ..content import FORM, body_type, fhir_response, negotiate
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..headers import prefer
from ..limits import in_thread
from ._common import TYPE, check_id, check_type

__all__ = ["router"]

router = APIRouter()

Params = list[tuple[str, str]]


async def _form_params(request: Request) -> Params:
    body_type(request, allow=frozenset({FORM}))
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The form body is not UTF-8", "structure") from exc
    return parse_qsl(text, keep_blank_values=True)


async def _search(
    request: Request,
    store: Store,
    base: str,
    rtype: str | None,
    path: str,
    params: Params,
    compartment: tuple[str, str] | None = None,
) -> Response:
    strict = prefer(request).get("handling", "").lower() == "strict"
    page = await in_thread(
        empi_search, store, rtype, params, strict=strict, compartment=compartment, base=base
    )
    return fhir_response(request, searchset_bundle(page, base=base, path=path))


def _query(request: Request) -> Params:
    return list(request.query_params.multi_items())


@router.get("", name="search-system", response_class=Response)
@router.get("/", name="search-system-slash", response_class=Response, include_in_schema=False)
async def search_system(
    request: Request,
    access: Annotated[Access, Depends(authorize("search-system"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    negotiate(request)
    return await _search(request, store, base, None, "", _query(request))


@router.post("/_search", name="search-system-post", response_class=Response)
async def search_system_post(
    request: Request,
    access: Annotated[Access, Depends(authorize("search-system"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    negotiate(request)
    params = _query(request) + await _form_params(request)
    return await _search(request, store, base, None, "", params)


@router.post(TYPE + "/_search", name="search-type-post", response_class=Response)
async def search_type_post(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("search-type"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    params = _query(request) + await _form_params(request)
    return await _search(request, store, base, rtype, rtype, params)


@router.get(TYPE + "/{rid}/{ctype}", name="search-compartment", response_class=Response)
async def search_compartment(
    request: Request,
    rtype: str,
    rid: str,
    ctype: str,
    access: Annotated[Access, Depends(authorize("search-type"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    check_id(rid)
    if ctype != "*":
        check_type(ctype)
    if rtype != "Patient":
        raise NotFound(f"Compartment {rtype} is not supported (only Patient)", "not-supported")
    negotiate(request)
    target = None if ctype == "*" else ctype
    path = f"{rtype}/{rid}/{ctype}"
    return await _search(request, store, base, target, path, _query(request), (rtype, rid))


@router.get(TYPE, name="search-type", response_class=Response)
async def search_type(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("search-type"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    return await _search(request, store, base, rtype, rtype, _query(request))
