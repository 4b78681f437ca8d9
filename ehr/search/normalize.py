"""Normalization shared by the indexers and the query side, so both compare the same way."""

from __future__ import annotations

import unicodedata

__all__ = ["normalize_string", "MAX_STRING_INDEX"]

#: index values are cut to this many characters (the column is VARCHAR(512))
MAX_STRING_INDEX = 500


def normalize_string(value: str) -> str:
    """Case-fold, strip accents and collapse white space: ``"  Ñúñez  Ä"`` -> ``"nunez a"``.

    CJK text is kept as it is (case-folding and NFKD leave Han characters alone), so
    ``张`` starts-with and ``:contains`` work on Chinese names.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())[:MAX_STRING_INDEX]
