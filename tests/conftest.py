"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL tests use 127.0.0.1:5432 (user postgres, trust auth) or ``EHR_TEST_PG_URL``. With
``CI=true`` (or ``EHR_REQUIRE_PG=1``) an unreachable PostgreSQL is an error; locally those tests
are skipped with a loud reason.

Each backend gets one migrated database per test process (xdist worker); every test starts from
empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ehr.search.tables import INDEX_TABLES
from ehr.storage.db import make_engine
from ehr.storage.migrate import upgrade
from ehr.storage.tables import metadata
from ehr.store import Store

PG_ADMIN_URL = os.environ.get(
    "EHR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("CI", "").lower() == "true" or os.environ.get("EHR_REQUIRE_PG") == "1"

_ = INDEX_TABLES  # the index tables are part of the metadata truncated between tests

# The served product matches every Patient write (EMPI, ehr.settings ``empi`` defaults on). Tests
# that are not about the EMPI run without it, by configuration: the EMPI tests turn it on
# themselves (``Settings(empi=True)``, ``ehr.empi.service.install``). ``EHR_EMPI=1 pytest``
# runs the whole suite with it on.
os.environ.setdefault("EHR_EMPI", "0")


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc).splitlines()[0]


_PG_ERROR = _pg_available()
if _PG_ERROR and REQUIRE_PG:
    raise RuntimeError(f"PostgreSQL is required (CI) but unreachable: {_PG_ERROR}")
if _PG_ERROR:
    print(
        "\n" + "!" * 78 + f"\n!! PostgreSQL unreachable ({_PG_ERROR}).\n"
        "!! The PostgreSQL half of the suite is SKIPPED. CI runs it.\n" + "!" * 78
    )


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if _PG_ERROR:
        pytest.skip(f"PostgreSQL unreachable: {_PG_ERROR}")
    name = f"ehr_test_{_worker()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "ehr.sqlite"
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


def _empty(url: str) -> None:
    eng = make_engine(url)
    with eng.begin() as c:
        names = [t.name for t in metadata.sorted_tables]
        if eng.dialect.name == "postgresql":
            c.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY"))
        else:
            for n in names:
                c.execute(text(f'DELETE FROM "{n}"'))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty, migrated database: once SQLite, once PostgreSQL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_database")
    else:
        url = request.getfixturevalue("sqlite_database")
    _empty(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url, pool_size=5)
    yield s
    s.dispose()


@pytest.fixture
def backend(db_url: str) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"
