"""Pieces shared by the interaction routes: cheap request checks and write responses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest, Issue, operation_outcome
from ehr.store import WriteResult, check_type
from ehr.validation import check_id

from ..content import FORMAT_PARAMS, fhir_response
from ..headers import prefer, version_headers

__all__ = [
    "TYPE",
    "check_body",
    "check_id",
    "check_type",
    "condition",
    "if_none_exist",
    "info_outcome",
    "query_params",
    "write_response",
]


class ResourceTypeConvertor(Convertor[str]):
    """A path segment that can be a resource type: starts with a capital letter. It keeps
    ``metadata``, ``_history``, ``_search`` and ``$operations`` out of ``{rtype}``, so e.g.
    ``PUT /metadata`` is a 405 rather than a conditional update of a type "metadata"."""

    regex = "[A-Z][A-Za-z]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rtype", ResourceTypeConvertor())

#: the path parameter of a resource type in route paths
TYPE = "/{rtype:rtype}"


def check_body(resource: Any, rtype: str, rid: str | None = None) -> dict[str, Any]:
    """Reject a body that is not a resource of the URL's type (400), and for an update by id one
    whose ``id`` is missing or differs from the URL (400, http://hl7.org/fhir/R4/http.html#update)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise BadRequest(
            "The body must be a FHIR resource: a JSON object with resourceType", "structure"
        )
    if resource["resourceType"] != rtype:
        raise BadRequest(
            f"The body is a {resource['resourceType']}, but the URL is for {rtype}", "invalid"
        )
    if rid is not None:
        if "id" not in resource:
            raise BadRequest(
                f"The body has no id; it must be {rid!r} as in the URL",
                "required",
                expression=["id"],
            )
        if resource["id"] != rid:
            raise BadRequest(
                f"The body's id {resource['id']!r} does not match the URL's id {rid!r}",
                "invalid",
                expression=["id"],
            )
    return resource


def query_params(request: Request, *, drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """The query parameters in order, without ``_format``/``_pretty`` and ``drop``."""
    skip = FORMAT_PARAMS | drop
    return [(k, v) for k, v in request.query_params.multi_items() if k not in skip]


def condition(request: Request, *, drop: frozenset[str] = frozenset()) -> str:
    """The search condition of a conditional update / patch / delete (the query string)."""
    params = query_params(request, drop=drop)
    if not params:
        raise BadRequest(
            f"{request.method} on a resource type needs search parameters (a conditional "
            f"{request.method.lower()}), or use [type]/[id]",
            "invalid",
        )
    return urlencode(params)


def if_none_exist(request: Request) -> str | None:
    """The ``If-None-Exist`` condition (``identifier=x``; a leading ``Type?`` is tolerated)."""
    raw = request.headers.get("if-none-exist")
    if raw is None:
        return None
    raw = raw.strip()
    if "?" in raw:
        raw = raw.split("?", 1)[1]
    if not raw:
        raise BadRequest("If-None-Exist is empty", "invalid")
    return raw


def info_outcome(*texts: str) -> dict[str, Any]:
    return operation_outcome([Issue("informational", t, "information") for t in texts])


def write_response(
    request: Request, result: WriteResult, base: str, *, status: int, location: bool, message: str
) -> Response:
    """The answer to a create / update / patch, honouring ``Prefer: return=``
    (http://hl7.org/fhir/R4/http.html#ops): ``representation`` (default) the stored resource,
    ``minimal`` no body, ``OperationOutcome`` an outcome describing what happened."""
    headers = version_headers(result.version, result.last_updated)
    if location:
        headers["Location"] = f"{base}/{result.rtype}/{result.rid}/_history/{result.version}"
    wanted = prefer(request).get("return", "representation").lower()
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "operationoutcome":
        text = f"{message} {result.rtype}/{result.rid} (version {result.version})"
        return fhir_response(request, info_outcome(text), status=status, headers=headers)
    return fhir_response(request, result.data, status=status, headers=headers)
