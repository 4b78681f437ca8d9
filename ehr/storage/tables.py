"""SQLAlchemy tables of the store: current resources, their history, and the search indexes.

Layout (the same on SQLite and PostgreSQL; Alembic migrations in ``migrations/`` create it):

* ``resources``: one row per logical resource (``rtype``, ``rid``) with a surrogate integer key
  ``pk``. ``data`` holds the exact JSON bytes served on read (meta included), so reads never
  re-serialize or re-validate. A deleted resource keeps its row with ``deleted = true`` and
  ``data`` NULL (reads answer 410).
* ``resource_history``: every version, including deletions, keyed by (``pk``, ``version``).
* one index table per search-parameter type (see :mod:`ehr.search.tables`), keyed by ``pk``,
  written in the same transaction as the resource rows.

Times are integers: microseconds since the Unix epoch, UTC. They compare and sort the same way on
both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

__all__ = ["PK", "history", "metadata", "resources", "sequence_counters"]

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so autoincrement works) on SQLite.
PK = BigInteger().with_variant(Integer(), "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", LargeBinary, nullable=True),
    UniqueConstraint("rtype", "rid", name="uq_resources_rtype_rid"),
)
Index("ix_resources_rtype_last_updated", resources.c.rtype, resources.c.last_updated)

history = Table(
    "resource_history",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("rtype", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    # create | update | delete | patch: the HTTP verb of Bundle.entry.request in history bundles
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", LargeBinary, nullable=True),
)
Index("ix_resource_history_last_updated", history.c.last_updated)
Index("ix_resource_history_rtype_last_updated", history.c.rtype, history.c.last_updated)

# Named counters for domain services that need gap-free numbers (queue numbers, card serials).
sequence_counters = Table(
    "sequence_counters",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
