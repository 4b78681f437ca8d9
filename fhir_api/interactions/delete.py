"""delete: ``DELETE [base]/[type]/[id]`` (http://hl7.org/fhir/R4/http.html#delete), and
conditional delete ``DELETE [base]/[type]?[search]`` (http://hl7.org/fhir/R4/http.html#3.1.0.7.1).

Answer: **200 with an OperationOutcome** saying what was deleted (and the deletion version's
``ETag``), or 204 with no body when the client sends ``Prefer: return=minimal``. Deleting a
resource that is already deleted, or never existed, succeeds the same way (the spec makes delete
idempotent) and writes nothing. Later reads answer 410.

Conditional delete: no match -> 200, nothing written; one match -> deleted; several -> 412,
unless ``_multiple=true`` asks to delete them all (up to the store's limit, 412 beyond it).
``If-Match`` on a delete by id makes it version-aware (412 on a stale version).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest

from ..content import fhir_response, negotiate
from ..deps import Access, StoreDep, authorize
from ..headers import if_match, prefer, version_headers
from ..limits import in_thread
from ._common import TYPE, check_id, check_type, condition, info_outcome

__all__ = ["router"]

router = APIRouter()


def _answer(request: Request, texts: list[str], headers: dict[str, str]) -> Response:
    if prefer(request).get("return", "").lower() == "minimal":
        return Response(status_code=204, headers=headers)
    return fhir_response(request, info_outcome(*texts), headers=headers)


@router.delete(TYPE + "/{rid}", name="delete", response_class=Response)
async def delete(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("delete"))],
    store: StoreDep,
) -> Response:
    check_type(rtype)
    check_id(rid)
    negotiate(request)
    version = if_match(request)
    result = await in_thread(store.delete, rtype, rid, if_match=version)
    if result is None:
        return _answer(
            request, [f"{rtype}/{rid} does not exist or is already deleted; nothing to do"], {}
        )
    text = f"Deleted {rtype}/{rid} (version {result.version})"
    return _answer(request, [text], version_headers(result.version, result.last_updated))


@router.delete(TYPE, name="conditional-delete", response_class=Response)
async def conditional_delete(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("delete"))],
    store: StoreDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    multiple = request.query_params.get("_multiple", "false").lower()
    if multiple not in ("true", "false"):
        raise BadRequest(f"_multiple must be true or false, not {multiple!r}", "value")
    query = condition(request, drop=frozenset({"_multiple"}))
    results = await in_thread(store.conditional_delete, rtype, query, multiple=multiple == "true")
    if not results:
        return _answer(request, [f"No {rtype} matches '{query}'; nothing deleted"], {})
    texts = [f"Deleted {r.rtype}/{r.rid} (version {r.version})" for r in results]
    headers = (
        version_headers(results[0].version, results[0].last_updated) if len(results) == 1 else {}
    )
    return _answer(request, texts, headers)
