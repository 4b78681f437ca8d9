"""Date search index: http://hl7.org/fhir/R4/search.html#date

Every value becomes one inclusive ``[low, high]`` range in microseconds since the epoch
(:func:`ehr.search.dates.date_range`): a date, dateTime or instant covers its precision; a
Period runs from the start of ``start`` to the end of ``end`` (a missing end is open:
:data:`MIN_US` / :data:`MAX_US`); a Timing covers its outer limits (every ``event`` and
``repeat.boundsPeriod``), as the spec says. Values that do not parse are skipped (validation
rejects them before this).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ehr.search.dates import date_range
from ehr.search.fhirpath import Node
from ehr.search.indexers.base import Context, Indexer, Row

__all__ = ["MAX_US", "MIN_US", "DateIndexer", "period_range", "value_range"]

#: the open ends of a Period: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z
MIN_US = date_range("0001")[0]
MAX_US = date_range("9999")[1]


def _range(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    try:
        return date_range(value)
    except ValueError:
        return None


def period_range(period: dict[str, Any]) -> tuple[int, int] | None:
    start, end = _range(period.get("start")), _range(period.get("end"))
    if start is None and end is None:
        return None
    return (start[0] if start else MIN_US, end[1] if end else MAX_US)


def _timing_range(timing: dict[str, Any]) -> tuple[int, int] | None:
    ranges = [r for e in timing.get("event") or () if (r := _range(e))]
    repeat = timing.get("repeat")
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    if isinstance(bounds, dict) and (r := period_range(bounds)):
        ranges.append(r)
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def value_range(node: Node) -> tuple[int, int] | None:
    """The range a date-like value covers, or None."""
    t, v = node
    if t in ("date", "dateTime", "instant"):
        return _range(v)
    if t == "Period" and isinstance(v, dict):
        return period_range(v)
    if t == "Timing" and isinstance(v, dict):
        return _timing_range(v)
    return None


class DateIndexer(Indexer):
    param_type = "date"
    accepts = frozenset({"date", "dateTime", "instant", "Period", "Timing"})

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        if r := value_range(node):
            yield {"low": r[0], "high": r[1]}

    def component(self, cols: Row) -> Row:
        return {"low": float(cols["low"]), "high": float(cols["high"])}
