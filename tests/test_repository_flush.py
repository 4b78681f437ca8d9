"""The repository's bulk flush, on both databases: small flushes (one statement per table; on
PostgreSQL multi-row ``INSERT … VALUES``) and large ones (PostgreSQL ``COPY``) write the same
rows, refuse a duplicate id, and refuse an over-long index value rather than cut it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from ehr.empi.tables import empi_blocking
from ehr.errors import Conflict
from ehr.search.tables import INDEX_TABLES
from ehr.storage.repository import COPY_MIN_ROWS, Repository
from ehr.storage.tables import history, resources
from ehr.store import Store


def _patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"flush-{i}",
        "name": [{"family": f"刘{i}", "given": ["洋"]}],
        "birthDate": f"19{50 + i % 50}-03-04",
        "identifier": [{"system": "urn:flush", "value": str(i)}],
    }


def _counts(store: Store) -> dict[str, int]:
    with store.read_conn() as c:
        return {
            t.name: c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (resources, history, *INDEX_TABLES.values())
        }


@pytest.mark.parametrize("n", [1, 3, COPY_MIN_ROWS - 1, COPY_MIN_ROWS + 6])
def test_flush_writes_every_row(store: Store, n: int) -> None:
    with store.write() as ctx:
        results = [ctx.update("Patient", f"flush-{i}", _patient(i)) for i in range(n)]
    counts = _counts(store)
    assert counts["resources"] == n and counts["resource_history"] == n
    assert counts["idx_token"] >= n and counts["idx_string"] >= n and counts["idx_date"] >= n
    for i, r in enumerate(results):
        got = store.read("Patient", f"flush-{i}")
        assert got.version == 1 and got.data == r.data
    found = store.search("Patient", [("identifier", f"urn:flush|{n - 1}")])
    assert [h.rid for h in found.matches] == [f"flush-{n - 1}"]
    with store.read_conn() as c:  # every index row belongs to its own resource
        pks = dict(c.execute(select(resources.c.rid, resources.c.pk)).all())
        dates = c.execute(text("SELECT pk, low FROM idx_date WHERE param = 'birthdate'")).all()
    by_pk = {pk: low for pk, low in dates}
    for i in range(n):
        year = 1950 + i % 50
        assert str(year) in str(_year_of(by_pk[pks[f"flush-{i}"]]))


def _year_of(low_us: int) -> int:
    from ehr.search.dates import us_to_instant

    return int(us_to_instant(low_us)[:4])


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS + 1])
def test_duplicate_id_in_a_flush_is_a_conflict_and_writes_nothing(store: Store, n: int) -> None:
    store.update("Patient", "flush-0", _patient(0))
    before = _counts(store)
    with pytest.raises(Conflict), store.write() as ctx:
        for i in range(n):
            ctx.insert_with_id("Patient", f"flush-{i}", _patient(i))
    assert _counts(store) == before


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS + 1])
def test_over_long_index_value_is_refused_not_cut(store: Store, backend: str, n: int) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    rows = [
        {"pk": 10_000 + i, "rtype": "Patient", "param": "x", "value": "u" * 2000} for i in range(n)
    ]
    with pytest.raises(DBAPIError), store.engine.begin() as conn:
        repo = Repository(conn)
        repo._write(INDEX_TABLES["uri"], rows)
    assert _counts(store)["idx_uri"] == 0


def _blocking_rows(store: Store) -> list[tuple[str, str]]:
    with store.read_conn() as c:
        rows = c.execute(select(empi_blocking.c.key, empi_blocking.c.patient_id)).all()
    return sorted((str(k), str(p)) for k, p in rows)


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS + 1])
def test_insert_rows_are_written_at_the_flush_and_seen_by_the_transaction(
    store: Store, n: int
) -> None:
    rows = [{"key": f"k:{i}", "patient_id": "flush-0"} for i in range(n)]
    with store.write() as ctx:
        ctx.insert_with_id("Patient", "flush-0", _patient(0))
        ctx.repo.insert_rows(empi_blocking, rows)
        # a query through ctx.conn sees them (the buffer is flushed first)
        seen = ctx.conn.execute(select(func.count()).select_from(empi_blocking)).scalar_one()
        assert seen == n
    assert _blocking_rows(store) == sorted((r["key"], r["patient_id"]) for r in rows)


def test_insert_rows_roll_back_with_the_write(store: Store) -> None:
    store.update("Patient", "flush-0", _patient(0))
    before = _counts(store)
    with pytest.raises(Conflict), store.write() as ctx:
        ctx.repo.insert_rows(empi_blocking, [{"key": "k:1", "patient_id": "flush-1"}])
        ctx.insert_with_id("Patient", "flush-0", _patient(0))  # a duplicate: nothing is written
    assert _counts(store) == before and _blocking_rows(store) == []


def test_one_flush_mixing_updates_creates_and_deletes_indexes_each_right(store: Store) -> None:
    """One small flush holding an update (its old index rows replaced), a delete (its index
    rows dropped) and new resources (their index rows on their own pks): on PostgreSQL a
    single pipeline of statements, on SQLite one statement per table."""
    for i in range(3):
        store.update("Patient", f"flush-{i}", _patient(i))
    with store.write() as ctx:
        ctx.update("Patient", "flush-0", {**_patient(0), "identifier": [
            {"system": "urn:flush", "value": "renamed"}]})  # fmt: skip
        ctx.delete("Patient", "flush-1")
        ctx.update("Patient", "flush-7", _patient(7))
        ctx.create({**_patient(8), "identifier": [{"system": "urn:flush", "value": "new"}]})

    def ids(value: str) -> list[str]:
        return [
            h.rid for h in store.search("Patient", [("identifier", f"urn:flush|{value}")]).matches
        ]

    assert ids("0") == [] and ids("renamed") == ["flush-0"]
    assert ids("1") == []  # deleted
    assert ids("2") == ["flush-2"] and ids("7") == ["flush-7"]
    assert len(ids("new")) == 1
    with store.read_conn() as c:  # the deleted one keeps no index row; the others one each
        rows = c.execute(
            text(
                "SELECT r.rid, count(*) FROM idx_date d JOIN resources r ON r.pk = d.pk"
                " WHERE d.param = 'birthdate' GROUP BY r.rid"
            )  # fmt: skip
        ).all()
    counts = dict(rows)
    assert "flush-1" not in counts
    assert counts["flush-0"] == counts["flush-2"] == counts["flush-7"] == 1
