"""The searchset Bundle of a search page: http://hl7.org/fhir/R4/bundle.html#searchset and
http://hl7.org/fhir/R4/search.html#return

Entries carry ``fullUrl`` ``{base}/{type}/{id}``, the resource and ``search.mode`` (``match``,
``include``, and ``outcome`` for the OperationOutcome that lists ignored parameters); ``link``
has ``self`` and, when there are more pages, ``next`` / ``previous``, each
``{base}/{path}?{params}``. Stored resources are written into the Bundle as the bytes we hold
(``orjson.Fragment``), never parsed, unless ``_summary`` / ``_elements`` must cut them down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from ehr.search.elements import filter_resource, is_subsetting

if TYPE_CHECKING:
    from ehr.search.engine import SearchPage
    from ehr.search.include import Hit

__all__ = ["link_url", "searchset_bundle"]


def link_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    url = base.rstrip("/")
    if path.strip("/"):
        url += "/" + path.strip("/")
    query = urlencode(params, safe=":,|$/*")
    return f"{url}?{query}" if query else url


def _resource(hit: Hit, summary: str | None, elements: tuple[str, ...] | None) -> Any:
    if not is_subsetting(summary, elements):
        return orjson.Fragment(hit.data)
    return filter_resource(orjson.loads(hit.data), summary, elements)


def searchset_bundle(page: SearchPage, *, base: str, path: str) -> bytes:
    """The page as a ``Bundle`` of type ``searchset``, serialized."""
    root = base.rstrip("/")
    entries: list[dict[str, Any]] = []
    for hit in page.matches:
        entries.append(
            {
                "fullUrl": f"{root}/{hit.rtype}/{hit.rid}",
                "resource": _resource(hit, page.summary, page.elements),
                "search": {"mode": "match"},
            }
        )
    for hit in page.includes:
        entries.append(
            {
                "fullUrl": f"{root}/{hit.rtype}/{hit.rid}",
                # _elements shapes the matches only; _summary shapes every entry
                "resource": _resource(hit, page.summary, None),
                "search": {"mode": "include"},
            }
        )
    if page.issues:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [i.to_fhir() for i in page.issues],
                },
                "search": {"mode": "outcome"},
            }
        )
    links = [{"relation": "self", "url": link_url(base, path, page.self_params)}]
    if page.next_params is not None:
        links.append({"relation": "next", "url": link_url(base, path, page.next_params)})
    if page.previous_params is not None:
        links.append({"relation": "previous", "url": link_url(base, path, page.previous_params)})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)
