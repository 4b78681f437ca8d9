"""The one FHIR release we speak: R4 4.0.1 JSON on the wire, checked with ``fhir.resources.R4B``.

Parsing and dumping use orjson. A stored resource is kept as the exact bytes we serve, with the
server's ``id``, ``meta.versionId`` and ``meta.lastUpdated`` stamped in (:func:`stamp`).
"""

from __future__ import annotations

from typing import Any

import orjson

from ehr.errors import BadRequest
from ehr.search.dates import us_to_instant

__all__ = ["FHIR_VERSION", "dumps", "loads", "stamp"]

FHIR_VERSION = "4.0.1"


def loads(body: bytes | str) -> Any:
    """Parse JSON; a syntax error is a 400 with the position orjson reports."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Body is not valid JSON: {exc}", "structure") from exc


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)


def stamp(resource: dict[str, Any], rid: str, version: int, last_updated_us: int) -> dict[str, Any]:
    """A copy of ``resource`` with the server's id and meta, keys in the conventional order."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = us_to_instant(last_updated_us)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for k, v in resource.items():
        if k not in out:
            out[k] = v
    return out
