"""Single-statement reads on pooled psycopg connections (PostgreSQL): the read by id, and the
current versions of many ids (:meth:`ehr.store.Store.read_current`).

``GET [type]/[id]`` is one primary-key SELECT. Through SQLAlchemy's pool, the checkout and
return of a connection (its wrapper, events, bookkeeping) cost about as much Python as the
query itself. :class:`ReadPool` keeps plain psycopg connections for it instead:

* autocommit (a single SELECT needs no BEGIN/ROLLBACK), a prepared statement, the same
  ``statement_timeout`` as the engine;
* no ping before use: a connection found broken (a database restart, an idle connection cut)
  is dropped and the read retried once on a new one (a read is idempotent);
* a connection that failed in any other way is dropped too (never reused in an unknown
  state), and the error raised as it came;
* up to ``size`` idle connections are kept; more may be open while more threads read at once
  (as many as the threads of the caller), the extra ones are closed when returned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

__all__ = ["ReadPool"]

_T = TypeVar("_T")


class ReadPool:
    """Thread-safe: ``deque.pop``/``append`` are atomic."""

    def __init__(
        self, conninfo: str, *, size: int = 10, statement_timeout_ms: int = 30_000
    ) -> None:
        self.conninfo = conninfo
        self.size = size
        self.options = f"-c statement_timeout={int(statement_timeout_ms)}"
        self._idle: deque[psycopg.Connection[Any]] = deque()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True, options=self.options)

    def fetchone(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of ``sql`` (a read), or None."""
        return self._run(sql, params, psycopg.Cursor.fetchone)

    def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (a read)."""
        return self._run(sql, params, psycopg.Cursor.fetchall)

    def _run(
        self, sql: str, params: Sequence[Any], fetch: Callable[[psycopg.Cursor[Any]], _T]
    ) -> _T:
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._connect()
        retried = False
        while True:
            try:
                rows = fetch(conn.execute(sql, params, prepare=True))
            except psycopg.OperationalError:
                disconnected = conn.broken
                conn.close()
                if not disconnected or retried:
                    raise
                conn, retried = self._connect(), True  # cut while idle: once more, on a new one
                continue
            except BaseException:
                conn.close()
                raise
            if len(self._idle) < self.size:
                self._idle.append(conn)
            else:
                conn.close()
            return rows

    def close(self) -> None:
        """Close the idle connections (the pool stays usable: it opens new ones)."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break
