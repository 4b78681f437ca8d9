"""Engines for the two supported databases.

* SQLite (embedded default): WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for write
  transactions, so SQLite's single writer serializes all writes (conditional create included)
  while readers go on in parallel.
* PostgreSQL (production, psycopg 3): READ COMMITTED with row locks (``SELECT … FOR UPDATE``)
  and transaction-scoped advisory locks where a write depends on a search (conditional create).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError

__all__ = ["WRITE", "driver_error", "is_postgres", "is_sqlite", "make_engine"]

#: execution option marking a connection that will write (SQLite: BEGIN IMMEDIATE)
WRITE = {"ehr_write": True}


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def is_postgres(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


def driver_error(sql: str | bytes, exc: Exception, params: Any = None) -> StatementError:
    """A psycopg error of a statement run on the driver connection (bypassing SQLAlchemy),
    wrapped as SQLAlchemy wraps it (``IntegrityError`` for a unique violation,
    ``OperationalError`` for a lost connection or a timeout, ...), so callers and the API's
    error mapping see the same exceptions on every path."""
    import psycopg

    text = sql.decode() if isinstance(sql, bytes) else sql
    return DBAPIError.instance(text, params, exc, psycopg.Error)


def make_engine(
    url: str, *, pool_size: int = 20, statement_timeout_ms: int = 30_000, autocommit: bool = False
) -> Engine:
    """An engine for ``url``. ``autocommit=True`` (PostgreSQL) makes a read-only pool whose
    single statements need no BEGIN/ROLLBACK round trips: the hot read path uses it."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False
        )
        _configure_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        kwargs["pool_reset_on_return"] = None
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}
    engine = create_engine(url, **kwargs)
    if not autocommit:
        _ping_when_idle(engine)
    return engine


#: a pooled connection idle for longer than this is pinged before use (seconds)
PING_AFTER_IDLE_S = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it has been idle for more than
    :data:`PING_AFTER_IDLE_S` (HikariCP's "alive bypass window"), not before every transaction
    as ``pool_pre_ping`` does: under load a connection is back in use within milliseconds, and
    the ping was one round trip more per write. A ping that fails makes the pool discard the
    connection and check out another (``DisconnectionError``); a connection cut while in use is
    invalidated by SQLAlchemy on the error (the request answers 503, see ``fhir_api.errors``),
    and with it the pool's other connections as old as it."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["ehr_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("ehr_idle_since")
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)  # as pool_pre_ping does (outside a transaction)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get("ehr_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
