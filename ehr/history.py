"""History at instance, type and system level (http://hl7.org/fhir/R4/http.html#history).

Newest first. ``since`` keeps versions written at or after an instant; ``at`` keeps the versions
that were current at some point during a (date-precision) range. Paging is by keyset on
(last_updated, pk, version), so writes that happen while a client pages appear only at the top
and never shift the later pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from ehr.cursor import decode_cursor, encode_cursor
from ehr.errors import BadRequest, NotFound
from ehr.storage.tables import history as h
from ehr.storage.tables import resources

__all__ = ["HistoryEntry", "HistoryPage", "history"]


@dataclass(frozen=True)
class HistoryEntry:
    rtype: str
    rid: str
    version: int
    last_updated: int
    method: str
    deleted: bool
    data: bytes | None


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next_cursor: str | None
    total: int | None


def history(
    conn: Connection,
    *,
    rtype: str | None = None,
    rid: str | None = None,
    since: int | None = None,
    at: tuple[int, int] | None = None,
    count: int = 50,
    cursor: str | None = None,
) -> HistoryPage:
    if rid is not None:
        if rtype is None:
            raise BadRequest("Instance history needs a resource type")
        pk = conn.execute(
            select(resources.c.pk).where(resources.c.rtype == rtype, resources.c.rid == rid)
        ).scalar()
        if pk is None:
            raise NotFound(f"{rtype}/{rid} not found")
    conds = []
    if rid is not None:
        conds.append(h.c.pk == pk)
    elif rtype is not None:
        conds.append(h.c.rtype == rtype)
    if since is not None:
        conds.append(h.c.last_updated >= since)
    if at is not None:
        nxt = aliased(h)
        next_lu = (
            select(nxt.c.last_updated)
            .where(nxt.c.pk == h.c.pk, nxt.c.version == h.c.version + 1)
            .scalar_subquery()
        )
        conds.append(h.c.last_updated <= at[1])
        conds.append((next_lu.is_(None)) | (next_lu > at[0]))
    total = None
    if rid is not None:
        total = conn.execute(select(func.count()).select_from(h).where(*conds)).scalar_one()
    page_conds = list(conds)
    if cursor:
        pos = decode_cursor(cursor)
        if len(pos) != 3:
            raise BadRequest("Invalid history cursor")
        page_conds.append(tuple_(h.c.last_updated, h.c.pk, h.c.version) < tuple_(*pos))
    rows = conn.execute(
        select(
            h.c.rtype,
            h.c.rid,
            h.c.version,
            h.c.last_updated,
            h.c.method,
            h.c.deleted,
            h.c.data,
            h.c.pk,
        )
        .where(*page_conds)
        .order_by(h.c.last_updated.desc(), h.c.pk.desc(), h.c.version.desc())
        .limit(count + 1)
    ).all()
    more = len(rows) > count
    rows = rows[:count]
    if not rows:
        return HistoryPage([], None, total)
    entries = [HistoryEntry(*r[:7]) for r in rows]
    next_cursor = (
        encode_cursor([rows[-1].last_updated, rows[-1].pk, rows[-1].version]) if more else None
    )
    return HistoryPage(entries, next_cursor, total)
