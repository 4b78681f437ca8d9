"""Token search index: http://hl7.org/fhir/R4/search.html#token

| FHIR type       | system                 | code                 | text (normalized)        |
| --------------- | ---------------------- | -------------------- | ------------------------ |
| Coding          | Coding.system          | Coding.code          | Coding.display           |
| CodeableConcept | one row per coding as Coding, plus ``(None, None, CodeableConcept.text)`` |
| Identifier      | Identifier.system      | Identifier.value     | Identifier.type.text     |
| ContactPoint    | ContactPoint.system    | ContactPoint.value   |                          |
| boolean         |                        | ``true`` / ``false`` |                          |
| code, string, id, uri, ... |             | the value            |                          |

``:of-type`` (http://hl7.org/fhir/R4/search.html#modifiers): an Identifier with a ``type`` also
gives, per type coding, a row with ``param = "<code>:of-type"``, ``system`` / ``code`` = the type
coding's system and code, and ``text`` = the identifier's value exactly as written (not
normalized). ``identifier:of-type=S|C|V`` is then ``param='identifier:of-type' AND system=S AND
code=C AND text=V``.

A ``code`` keeps ``system`` empty (the bound code system is implied, not stored): a search with
a system on such a parameter should ignore the system or match ``system IS NULL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ehr.definitions import SearchParamDef
from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row, clip, normalized

__all__ = ["OF_TYPE", "TokenIndexer", "identifier_cols"]

#: suffix of the ``param`` of ``:of-type`` rows
OF_TYPE = ":of-type"
_LEN = 512
_PRIMITIVES = frozenset(
    {"code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "integer",
     "positiveInt", "unsignedInt", "decimal", "date", "dateTime", "instant", "time"}
)  # fmt: skip


def _text(value: Any) -> str | None:
    return (normalized(value) or None) if isinstance(value, str) else None


def _str(value: Any) -> str | None:
    return clip(value, _LEN) if isinstance(value, str) and value else None


def _coding(c: dict[str, Any]) -> Row | None:
    row = {
        "system": _str(c.get("system")),
        "code": _str(c.get("code")),
        "text": _text(c.get("display")),
    }
    return row if any(row.values()) else None


def identifier_cols(ident: dict[str, Any]) -> Row | None:
    """Token columns of one Identifier (also used for ``:identifier`` rows of references)."""
    t = ident.get("type")
    row = {
        "system": _str(ident.get("system")),
        "code": _str(ident.get("value")),
        "text": _text(t.get("text")) if isinstance(t, dict) else None,
    }
    return row if row["system"] or row["code"] else None


class TokenIndexer(Indexer):
    param_type = "token"
    accepts = (
        frozenset({"Coding", "CodeableConcept", "Identifier", "ContactPoint", "boolean"})
        | _PRIMITIVES
    )

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        t, v = node
        if t == "CodeableConcept" and isinstance(v, dict):
            for c in v.get("coding") or ():
                if isinstance(c, dict) and (row := _coding(c)):
                    yield row
            if text := _text(v.get("text")):
                yield {"system": None, "code": None, "text": text}
        elif t == "Coding" and isinstance(v, dict):
            if row := _coding(v):
                yield row
        elif t == "Identifier" and isinstance(v, dict):
            if row := identifier_cols(v):
                yield row
        elif t == "ContactPoint" and isinstance(v, dict):
            if code := _str(v.get("value")):
                yield {"system": _str(v.get("system")), "code": code, "text": None}
        elif t == "boolean" and isinstance(v, bool):
            yield {"system": None, "code": "true" if v else "false", "text": None}
        elif (
            isinstance(v, str | int | float) and not isinstance(v, bool) and (code := _str(str(v)))
        ):
            yield {"system": None, "code": code, "text": None}

    def index(
        self, sp: SearchParamDef, nodes: list[Node], ctx: Context
    ) -> Iterator[tuple[str, Row]]:
        yield from super().index(sp, nodes, ctx)
        for t, v in nodes:
            if t == "Identifier" and isinstance(v, dict):
                yield from self.of_type(sp.code, v)

    def of_type(self, code: str, ident: dict[str, Any]) -> Iterator[tuple[str, Row]]:
        value, t = _str(ident.get("value")), ident.get("type")
        if not value or not isinstance(t, dict):
            return
        for c in t.get("coding") or ():
            if isinstance(c, dict) and c.get("code"):
                cols = {"system": _str(c.get("system")), "code": _str(c["code"]), "text": value}
                yield "token", self.row(code + OF_TYPE, cols)

    def component(self, cols: Row) -> Row:
        return {"system": cols["system"], "code": cols["code"]}
