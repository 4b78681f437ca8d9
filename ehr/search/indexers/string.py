"""String search index: http://hl7.org/fhir/R4/search.html#string

``value`` is :func:`~ehr.search.normalize.normalize_string` of the text (for the default
starts-with and ``:contains``), ``exact`` the original (for ``:exact``). A HumanName gives one
row per part (family, each given, prefix, suffix, text) plus ``"given family"``, and for names
written in CJK script also ``family`` + ``given`` with no space (``张三``), so a search for the
whole name finds it. An Address gives one row per part (each line, city, district, state,
postalCode, country, text).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row, normalized

__all__ = ["StringIndexer", "is_cjk"]

_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")


def is_cjk(text: str) -> bool:
    """True when every character is a CJK ideograph (or kana / hangul)."""
    return bool(text) and all(
        "\u3040" <= ch <= "\u30ff"  # kana
        or "\u3400" <= ch <= "\u9fff"  # CJK unified ideographs (+ extension A)
        or "\uac00" <= ch <= "\ud7af"  # hangul
        or "\uf900" <= ch <= "\ufaff"
        or "\U00020000" <= ch <= "\U0003134f"
        for ch in text
    )


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _name_texts(name: dict[str, Any]) -> list[str]:
    out = [t for part in _NAME_PARTS for t in _texts(name.get(part))]
    family = name.get("family") if isinstance(name.get("family"), str) else ""
    given = _texts(name.get("given"))
    if family and given:
        out.append(" ".join([*given, family]))
        if is_cjk(family) and all(is_cjk(g) for g in given):
            out.append(family + "".join(given))
    return out


class StringIndexer(Indexer):
    param_type = "string"
    accepts = frozenset({"string", "markdown", "code", "uri", "url", "id", "HumanName", "Address"})

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        t, v = node
        if t == "HumanName" and isinstance(v, dict):
            texts = _name_texts(v)
        elif t == "Address" and isinstance(v, dict):
            texts = [s for part in _ADDRESS_PARTS for s in _texts(v.get(part))]
        else:
            texts = _texts(v)
        for text in texts:
            norm = normalized(text)
            if norm:
                yield {"value": norm, "exact": text}

    def component(self, cols: Row) -> Row:
        return {"str": cols["value"]}
