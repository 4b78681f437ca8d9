"""Row-level writes and reads inside one database transaction.

:class:`Repository` is bound to an open connection. It writes the current row, the history row
and the search-index rows of a resource together, so whoever holds the transaction (a single
interaction or a whole transaction Bundle) commits or rolls back all of them at once. It knows
nothing of FHIR semantics beyond that (versions, conditions and hooks live in :mod:`ehr.store`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from ehr.search.tables import INDEX_TABLES
from ehr.storage.tables import history, resources

__all__ = ["CurrentRow", "Repository"]


@dataclass(frozen=True)
class CurrentRow:
    pk: int
    rtype: str
    rid: str
    version: int
    last_updated: int
    deleted: bool
    data: bytes | None


_CURRENT_COLS = (
    resources.c.pk,
    resources.c.rtype,
    resources.c.rid,
    resources.c.version,
    resources.c.last_updated,
    resources.c.deleted,
    resources.c.data,
)


class Repository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- reads ---------------------------------------------------------------------------------
    def current(self, rtype: str, rid: str, *, lock: bool = False) -> CurrentRow | None:
        stmt = select(*_CURRENT_COLS).where(resources.c.rtype == rtype, resources.c.rid == rid)
        if lock:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return CurrentRow(*row) if row else None

    def current_by_pks(self, pks: Iterable[int]) -> list[CurrentRow]:
        pks = list(pks)
        if not pks:
            return []
        rows = self.conn.execute(select(*_CURRENT_COLS).where(resources.c.pk.in_(pks))).all()
        by_pk = {r.pk: CurrentRow(*r) for r in rows}
        return [by_pk[p] for p in pks if p in by_pk]

    def version(self, rtype: str, rid: str, version: int) -> tuple[int, bool, bytes | None] | None:
        """(last_updated, deleted, data) of one version."""
        row = self.conn.execute(
            select(history.c.last_updated, history.c.deleted, history.c.data)
            .join(resources, resources.c.pk == history.c.pk)
            .where(resources.c.rtype == rtype, resources.c.rid == rid, history.c.version == version)
        ).first()
        return (row[0], row[1], row[2]) if row else None

    # -- writes --------------------------------------------------------------------------------
    def insert_new(
        self, rtype: str, rid: str, last_updated: int, data: bytes, index_rows: dict[str, list[dict[str, Any]]]
    ) -> int:
        pk = self.conn.execute(
            insert(resources)
            .values(rtype=rtype, rid=rid, version=1, last_updated=last_updated, deleted=False, data=data)
            .returning(resources.c.pk)
        ).scalar_one()
        self._history(pk, 1, rtype, rid, last_updated, "create", data)
        self._insert_index(pk, rtype, index_rows)
        return int(pk)

    def write_version(
        self,
        cur: CurrentRow,
        version: int,
        last_updated: int,
        data: bytes | None,
        index_rows: dict[str, list[dict[str, Any]]] | None,
        method: str,
    ) -> None:
        """Replace the current row of ``cur`` with ``version`` (``data=None`` marks a delete)."""
        deleted = data is None
        res = self.conn.execute(
            update(resources)
            .where(resources.c.pk == cur.pk, resources.c.version == cur.version)
            .values(version=version, last_updated=last_updated, deleted=deleted, data=data)
        )
        if res.rowcount != 1:  # someone else wrote in between: never lose an update
            from ehr.errors import Conflict

            raise Conflict(f"{cur.rtype}/{cur.rid} was changed concurrently; retry", "conflict")
        self._history(cur.pk, version, cur.rtype, cur.rid, last_updated, method, data)
        if not cur.deleted:
            self.delete_index(cur.pk)
        if index_rows:
            self._insert_index(cur.pk, cur.rtype, index_rows)

    def delete_index(self, pk: int) -> None:
        for table in INDEX_TABLES.values():
            self.conn.execute(delete(table).where(table.c.pk == pk))

    def replace_index(self, pk: int, rtype: str, index_rows: dict[str, list[dict[str, Any]]]) -> None:
        self.delete_index(pk)
        self._insert_index(pk, rtype, index_rows)

    def _history(
        self, pk: int, version: int, rtype: str, rid: str, last_updated: int, method: str, data: bytes | None
    ) -> None:
        self.conn.execute(
            insert(history).values(
                pk=pk,
                version=version,
                rtype=rtype,
                rid=rid,
                last_updated=last_updated,
                method=method,
                deleted=data is None,
                data=data,
            )
        )

    def _insert_index(self, pk: int, rtype: str, index_rows: dict[str, list[dict[str, Any]]]) -> None:
        for kind, rows in index_rows.items():
            if rows:
                self.conn.execute(
                    insert(INDEX_TABLES[kind]), [{**r, "pk": pk, "rtype": rtype} for r in rows]
                )
