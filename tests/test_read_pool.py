"""The read by id on PostgreSQL (:mod:`ehr.storage.read_pool`): plain psycopg connections,
no ping; a connection cut while idle is replaced and the read retried once; a connection
that failed otherwise is dropped, the error raised as it came."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from ehr.errors import Gone, NotFound
from ehr.storage.read_pool import ReadPool
from ehr.store import Store

PATIENT = {"resourceType": "Patient", "name": [{"family": "王"}]}


@pytest.fixture
def pg_store(pg_database: str) -> Iterator[Store]:
    s = Store(pg_database, pool_size=2)
    yield s
    s.dispose()


def _conninfo(store: Store) -> str:
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate_others(store: Store) -> int:
    """Cut every other session of the database (as a restart would), returns how many."""
    with store.engine.connect() as c:
        n = c.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        c.commit()
    return int(n)


def test_read_survives_cut_connections(pg_store: Store) -> None:
    created = pg_store.create(PATIENT)
    first = pg_store.read("Patient", created.rid)
    assert _terminate_others(pg_store) >= 1  # the read pool's idle connection among them
    again = pg_store.read("Patient", created.rid)  # retried once on a new connection
    assert again == first
    with pytest.raises(NotFound):
        pg_store.read("Patient", "no-such-id")
    pg_store.delete("Patient", created.rid)
    with pytest.raises(Gone):
        pg_store.read("Patient", created.rid)


def test_failed_statement_drops_its_connection(pg_store: Store) -> None:
    pool = ReadPool(_conninfo(pg_store), size=2, statement_timeout_ms=50)
    try:
        assert pool.fetchone("SELECT 1", ()) == (1,)
        (kept,) = pool._idle
        with pytest.raises(psycopg.errors.QueryCanceled):
            pool.fetchone("SELECT pg_sleep(1)", ())
        assert kept.closed and not pool._idle  # not reused in an unknown state
        with pytest.raises(psycopg.errors.UndefinedTable):
            pool.fetchone("SELECT * FROM no_such_table", ())
        assert pool.fetchone("SELECT 2", ()) == (2,)
    finally:
        pool.close()


def test_keeps_at_most_size_idle_connections(pg_store: Store) -> None:
    pool = ReadPool(_conninfo(pg_store), size=1)
    try:
        a, b = pool._connect(), pool._connect()
        pool._idle.extend([a, b])  # two in use at once, both returned
        assert pool.fetchone("SELECT 1", ()) == (1,)  # takes b, returns it: one too many
        assert list(pool._idle) == [a] and b.closed
        pool.close()
        assert a.closed and not pool._idle
        assert pool.fetchone("SELECT 3", ()) == (3,)  # usable after close (new connection)
    finally:
        pool.close()
