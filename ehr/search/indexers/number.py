"""Number search index: http://hl7.org/fhir/R4/search.html#number

A value's precision is the place of its last significant digit as written: ``100`` covers
``[99.5, 100.5)``, ``100.0`` covers ``[99.95, 100.05)``, ``1e2`` covers ``[50, 150)``. The row
stores ``value`` and that ``low``/``high`` (``high`` is the exclusive bound of the interval). A
Range (RiskAssessment.prediction.probability) stores ``low`` of its low end and ``high`` of its
high end, open ends as :data:`UNBOUNDED`; ``value`` is its low (else high) value.

The JSON parser may have turned ``1.50`` into ``1.5``: the precision is then that of ``1.5``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row

__all__ = ["UNBOUNDED", "NumberIndexer", "precision_range", "range_bounds"]

#: stands for an open end of a Range (the largest float)
UNBOUNDED = sys.float_info.max


def precision_range(value: Any) -> tuple[float, float, float] | None:
    """``(value, low, high)`` of a JSON number (or decimal string), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        d = (
            value
            if isinstance(value, Decimal)
            else Decimal(repr(value) if isinstance(value, float) else str(value))
        )
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5).scaleb(exp - 1)
    return float(d), float(d - half), float(d + half)


def range_bounds(rng: dict[str, Any]) -> tuple[float, float, float, dict[str, Any]] | None:
    """``(value, low, high, unit-bearing end)`` of a Range of Quantities, or None."""
    lo, hi = rng.get("low"), rng.get("high")
    plo = precision_range(lo.get("value")) if isinstance(lo, dict) else None
    phi = precision_range(hi.get("value")) if isinstance(hi, dict) else None
    if plo is None and phi is None:
        return None
    value = plo[0] if plo else phi[0]  # type: ignore[index]
    ends: dict[str, Any] = lo if plo else hi  # type: ignore[assignment]
    return value, plo[1] if plo else -UNBOUNDED, phi[2] if phi else UNBOUNDED, ends


class NumberIndexer(Indexer):
    param_type = "number"
    accepts = frozenset({"decimal", "integer", "positiveInt", "unsignedInt", "Range"})

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        t, v = node
        if t == "Range" and isinstance(v, dict):
            if b := range_bounds(v):
                yield {"value": b[0], "low": b[1], "high": b[2]}
        elif p := precision_range(v):
            yield {"value": p[0], "low": p[1], "high": p[2]}

    def component(self, cols: Row) -> Row:
        return {"low": cols["low"], "high": cols["high"]}
