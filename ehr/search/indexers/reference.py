"""Reference search index: http://hl7.org/fhir/R4/search.html#reference

* ``Patient/123`` (also ``Patient/123/_history/2``): ``target_type``, ``target_id``.
* An absolute URL: ``url``; when it lies under this server's own base URL (``Context.base_url``)
  also ``target_type``/``target_id`` from its last two segments.
* A canonical ``url|version`` (canonical-typed elements): ``url`` and ``version``.
* A contained reference ``#x`` is not indexed; nor is a target type outside the parameter's
  ``target`` list (``where(resolve() is T)`` filters are applied by the compiled expression).
* ``Reference.identifier`` (and an Identifier-typed target): a row in the **token** table with
  ``param = "<code>:identifier"``, ``system``/``code`` = Identifier.system/value, ``text`` =
  normalized Identifier.type.text. ``subject:identifier=S|V`` is then a token search on
  ``subject:identifier``.
* A whole resource (``Bundle.entry[0].resource``): its type and id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ehr.definitions import SearchParamDef, resource_types
from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row, clip
from ehr.search.indexers.token import TokenIndexer, identifier_cols

__all__ = ["IDENTIFIER", "ReferenceIndexer", "parse_reference"]

#: suffix of the ``param`` of ``:identifier`` rows (token table)
IDENTIFIER = ":identifier"
_RELATIVE = re.compile(
    r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def parse_reference(literal: str, base_url: str | None = None) -> Row | None:
    """Reference columns (``target_type``, ``target_id``, ``url``) for a literal reference."""
    if not literal or literal.startswith("#"):
        return None
    if m := _RELATIVE.match(literal):
        if m["type"] in resource_types():
            return {"target_type": m["type"], "target_id": m["id"]}
        return {"url": clip(literal, 1024)}
    row: Row = {"url": clip(literal, 1024)}
    if base_url and _ABSOLUTE.match(literal):
        base = base_url.rstrip("/") + "/"
        m = _RELATIVE.match(literal[len(base) :]) if literal.startswith(base) else None
        if m and m["type"] in resource_types():
            row.update(target_type=m["type"], target_id=m["id"])
    return row


def _canonical(value: str) -> Row:
    url, _, version = value.partition("|")
    return {"url": clip(url, 1024), "version": clip(version, 64) or None}


class ReferenceIndexer(Indexer):
    param_type = "reference"
    accepts = frozenset({"Reference", "canonical", "uri", "url"})

    def __init__(self) -> None:
        super().__init__()
        self._token = TokenIndexer()

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        t, v = node
        if t == "Reference" and isinstance(v, dict):
            literal = v.get("reference")
            if isinstance(literal, str) and (row := parse_reference(literal, ctx.base_url)):
                yield row
        elif t == "canonical" and isinstance(v, str) and v:
            yield _canonical(v)
        elif isinstance(v, str) and v:
            if row := parse_reference(v, ctx.base_url):
                yield row
        elif isinstance(v, dict) and v.get("resourceType") == t and isinstance(v.get("id"), str):
            yield {"target_type": t, "target_id": v["id"]}

    def index(
        self, sp: SearchParamDef, nodes: list[Node], ctx: Context
    ) -> Iterator[tuple[str, Row]]:
        targets = frozenset(sp.target)
        ident_param = sp.code + IDENTIFIER
        for node in nodes:
            t, v = node
            if t in self.accepts or (isinstance(v, dict) and v.get("resourceType") == t):
                for cols in self.values(node, ctx):
                    tt = cols.get("target_type")
                    if tt is None or not targets or tt in targets or "Resource" in targets:
                        yield self.param_type, self.row(sp.code, cols)
            ident: Any = v.get("identifier") if t == "Reference" and isinstance(v, dict) else None
            if t == "Identifier":
                ident = v
            if isinstance(ident, dict) and (ident_cols := identifier_cols(ident)):
                yield "token", self._token.row(ident_param, ident_cols)

    def component(self, cols: Row) -> Row:
        if cols.get("target_type"):
            return {"str": f"{cols['target_type']}/{cols['target_id']}"}
        return {"str": cols.get("url")}
