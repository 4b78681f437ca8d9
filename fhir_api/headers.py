"""HTTP headers of the FHIR REST API (http://hl7.org/fhir/R4/http.html#2.21.0.3).

* ``ETag: W/"<versionId>"`` and ``Last-Modified`` (an HTTP date) on every resource response;
* ``If-Match`` (version-aware update, http://hl7.org/fhir/R4/http.html#concurrency);
* ``If-None-Match`` / ``If-Modified-Since`` (conditional read, http://hl7.org/fhir/R4/http.html#cread);
* ``Prefer: return=…`` and ``Prefer: handling=…`` (http://hl7.org/fhir/R4/http.html#ops,
  http://hl7.org/fhir/R4/search.html#errors).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from starlette.requests import Request

from ehr.errors import BadRequest
from ehr.search.dates import US_PER_S

__all__ = [
    "http_date",
    "if_match",
    "not_modified",
    "prefer",
    "version_headers",
]


def http_date(us: int) -> str:
    """µs since the epoch -> ``Sat, 28 Nov 2026 21:03:04 GMT``."""
    return _http_date(us // US_PER_S)


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def version_headers(version: int, last_updated: int) -> dict[str, str]:
    return {"ETag": f'W/"{version}"', "Last-Modified": http_date(last_updated)}


def _etag_version(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith(("W/", "w/")):
        tag = tag[2:]
    return tag.strip('"')


def if_match(request: Request) -> int | None:
    """The version an ``If-Match`` header requires (``W/"3"``, ``"3"`` or ``3``); 400 if unreadable."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = _etag_version(raw)
    if not value.isdigit():
        raise BadRequest(f'If-Match must be a version ETag like W/"3", not {raw!r}', "value")
    return int(value)


def not_modified(request: Request, version: int, last_updated: int) -> bool:
    """True when a conditional read may answer 304 (If-None-Match wins over If-Modified-Since)."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [_etag_version(t) for t in inm.split(",")]
        return "*" in tags or str(version) in tags
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored (RFC 9110 13.1.3)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return last_updated // US_PER_S <= int(since.timestamp())
    return False


def prefer(request: Request) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> ``{"return": "minimal", "handling": "strict"}``."""
    out: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"')
    return out
