"""``_summary`` and ``_elements``: http://hl7.org/fhir/R4/search.html#summary and #elements

* ``_summary=true``: the top-level elements the resource's definition marks ``isSummary``.
* ``_summary=text``: ``id``, ``meta``, ``text`` and the mandatory top-level elements.
* ``_summary=data``: everything but ``text``.
* ``_summary=count``: no resources, only the total (handled by the engine).
* ``_summary=false``: the whole resource.
* ``_elements=a,b``: ``id``, ``meta``, the mandatory elements and the listed ones (a name may be
  written ``Patient.name``; the type is dropped). Choice elements match by their base name
  (``value`` or ``value[x]`` keeps ``valueQuantity``); a primitive's ``_name`` extension
  follows its element.

A filtered resource carries the ``SUBSETTED`` tag in ``meta.tag`` (v3 ObservationValue), as the
spec asks, so nobody mistakes it for the whole resource. Filtering is top-level only.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ehr.definitions import load_table

__all__ = ["SUBSETTED", "filter_resource", "is_subsetting"]

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _table() -> dict[str, dict[str, tuple[str, ...]]]:
    types = load_table("summary_elements.json")["types"]
    return {t: {k: tuple(v) for k, v in d.items()} for t, d in types.items()}


def _matches(key: str, names: set[str]) -> bool:
    base = key[1:] if key.startswith("_") else key
    if base in names:
        return True
    # choice element: valueQuantity -> value[x] / value
    for i in range(1, len(base)):
        if base[i].isupper() and (base[:i] in names or base[:i] + "[x]" in names):
            return True
    return False


def is_subsetting(summary: str | None, elements: tuple[str, ...] | None) -> bool:
    return summary in ("true", "text", "data") or (
        elements is not None and summary in (None, "false")
    )


def _keep(
    rtype: str, summary: str | None, elements: tuple[str, ...] | None
) -> tuple[set[str] | None, set[str]]:
    """(names to keep or None for all, names to drop)."""
    table = _table().get(rtype, {"summary": (), "mandatory": ()})
    if summary == "true":
        return set(table["summary"]) | set(_ALWAYS), set()
    if summary == "text":
        return {*_ALWAYS, "text", *table["mandatory"]}, set()
    if summary == "data":
        return None, {"text"}
    if elements is not None:
        return {*_ALWAYS, *table["mandatory"], *elements}, set()
    return None, set()


def filter_resource(
    resource: dict[str, Any], summary: str | None, elements: tuple[str, ...] | None
) -> dict[str, Any]:
    """A copy of ``resource`` reduced as ``_summary`` / ``_elements`` ask, tagged SUBSETTED."""
    if not is_subsetting(summary, elements):
        return resource
    keep, drop = _keep(str(resource.get("resourceType")), summary, elements)
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if key in _ALWAYS or (keep is None or _matches(key, keep)) and not _matches(key, drop):
            out[key] = value
    meta = dict(out.get("meta") or {})
    tags = [
        t
        for t in meta.get("tag") or []
        if not (isinstance(t, dict) and t.get("code") == "SUBSETTED")
    ]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    if "resourceType" in out:  # keep resourceType, id, meta first
        out = {k: out[k] for k in (*_ALWAYS, *(k for k in out if k not in _ALWAYS)) if k in out}
    return out
