"""history: ``GET [base]/[type]/[id]/_history``, ``[base]/[type]/_history`` and
``[base]/_history`` (http://hl7.org/fhir/R4/http.html#history).

A Bundle of type ``history``, newest first. Parameters: ``_count`` (page size, clamped to the
configured maximum), ``_since`` (versions written at or after an instant), ``_at`` (versions
current during a date-precision range); the next page is linked with an opaque ``_cursor``.
Each entry has ``request`` (POST for a version-1 create, PUT for an update (a patch shows as
PUT), DELETE for a deletion) and ``response`` (status, etag, lastModified); entries embed the stored
bytes unparsed (``orjson.Fragment``). An unknown type or id is a 404, a bad parameter a 400.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest
from ehr.history import HistoryEntry, HistoryPage
from ehr.search.dates import date_range, now_us, us_to_instant
from ehr.settings import Settings
from ehr.store import Store

from ..content import fhir_response, negotiate
from ..deps import Access, BaseUrlDep, SettingsDep, StoreDep, authorize
from ..limits import in_thread
from ._common import TYPE, check_id, check_type, query_params

__all__ = ["history_bundle", "router"]

router = APIRouter()


def _entry(e: HistoryEntry, base: str) -> dict[str, Any]:
    if e.deleted:
        request = {"method": "DELETE", "url": f"{e.rtype}/{e.rid}"}
        status = "200 OK"
    elif e.version == 1 and e.method == "create":
        request = {"method": "POST", "url": e.rtype}
        status = "201 Created"
    else:
        request = {"method": "PUT", "url": f"{e.rtype}/{e.rid}"}
        status = "200 OK"
    out: dict[str, Any] = {"fullUrl": f"{base}/{e.rtype}/{e.rid}"}
    if e.data is not None:
        out["resource"] = orjson.Fragment(e.data)
    out["request"] = request
    out["response"] = {
        "status": status,
        "etag": f'W/"{e.version}"',
        "lastModified": us_to_instant(e.last_updated),
    }
    return out


def history_bundle(
    page: HistoryPage, *, base: str, path: str, params: list[tuple[str, str]]
) -> bytes:
    """The history Bundle of one page; ``path`` (e.g. ``Patient/1/_history``) and ``params``
    (the request's, without ``_cursor``) make the self and next links."""
    query = urlencode(params)
    self_url = f"{base}/{path}" + (f"?{query}" if query else "")
    links = [{"relation": "self", "url": self_url}]
    if page.next_cursor:
        nxt = urlencode([*params, ("_cursor", page.next_cursor)])
        links.append({"relation": "next", "url": f"{base}/{path}?{nxt}"})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": us_to_instant(now_us())},
        "type": "history",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    bundle["entry"] = [_entry(e, base) for e in page.entries]
    return orjson.dumps(bundle)


def _options(request: Request, default_count: int, max_count: int) -> dict[str, Any]:
    q = request.query_params
    opts: dict[str, Any] = {"count": default_count}
    if "_count" in q:
        raw = q["_count"]
        if not raw.isdigit():
            raise BadRequest(f"_count must be a non-negative integer, not {raw!r}", "value")
        opts["count"] = max(1, min(int(raw), max_count))
    if "_since" in q:
        try:
            opts["since"] = date_range(q["_since"])[0]
        except ValueError as exc:
            raise BadRequest(f"_since must be an instant, not {q['_since']!r}", "value") from exc
    if "_at" in q:
        try:
            opts["at"] = date_range(q["_at"])
        except ValueError as exc:
            raise BadRequest(f"_at must be a date or dateTime, not {q['_at']!r}", "value") from exc
    if "_cursor" in q:
        opts["cursor"] = q["_cursor"]
    return opts


async def _history(
    request: Request, store: Store, settings: Settings, base: str, path: str, **target: str
) -> Response:
    negotiate(request)
    opts = _options(request, settings.default_count, settings.max_count)
    page = await in_thread(store.history, **target, **opts)
    params = query_params(request, drop=frozenset({"_cursor"}))
    body = history_bundle(page, base=base, path=path, params=params)
    return fhir_response(request, body)


@router.get("/_history", name="history-system", response_class=Response)
async def history_system(
    request: Request,
    access: Annotated[Access, Depends(authorize("history-system"))],
    store: StoreDep,
    settings: SettingsDep,
    base: BaseUrlDep,
) -> Response:
    return await _history(request, store, settings, base, "_history")


@router.get(TYPE + "/_history", name="history-type", response_class=Response)
async def history_type(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("history-type"))],
    store: StoreDep,
    settings: SettingsDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    return await _history(request, store, settings, base, f"{rtype}/_history", rtype=rtype)


@router.get(TYPE + "/{rid}/_history", name="history-instance", response_class=Response)
async def history_instance(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("history-instance"))],
    store: StoreDep,
    settings: SettingsDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    check_id(rid)
    return await _history(
        request, store, settings, base, f"{rtype}/{rid}/_history", rtype=rtype, rid=rid
    )
