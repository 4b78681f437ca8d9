"""batch / transaction: ``POST [base]`` with a Bundle (http://hl7.org/fhir/R4/http.html#transaction).

The semantics are the store's (:mod:`ehr.transaction`); this adapter reads the body, answers the
GET entries (read, vread, search inside the same database transaction, so a transaction's reads
see its writes) and renders the response Bundle. A transaction error is one OperationOutcome
naming the entry (``Bundle.entry[i]``); a batch answers every entry on its own.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest, Gone, NotFound
from ehr.model import loads
from ehr.search.bundle import searchset_bundle
from ehr.search.dates import us_to_instant
from ehr.store import Store, WriteContext
from ehr.transaction import EntryRequest, process_bundle

from ..content import body_type, fhir_response, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, SettingsDep, StoreDep, authorize
from ..limits import in_thread

__all__ = ["router"]

router = APIRouter()


def _reader(store: Store, base: str) -> Any:
    def read(ctx: WriteContext, e: EntryRequest) -> dict[str, Any]:
        if not e.rtype:
            raise BadRequest(f"{e.where}: GET needs a resource type")
        if e.rid is None:  # search
            params = parse_qsl(e.query or "", keep_blank_values=True)
            page = store.search_engine.search(ctx.conn, e.rtype, params, base=base)
            bundle = loads(searchset_bundle(page, base=base, path=e.rtype))
            return {"resource": bundle, "response": {"status": "200 OK"}}
        if e.vid is not None:
            found = ctx.repo.version(e.rtype, e.rid, int(e.vid)) if e.vid.isdigit() else None
            if found is None:
                raise NotFound(f"{e.rtype}/{e.rid}/_history/{e.vid} not found")
            ts, deleted, data = found
            version = int(e.vid)
        else:
            cur = ctx.repo.current(e.rtype, e.rid)
            if cur is None:
                raise NotFound(f"{e.rtype}/{e.rid} not found")
            ts, deleted, data, version = cur.last_updated, cur.deleted, cur.data, cur.version
        if deleted or data is None:
            raise Gone(f"{e.rtype}/{e.rid} was deleted")
        return {
            "resource": loads(data),
            "response": {
                "status": "200 OK",
                "etag": f'W/"{version}"',
                "lastModified": us_to_instant(ts),
            },
        }

    return read


@router.post("", name="transaction", response_class=Response)
@router.post("/", name="transaction-slash", response_class=Response, include_in_schema=False)
async def transaction(
    request: Request,
    access: Annotated[Access, Depends(authorize("transaction"))],
    store: StoreDep,
    settings: SettingsDep,
    base: BaseUrlDep,
) -> Response:
    negotiate(request)
    body_type(request)
    bundle = await read_json_body(request)
    check_entry = getattr(request.state, "check_bundle_entry", None)
    result = await in_thread(
        process_bundle,
        store,
        bundle,
        base=base,
        max_entries=settings.max_bundle_entries,
        read=_reader(store, base),
        check_entry=check_entry,
    )
    return fhir_response(request, result)
