"""Sorting and keyset paging of search results: http://hl7.org/fhir/R4/search.html#sort and
http://hl7.org/fhir/R4/http.html#paging

Order. ``_sort`` keys are correlated subqueries on the index tables (a resource with several
values sorts by its lowest when ascending and its highest when descending; dates by the start
of their range ascending and the end descending); resources without a value come last in both
directions. ``pk`` (creation order) breaks ties and is the whole order when ``_sort`` is absent.

Paging is by keyset, never OFFSET: the cursor (:mod:`ehr.cursor`) holds the sort-key values and
``pk`` of the last row shown (``next``) or the first (``previous``), and the next page is the rows
strictly after (before) it in the order. The cursor also carries a snapshot taken on page 1:
``S``, the largest ``pk`` then, and ``T``, the time. Every page keeps to ``pk <= S``, so
resources created while a client pages never shift or join the result.

Consistency while others write (decided here):

* Default order (``pk``), ``_id`` and ``_lastUpdated``: paging neither repeats nor skips a
  resource that existed on page 1 and still matches when its page is read. ``_lastUpdated``
  sorts by the value the resource had at ``T`` (read from ``resource_history`` for resources
  updated since), so an update does not move it to another page.
* ``_sort`` on other parameters orders by the current values: a resource whose sort value is
  changed by an update between two page reads is placed by its new value, so it can be shown
  twice or not at all. (Keeping every value as of ``T`` would need the index rows of old
  versions.) Page 1 is always exact; deleted resources drop out of later pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, case, func, or_, select

from ehr.cursor import decode_cursor, encode_cursor
from ehr.errors import BadRequest
from ehr.search.params import SortKey
from ehr.search.tables import INDEX_TABLES
from ehr.storage.tables import history

__all__ = ["Cursor", "keyset_condition", "order_by", "sort_expression"]

_CURSOR_VERSION = 1


@dataclass(frozen=True)
class Cursor:
    """A position in a result: ``forward`` pages go after it, backward pages before it."""

    forward: bool
    keys: tuple[Any, ...]
    pk: int
    max_pk: int  # S: the snapshot's largest pk
    at: int  # T: the snapshot time (µs)
    total: int | None

    def encode(self) -> str:
        return encode_cursor(
            [
                _CURSOR_VERSION,
                "n" if self.forward else "p",
                list(self.keys),
                self.pk,
                self.max_pk,
                self.at,
                self.total,
            ]
        )

    @classmethod
    def decode(cls, token: str, n_keys: int) -> Cursor:
        v = decode_cursor(token)
        try:
            version, direction, keys, pk, max_pk, at, total = v
            ok = (
                version == _CURSOR_VERSION
                and direction in ("n", "p")
                and isinstance(keys, list)
                and len(keys) == n_keys
                and all(isinstance(x, int) for x in (pk, max_pk, at))
                and (total is None or isinstance(total, int))
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise BadRequest("Invalid paging cursor (it belongs to another search?)", "invalid")
        return cls(direction == "n", tuple(keys), pk, max_pk, at, total)


def sort_expression(key: SortKey, r: FromClause, at: int) -> ColumnElement[Any]:
    """The sort value of ``r`` for ``key``: a column or a correlated scalar subquery."""
    if key.code == "_id":
        return r.c.rid
    if key.code == "_lastUpdated":
        then = (
            select(func.max(history.c.last_updated))
            .where(history.c.pk == r.c.pk, history.c.last_updated <= at)
            .scalar_subquery()
        )
        return case((r.c.last_updated <= at, r.c.last_updated), else_=then)
    t = INDEX_TABLES[key.ptype].alias()
    agg = func.max if key.descending else func.min
    col: Any
    if key.ptype == "date":
        col = t.c.high if key.descending else t.c.low
    elif key.ptype == "token":
        col = func.coalesce(t.c.code, t.c.text)
    elif key.ptype == "reference":
        col = func.coalesce(t.c.target_type + "/" + t.c.target_id, t.c.url)
    elif key.ptype == "quantity":
        col = func.coalesce(t.c.canon_value, t.c.value)
    else:  # string, number, uri
        col = t.c.value
    return (
        select(agg(col))
        .where(t.c.pk == r.c.pk, t.c.rtype == r.c.rtype, t.c.param == key.code)
        .scalar_subquery()
    )


def order_by(cols: list[Any], sort: list[SortKey], pk: Any, forward: bool) -> list[Any]:
    """ORDER BY terms: the keys (nulls last), then pk; everything reversed for a backward page."""
    out: list[Any] = []
    for col, key in zip(cols, sort, strict=True):
        desc = key.descending != (not forward)
        term = col.desc() if desc else col.asc()
        out.append(term.nulls_last() if forward else term.nulls_first())
    out.append(pk.asc() if forward else pk.desc())
    return out


def keyset_condition(
    cols: list[Any], sort: list[SortKey], pk: Any, cursor: Cursor
) -> ColumnElement[bool]:
    """Rows strictly after (``cursor.forward``) or before the cursor position in the order."""

    def step(i: int) -> ColumnElement[bool]:
        if i == len(cols):
            return pk > cursor.pk if cursor.forward else pk < cursor.pk
        col, key, v = cols[i], sort[i], cursor.keys[i]
        rest = step(i + 1)
        if v is None:  # the position is among the NULLs, which come last
            if cursor.forward:
                return and_(col.is_(None), rest)
            return or_(col.is_not(None), and_(col.is_(None), rest))
        beyond = col < v if key.descending == cursor.forward else col > v
        if cursor.forward:
            beyond = or_(beyond, col.is_(None))
        return or_(beyond, and_(col == v, rest))

    return step(0)
