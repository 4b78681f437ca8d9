"""Content negotiation and request bodies (http://hl7.org/fhir/R4/http.html#mime-type).

* Responses are JSON only: ``Accept`` (or the ``_format`` parameter, which wins) must allow
  ``application/fhir+json`` or ``application/json``; XML (or anything else) is a 406.
* The response carries ``application/fhir+json`` unless the client asked for ``application/json``
  alone. ``_pretty=true`` indents it (http://hl7.org/fhir/R4/http.html#parameters).
* A request body must be ``application/fhir+json`` or ``application/json`` (415 otherwise);
  a PATCH may also send ``application/json-patch+json``; ``POST _search`` sends a form.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ehr.errors import BadRequest, FhirError, UnsupportedMediaType
from ehr.model import loads

__all__ = [
    "FHIR_JSON",
    "FORM",
    "JSON",
    "JSON_PATCH",
    "FORMAT_PARAMS",
    "body_type",
    "fhir_response",
    "is_pretty",
    "negotiate",
    "read_json_body",
    "render",
]

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

#: Parameters about the response's form, never part of a search or a condition.
FORMAT_PARAMS = frozenset({"_format", "_pretty"})

_JSON_TYPES = frozenset({FHIR_JSON, JSON, "application/json+fhir", "text/json"})
_WILDCARDS = frozenset({"*/*", "application/*"})
_FORMAT_ALIASES = {"json": FHIR_JSON, "fhir+json": FHIR_JSON}


def _not_acceptable(what: str) -> FhirError:
    return FhirError(
        406, "not-supported", f"This server speaks JSON only ({FHIR_JSON}); cannot produce {what}"
    )


@lru_cache(maxsize=256)
def _media_for(accept: str | None, fmt: str | None) -> str:
    if fmt is not None:
        f = fmt.strip().replace(" ", "+").split(";")[0].strip().lower()  # '+' unescaped in a URL
        f = _FORMAT_ALIASES.get(f, f)
        if f in _JSON_TYPES:
            return JSON if f == JSON else FHIR_JSON
        raise _not_acceptable(f"_format={fmt}")
    if not accept:
        return FHIR_JSON
    offered: list[str] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        offered.append(media)
    if any(m in _WILDCARDS or m.endswith("+json") and m != JSON_PATCH for m in offered):
        return FHIR_JSON
    if FHIR_JSON in offered or "application/json+fhir" in offered:
        return FHIR_JSON
    if JSON in offered or "text/json" in offered:
        return JSON
    raise _not_acceptable(accept)


def negotiate(request: Request) -> str:
    """The media type of the response; 406 when the client accepts no JSON."""
    fmt = request.query_params.get("_format") if request.scope.get("query_string") else None
    return _media_for(request.headers.get("accept"), fmt)


def is_pretty(request: Request) -> bool:
    if not request.scope.get("query_string"):  # the common case: no query to parse
        return False
    return request.query_params.get("_pretty", "").lower() == "true"


def render(data: bytes, pretty: bool) -> bytes:
    """``data`` as served, or re-indented for ``_pretty=true``."""
    if not pretty:
        return data
    return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2)


def fhir_response(
    request: Request,
    content: bytes | dict[str, Any] | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str | None = None,
) -> Response:
    """A JSON response in the negotiated media type. ``None`` content gives an empty body."""
    if content is None:
        return Response(status_code=status, headers=headers)
    if isinstance(content, dict):
        body = orjson.dumps(content, option=orjson.OPT_INDENT_2 if is_pretty(request) else 0)
    else:
        body = render(content, is_pretty(request))
    return Response(
        body,
        status_code=status,
        headers=headers,
        media_type=(media_type or negotiate(request)) + "; charset=utf-8",
    )


def _content_type(request: Request) -> tuple[str, str | None]:
    raw = request.headers.get("content-type", "")
    media, *params = (p.strip() for p in raw.split(";"))
    charset = None
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower()
    return media.lower(), charset


def body_type(request: Request, *, allow: frozenset[str] = frozenset({FHIR_JSON})) -> str:
    """The body's media type, normalised (``application/json`` counts as FHIR JSON); 415 if it is
    not in ``allow``."""
    media, charset = _content_type(request)
    if media in (JSON, "application/json+fhir"):
        media = FHIR_JSON
    if media not in allow:
        wanted = " or ".join(sorted(allow | ({JSON} if FHIR_JSON in allow else set())))
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not supported here; send {wanted}"
        )
    if charset not in (None, "utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; send UTF-8")
    return media


async def read_json_body(request: Request) -> Any:
    """The parsed body (400 if it is not JSON; empty is a 400 too)."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("The request has no body", "required")
    return loads(raw)
