"""Row-level writes and reads inside one database transaction.

:class:`Repository` is bound to an open connection. It writes the current row, the history row
and the search-index rows of a resource together, so whoever holds the transaction (a single
interaction or a whole transaction Bundle) commits or rolls back all of them at once. It knows
nothing of FHIR semantics beyond that (versions, conditions and hooks live in :mod:`ehr.store`).

Bulk writing: new resources, and the history and index rows of every write, are buffered and
written at :meth:`Repository.flush` (before any read that could see them, and before commit),
one statement per table; so are plain rows of other tables given to
:meth:`Repository.insert_rows` (the EMPI's blocking rows). On PostgreSQL a large batch (at least
:data:`COPY_MIN_ROWS` rows for a table, e.g. a transaction Bundle) goes through
``COPY … FROM STDIN`` (the new resources' ``pk`` values are drawn from the sequence first), which
costs the server a fraction of per-row INSERTs. A small one (a single create or update, a
short transaction) is ONE statement of data-modifying CTEs (:meth:`Repository._flush_in_one`:
``WITH r AS (INSERT INTO resources … RETURNING …), h AS (INSERT INTO resource_history SELECT …
FROM r), i2 AS (INSERT INTO idx_token … VALUES ((SELECT pk FROM r), …)) …``), sent after an
update's index deletions and with the transaction's BEGIN in one pipeline: a create is one round
trip and one statement for the server instead of one per table. On SQLite each table is an
``executemany``. An update's old index rows are deleted at the same flush, before its new ones
are written. Only the ``UPDATE`` of the current row (with its version check) runs at once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, insert, select, text, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ehr.errors import Conflict
from ehr.search.tables import INDEX_TABLES
from ehr.storage.db import driver_error
from ehr.storage.tables import history, resources

if TYPE_CHECKING:
    import psycopg

__all__ = ["COPY_MIN_ROWS", "CurrentRow", "Repository"]

#: PostgreSQL: a table's rows of one flush go through COPY from this many on (a multi-row INSERT
#: below: for a handful of rows, COPY's extra round trips and set-up cost more than it saves)
COPY_MIN_ROWS = 64
#: PostgreSQL: at most this many parameters in the one statement of a small flush (the
#: protocol's limit is 65,535)
MAX_PARAMS = 30_000


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


@functools.lru_cache(maxsize=1024)
def _values_insert(table: Table, cols: tuple[str, ...], n: int) -> bytes:
    """``INSERT INTO table (cols) VALUES ($1, …), … `` for ``n`` rows (PostgreSQL): many rows in
    one statement with scalar parameters (which psycopg adapts in C; arrays it adapts in
    Python), each value assigned to its column as by any INSERT.

    The placeholders are PostgreSQL's own ``$n``, run through a :class:`psycopg.RawCursor`
    (:func:`_raw_cursor`): psycopg then sends the text as it is. With ``%s`` it would parse the
    query on every execution, since it caches its parse only for statements of at most 50
    parameters (a Patient's token rows alone have ~90): measured ~1 ms per statement."""
    width = len(cols)
    rows = ("(" + ", ".join(f"${i * width + j + 1}" for j in range(width)) + ")" for i in range(n))
    return f'INSERT INTO "{table.name}" ({", ".join(cols)}) VALUES {", ".join(rows)}'.encode()


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    """The columns of ``table`` (index tables: ``pk`` first)."""
    return tuple(c.name for c in table.columns)


_NEW_RESOURCE_COLS = ("rtype", "rid", "version", "last_updated", "deleted", "data")

#: the shape of a small flush (see :meth:`Repository._flush_in_one`): the number of new
#: resources; per index table (kind), its rows of stored resources and, for each of its rows of
#: new resources, which new resource it belongs to; the other tables and their row counts
Shape = tuple[int, tuple[tuple[str, int, tuple[int, ...]], ...], tuple[tuple[Table, int], ...]]


@functools.lru_cache(maxsize=512)
def _one_statement(shape: Shape) -> bytes:
    """The text of the one statement of a small flush of ``shape``, with ``$n`` placeholders
    in the order :meth:`Repository._flush_in_one` lays out its parameters (a text per shape:
    psycopg then prepares it, as PostgreSQL plans it, once per connection)::

        WITH r AS (INSERT INTO resources (…) VALUES ($1, …), … RETURNING …),
             h AS (INSERT INTO resource_history (…) SELECT … FROM r),
             i2 AS (INSERT INTO idx_token (pk, …) VALUES ($7, …), ((SELECT pk FROM r), $13, …)),
             …
        SELECT 1
    """
    n_new, index_parts, others = shape
    ctes: list[str] = []
    at = 0

    def row(width: int, pk: str | None = None) -> str:
        nonlocal at
        cells = [f"${at + j + 1}" for j in range(width)]
        at += width
        return "(" + ", ".join(cells if pk is None else [pk, *cells]) + ")"

    def cte(table: Table, cols: Sequence[str], rows: Sequence[str], more: str = "") -> str:
        name = "r" if table is resources else f"i{len(ctes)}"
        values = ", ".join(rows)
        return f'{name} AS (INSERT INTO "{table.name}" ({", ".join(cols)}) VALUES {values}{more})'

    new_pk: list[str] = []
    if n_new:
        rows = []
        for _ in range(n_new):
            # a new resource's pk, for its index rows: by its rtype and rid (its first two
            # parameters) when the statement creates several
            where = f" WHERE rtype = ${at + 1} AND rid = ${at + 2}" if n_new > 1 else ""
            new_pk.append(f"(SELECT pk FROM r{where})")
            rows.append(row(len(_NEW_RESOURCE_COLS)))
        returning = " RETURNING pk, rtype, rid, version, last_updated, deleted, data"
        ctes.append(cte(resources, _NEW_RESOURCE_COLS, rows, returning))
        ctes.append(
            f'h AS (INSERT INTO "{history.name}" (pk, version, rtype, rid, last_updated, method,'
            " deleted, data) SELECT pk, version, rtype, rid, last_updated, 'create', deleted,"
            " data FROM r)"
        )
    for kind, n_old, owners in index_parts:
        table = INDEX_TABLES[kind]
        cols = _columns(table)
        assert cols[:2] == ("pk", "rtype")  # the parameters' layout in _flush_in_one
        rows = [row(len(cols)) for _ in range(n_old)]
        rows += [row(len(cols) - 1, new_pk[owner]) for owner in owners]
        ctes.append(cte(table, cols, rows))
    for table, n in others:
        cols = _columns(table)
        ctes.append(cte(table, cols, [row(len(cols)) for _ in range(n)]))
    return ("WITH " + ", ".join(ctes) + " SELECT 1").encode()


@functools.cache
def _delete_index(table: Table) -> bytes:
    """``DELETE`` of the index rows of a list of pks (PostgreSQL, ``$1`` an array)."""
    return f'DELETE FROM "{table.name}" WHERE pk = ANY($1::bigint[])'.encode()


def _raw_cursor(raw: psycopg.Connection[Any]) -> psycopg.RawCursor[Any]:
    """A cursor for :func:`_values_insert` statements (``$n`` placeholders) on psycopg
    connection ``raw``."""
    import psycopg

    return psycopg.RawCursor(raw)


def _flat(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> list[Any]:
    return [row.get(c) for row in rows for c in cols]


class Repository:
    """Rows of one transaction. New resources are buffered and written in bulk (multi-row
    INSERTs of resources, history and index rows) when the transaction needs to read, or at
    :meth:`flush` before commit; reads that could see a buffered row flush first."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._copy = conn.dialect.name == "postgresql"
        self._pending: list[tuple[str, str, int, bytes, dict[str, list[dict[str, Any]]]]] = []
        self._pending_keys: set[tuple[str, str]] = set()
        self._prefetched: dict[tuple[str, str], CurrentRow | None] = {}
        #: history rows and (pk -> (rtype, index rows)) not written yet; pks whose stored index
        #: rows are stale (deleted at the next flush, before the buffered ones are written)
        self._history_rows: list[dict[str, Any]] = []
        self._index_rows: dict[int, tuple[str, dict[str, list[dict[str, Any]]]]] = {}
        self._stale_index: set[int] = set()
        #: rows of other tables (e.g. the EMPI's blocking rows) to insert at the next flush
        self._other_rows: dict[Table, list[dict[str, Any]]] = {}

    # -- reads ---------------------------------------------------------------------------------
    def current(self, rtype: str, rid: str, *, lock: bool = False) -> CurrentRow | None:
        if (rtype, rid) in self._pending_keys:
            self.flush()
        if (rtype, rid) in self._prefetched:
            return self._prefetched.pop((rtype, rid))
        stmt = select(*_CURRENT_COLS).where(resources.c.rtype == rtype, resources.c.rid == rid)
        if lock:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return CurrentRow(*row) if row else None

    def prefetch(self, keys: Iterable[tuple[str, str]], *, lock: bool = True) -> None:
        """Read (and lock) the current rows of many (type, id) keys in one query; the next
        :meth:`current` of each key is answered from here (once)."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._pending_keys]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            stmt = select(*_CURRENT_COLS).where(
                tuple_(resources.c.rtype, resources.c.rid).in_(chunk)
            )
            if lock:
                stmt = stmt.with_for_update()
            found = {(r.rtype, r.rid): CurrentRow(*r) for r in self.conn.execute(stmt)}
            for k in chunk:
                self._prefetched[k] = found.get(k)

    def current_by_pks(self, pks: Iterable[int]) -> list[CurrentRow]:
        self.flush()
        pks = list(pks)
        if not pks:
            return []
        rows = self.conn.execute(select(*_CURRENT_COLS).where(resources.c.pk.in_(pks))).all()
        by_pk = {r.pk: CurrentRow(*r) for r in rows}
        return [by_pk[p] for p in pks if p in by_pk]

    def version(self, rtype: str, rid: str, version: int) -> tuple[int, bool, bytes | None] | None:
        """(last_updated, deleted, data) of one version."""
        self.flush()
        row = self.conn.execute(
            select(history.c.last_updated, history.c.deleted, history.c.data)
            .join(resources, resources.c.pk == history.c.pk)
            .where(resources.c.rtype == rtype, resources.c.rid == rid, history.c.version == version)
        ).first()
        return (row[0], row[1], row[2]) if row else None

    # -- writes --------------------------------------------------------------------------------
    def insert_new(
        self,
        rtype: str,
        rid: str,
        last_updated: int,
        data: bytes,
        index_rows: dict[str, list[dict[str, Any]]],
    ) -> None:
        """Buffer a new resource (version 1); written at the next :meth:`flush`."""
        if (rtype, rid) in self._pending_keys:
            raise Conflict(f"{rtype}/{rid} is created twice in one transaction", "duplicate")
        self._pending.append((rtype, rid, last_updated, data, index_rows))
        self._pending_keys.add((rtype, rid))

    def insert_rows(self, table: Table, rows: Iterable[dict[str, Any]]) -> None:
        """Buffer plain rows of ``table`` (dicts with every column), inserted at the next
        :meth:`flush` with the history and index rows (in the same pipeline on PostgreSQL):
        for tables kept in step with a resource, like the EMPI's blocking rows."""
        self._other_rows.setdefault(table, []).extend(rows)

    def flush(self, *, last: bool = False) -> None:
        """Write everything buffered: the new resources, then the stale index rows' deletion,
        then the history and index rows, one bulk statement per table (PostgreSQL, a small
        flush: all of them in one statement, :meth:`_flush_in_one`).

        ``last``: the transaction will only commit after this. When then nothing else has run
        in it yet (a plain create: the flush is its only statement) and the flush is one
        statement, that statement runs on its own in autocommit: one round trip, with no BEGIN
        and no COMMIT (a statement is atomic by itself)."""
        if self._copy and self._flush_in_one(last=last):
            return
        if self._pending:
            self._flush_new()
        if self._stale_index:
            stale, self._stale_index = sorted(self._stale_index), set()
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                for table in INDEX_TABLES.values():
                    self.conn.execute(delete(table).where(table.c.pk.in_(chunk)))
        writes: list[tuple[Table, list[dict[str, Any]]]] = []
        if self._history_rows:
            rows, self._history_rows = self._history_rows, []
            writes.append((history, rows))
        if self._index_rows:
            pending, self._index_rows = self._index_rows, {}
            by_table: dict[str, list[dict[str, Any]]] = {}
            for pk, (rtype, idx) in pending.items():
                for kind, krows in idx.items():
                    if krows:
                        by_table.setdefault(kind, []).extend(
                            {**r, "pk": pk, "rtype": rtype} for r in krows
                        )
            writes.extend((INDEX_TABLES[kind], rows) for kind, rows in by_table.items())
        if self._other_rows:
            other, self._other_rows = self._other_rows, {}
            writes.extend((table, rows) for table, rows in other.items() if rows)
        small = [(t, rows) for t, rows in writes if self._copy and len(rows) < COPY_MIN_ROWS]
        for table, rows in writes:
            if not (self._copy and len(rows) < COPY_MIN_ROWS):
                self._write(table, rows)
        if small:
            self._pipelined(small)

    def _flush_in_one(self, *, last: bool = False) -> bool:
        """PostgreSQL: write a small flush (every table's rows fewer than :data:`COPY_MIN_ROWS`)
        as ONE statement of data-modifying CTEs (:func:`_one_statement`), after an update's
        index deletions, in one pipeline with the transaction's BEGIN (or, ``last`` and alone,
        in autocommit: see :meth:`flush`). The new resources' rows are inserted ``RETURNING``
        their columns; their history rows are selected from that (the JSON is not sent twice)
        and their index rows take their ``pk`` from it. False (nothing written) when the flush
        is too large for one statement: :meth:`flush` then writes it table by table."""
        pending = self._pending
        # the rows of each index table: those of resources already stored (pk known), then
        # those of the new ones (pk from the statement: the new resource's position), each as
        # (pk or position, rtype, row without pk and rtype)
        old: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        for pk, (rtype, idx) in self._index_rows.items():
            for kind, krows in idx.items():
                if krows:
                    old.setdefault(kind, []).extend((pk, rtype, r) for r in krows)
        new: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        for n, (t, _, _, _, idx) in enumerate(pending):
            for kind, krows in idx.items():
                new.setdefault(kind, []).extend((n, t, r) for r in krows)
        other = [(history, self._history_rows)] if self._history_rows else []
        other += [(table, rows) for table, rows in self._other_rows.items() if rows]
        sizes = [len(pending), *(len(v) for v in old.values()), *(len(v) for v in new.values())]
        sizes += [len(rows) for _, rows in other]
        if not any(sizes) and not self._stale_index:
            return True  # nothing buffered
        if max(sizes) >= COPY_MIN_ROWS or len(self._stale_index) > 500:
            return False
        kinds = sorted(old.keys() | new.keys())
        shape = (
            len(pending),
            tuple(
                (kind, len(old.get(kind, ())), tuple(n for n, _, _ in new.get(kind, ())))
                for kind in kinds
            ),
            tuple((table, len(rows)) for table, rows in other),
        )
        params: list[Any] = [v for t, i, ts, d, _ in pending for v in (t, i, 1, ts, False, d)]
        for kind in kinds:
            rest = _columns(INDEX_TABLES[kind])[2:]  # after pk and rtype
            for pk, rtype, r in old.get(kind, ()):
                params += (pk, rtype, *[r.get(c) for c in rest])
            for _, rtype, r in new.get(kind, ()):
                params += (rtype, *[r.get(c) for c in rest])
        for table, rows in other:
            params += [r.get(c) for r in rows for c in _columns(table)]
        if len(params) > MAX_PARAMS:
            return False
        statements: list[tuple[bytes, Sequence[Any]]] = []
        if self._stale_index:  # an update's old index rows go first
            stale = [sorted(self._stale_index)]
            statements += [(_delete_index(t), stale) for t in INDEX_TABLES.values()]
        if len(params):
            statements.append((_one_statement(shape), params))
        self._pending, self._pending_keys, self._stale_index = [], set(), set()
        self._history_rows, self._index_rows, self._other_rows = [], {}, {}
        self._run_pipelined(statements, new=bool(pending), last=last)
        return True

    def _run_pipelined(
        self, statements: Sequence[tuple[bytes, Sequence[Any]]], *, new: bool, last: bool
    ) -> None:
        """Run statements in one pipeline (with the BEGIN psycopg queues first when the
        transaction has not started: one round trip for all); ``last`` and a single statement
        in a transaction not started yet: that statement alone, in autocommit (see
        :meth:`flush`). A unique violation on the resources table (``new``: they insert
        resources) is a 409."""
        import psycopg
        from psycopg.pq import TransactionStatus

        raw = self.conn.connection.driver_connection
        assert raw is not None
        sql = b""
        try:
            if (
                last
                and len(statements) == 1
                and raw.info.transaction_status == TransactionStatus.IDLE
            ):
                sql, params = statements[0]
                raw.autocommit = True
                try:
                    with _raw_cursor(raw) as cur:
                        cur.execute(sql, params)
                finally:
                    raw.autocommit = False
                return
            with raw.pipeline(), _raw_cursor(raw) as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
        except psycopg.errors.UniqueViolation as exc:
            if new and exc.diag.table_name == resources.name:
                raise Conflict("A resource with that id already exists", "duplicate") from exc
            raise driver_error(sql, exc) from exc
        except psycopg.Error as exc:
            raise driver_error(sql, exc) from exc

    def _flush_new(self) -> None:
        pending, self._pending = self._pending, []
        self._pending_keys = set()
        rows = [
            {"rtype": t, "rid": i, "version": 1, "last_updated": ts, "deleted": False, "data": d}
            for t, i, ts, d, _ in pending
        ]
        try:
            if self._copy and len(rows) >= COPY_MIN_ROWS:
                pks = self._next_pks(len(rows))
                for pk, row in zip(pks, rows, strict=True):
                    row["pk"] = pk
                self._write(resources, rows)
            elif self._copy:
                # one multi-row INSERT … RETURNING; matched back by (type, id)
                cols = tuple(c.name for c in resources.columns if c.name != "pk")
                sql = _values_insert(resources, cols, len(rows))
                found = self._raw(resources, sql + b" RETURNING pk, rtype, rid", rows, cols)
                by_key = {(t, i): pk for pk, t, i in found}
                pks = [by_key[(t, i)] for t, i, *_ in pending]
            else:
                pks = list(
                    self.conn.execute(
                        insert(resources).returning(resources.c.pk, sort_by_parameter_order=True),
                        rows,
                    ).scalars()
                )
        except IntegrityError as exc:
            raise Conflict("A resource with that id already exists", "duplicate") from exc
        for pk, (t, i, ts, d, idx) in zip(pks, pending, strict=True):
            self._history_rows.append(
                {"pk": pk, "version": 1, "rtype": t, "rid": i, "last_updated": ts,
                 "method": "create", "deleted": False, "data": d}
            )  # fmt: skip
            self._index_rows[pk] = (t, idx)

    def _next_pks(self, n: int) -> list[int]:
        """``n`` new ``resources.pk`` values from the table's sequence (PostgreSQL), ascending."""
        found = self.conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('resources', 'pk')) FROM generate_series(1, :n)"
            ),
            {"n": n},
        ).scalars()
        return sorted(int(v) for v in found)

    def _write(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts with every column of ``table``) in one bulk statement."""
        if not self._copy:
            self.conn.execute(insert(table), list(rows))
            return
        cols = _columns(table)
        if len(rows) < COPY_MIN_ROWS:
            self._raw(table, _values_insert(table, cols, len(rows)), rows, cols)
            return
        import psycopg

        raw = self.conn.connection.driver_connection
        assert raw is not None
        try:
            with (
                raw.cursor() as cur,
                cur.copy(f'COPY "{table.name}" ({", ".join(cols)}) FROM STDIN') as cp,
            ):
                for row in rows:
                    cp.write_row([row.get(c) for c in cols])
        except psycopg.Error as exc:
            raise driver_error(f"COPY {table.name}", exc) from exc

    def _pipelined(self, writes: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
        """PostgreSQL: the small inserts of a flush (history and index rows, one
        :func:`_values_insert` per table) sent together in one pipeline: one round trip."""
        statements = []
        for table, rows in writes:
            cols = _columns(table)
            statements.append((_values_insert(table, cols, len(rows)), _flat(rows, cols)))
        self._run_pipelined(statements, new=False, last=False)

    def _raw(
        self, table: Table, sql: bytes, rows: Sequence[dict[str, Any]], cols: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """PostgreSQL: run a :func:`_values_insert` statement on the driver connection (one
        statement, one round trip); the rows it returns."""
        import psycopg

        raw = self.conn.connection.driver_connection
        assert raw is not None
        try:
            with _raw_cursor(raw) as cur:
                cur.execute(sql, _flat(rows, cols))
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise driver_error(sql, exc) from exc

    def write_version(
        self,
        cur: CurrentRow,
        version: int,
        last_updated: int,
        data: bytes | None,
        index_rows: dict[str, list[dict[str, Any]]] | None,
        method: str,
    ) -> None:
        """Replace the current row of ``cur`` with ``version`` (``data=None`` marks a delete);
        the history and index rows are buffered until :meth:`flush`."""
        deleted = data is None
        res = self.conn.execute(
            update(resources)
            .where(resources.c.pk == cur.pk, resources.c.version == cur.version)
            .values(version=version, last_updated=last_updated, deleted=deleted, data=data)
        )
        if res.rowcount != 1:  # someone else wrote in between: never lose an update
            raise Conflict(f"{cur.rtype}/{cur.rid} was changed concurrently; retry", "conflict")
        self._history_rows.append(
            {"pk": cur.pk, "version": version, "rtype": cur.rtype, "rid": cur.rid,
             "last_updated": last_updated, "method": method, "deleted": deleted, "data": data}
        )  # fmt: skip
        if not cur.deleted:
            self.delete_index(cur.pk)
        if index_rows:
            self._index_rows[cur.pk] = (cur.rtype, index_rows)

    def delete_index(self, pk: int) -> None:
        """Drop the index rows of ``pk``: buffered ones now, stored ones at the next flush."""
        self._index_rows.pop(pk, None)
        self._stale_index.add(pk)

    def replace_index(
        self, pk: int, rtype: str, index_rows: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.delete_index(pk)
        self._index_rows[pk] = (rtype, index_rows)
