"""patch: ``PATCH [base]/[type]/[id]`` and conditional ``PATCH [base]/[type]?[search]``
(http://hl7.org/fhir/R4/http.html#patch).

The body's content type picks the format:

* ``application/json-patch+json``: JSON Patch (RFC 6902);
* ``application/fhir+json`` (or ``application/json``) with a ``Parameters`` body: FHIRPath Patch
  (http://hl7.org/fhir/R4/fhirpatch.html). A JSON array sent as ``application/json`` is taken as
  JSON Patch, as many clients send it that way.

``If-Match`` makes it version-aware (412 on a stale version). 404 / 410 for an unknown or deleted
resource; a malformed patch is a 400, one that cannot be applied a 422. A conditional patch
matching no resource is a 404, several a 412.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest

from ..content import FHIR_JSON, JSON_PATCH, body_type, negotiate, read_json_body
from ..deps import Access, BaseUrlDep, StoreDep, authorize
from ..headers import if_match
from ..limits import in_thread
from ._common import TYPE, check_id, check_type, condition, write_response

__all__ = ["PATCH_FORMATS", "router"]

router = APIRouter()

#: Content types a PATCH body may have (for the CapabilityStatement's patchFormat).
PATCH_FORMATS = (JSON_PATCH, FHIR_JSON)
_ALLOWED = frozenset(PATCH_FORMATS)


async def _read_patch(request: Request) -> tuple[str, Any]:
    media = body_type(request, allow=_ALLOWED)
    body = await read_json_body(request)
    if media == JSON_PATCH or isinstance(body, list):
        if not isinstance(body, list):
            raise BadRequest("A JSON Patch document is a JSON array of operations", "structure")
        return "json", body
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest(
            f"A FHIRPath Patch is a Parameters resource; for JSON Patch send {JSON_PATCH}",
            "structure",
        )
    return "fhirpath", body


@router.patch(TYPE + "/{rid}", name="patch", response_class=Response)
async def patch(
    request: Request,
    rtype: str,
    rid: str,
    access: Annotated[Access, Depends(authorize("patch"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    check_id(rid)
    negotiate(request)
    version = if_match(request)
    kind, document = await _read_patch(request)
    result = await in_thread(store.patch, rtype, rid, kind, document, if_match=version)
    return write_response(request, result, base, status=200, location=False, message="Patched")


@router.patch(TYPE, name="conditional-patch", response_class=Response)
async def conditional_patch(
    request: Request,
    rtype: str,
    access: Annotated[Access, Depends(authorize("patch"))],
    store: StoreDep,
    base: BaseUrlDep,
) -> Response:
    check_type(rtype)
    negotiate(request)
    query = condition(request)
    version = if_match(request)
    kind, document = await _read_patch(request)
    result = await in_thread(
        store.conditional_patch, rtype, query, kind, document, if_match=version
    )
    return write_response(request, result, base, status=200, location=False, message="Patched")
