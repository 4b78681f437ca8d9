"""URI search index: http://hl7.org/fhir/R4/search.html#uri

``value`` is the uri, url, canonical (with any ``|version`` kept), oid or uuid exactly as
written, for exact, ``:below`` and ``:above`` matches.
"""

from __future__ import annotations

from collections.abc import Iterator

from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row, clip

__all__ = ["UriIndexer"]


class UriIndexer(Indexer):
    param_type = "uri"
    accepts = frozenset({"uri", "url", "canonical", "oid", "uuid", "string", "code", "id"})

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        if isinstance(node[1], str) and node[1]:
            yield {"value": clip(node[1], 1024)}

    def component(self, cols: Row) -> Row:
        return {"str": cols["value"]}
