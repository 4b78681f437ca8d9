"""Quantity search index: http://hl7.org/fhir/R4/search.html#quantity

Quantity and its kinds (Age, Duration, Distance, Count, SimpleQuantity): ``value`` with the
``low``/``high`` its precision implies (see :mod:`.number`), ``system``, ``code``, ``unit``,
``comparator``. When the system is UCUM, ``canon_value``/``canon_code`` hold the value in the
canonical unit of :mod:`ehr.search.ucum` (``185 [lb_av]`` -> ``83914.59 g``); ``low``/``high``
stay in the original unit (scale them by ``canon_value / value`` for a multiplicative unit).

Money: ``system`` = ``urn:iso:std:iso:4217``, ``code`` = the currency. A Range (where the
expression selects one, e.g. ``context-quantity``): ``low`` of its low end, ``high`` of its high
end (open ends ±:data:`~.number.UNBOUNDED`), unit of the end that has a value, ``value`` its low
(else high) value. SampledData is not indexed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row, clip
from ehr.search.indexers.number import precision_range, range_bounds
from ehr.search.ucum import UCUM, canonical

__all__ = ["ISO4217", "QuantityIndexer"]

ISO4217 = "urn:iso:std:iso:4217"
_QUANTITIES = frozenset(
    {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"}
)


def _s(v: Any, n: int) -> str | None:
    return clip(v, n) if isinstance(v, str) and v else None


def _units(q: dict[str, Any], value: float) -> Row:
    system, code = _s(q.get("system"), 512), _s(q.get("code"), 128)
    row: Row = {"system": system, "code": code, "unit": _s(q.get("unit"), 128)}
    if system == UCUM and code:
        row["canon_value"], row["canon_code"] = canonical(value, code)
    return row


class QuantityIndexer(Indexer):
    param_type = "quantity"
    accepts = _QUANTITIES | {"Money", "Range"}

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        t, v = node
        if not isinstance(v, dict):
            return
        if t == "Range":
            if b := range_bounds(v):
                yield {"value": b[0], "low": b[1], "high": b[2], **_units(b[3], b[0])}
            return
        p = precision_range(v.get("value"))
        if p is None:
            return
        row: Row = {"value": p[0], "low": p[1], "high": p[2]}
        if t == "Money":
            row.update(system=ISO4217, code=_s(v.get("currency"), 128))
        else:
            row.update(_units(v, p[0]), comparator=_s(v.get("comparator"), 4))
        yield row

    def component(self, cols: Row) -> Row:
        return {
            "low": cols["low"],
            "high": cols["high"],
            "system": cols["system"],
            "code": cols["code"],
        }
