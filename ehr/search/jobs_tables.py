"""The table of reindex jobs (:mod:`ehr.search.reindex`), on the store's shared metadata so
Alembic (revision ``0004``) creates it with the rest of the schema.

``reindex_jobs``: one row per reindex. ``rtypes`` (JSON list, NULL for every type) and
``param_url`` (the SearchParameter that prompted it, if any) say what is rebuilt. ``cursor`` is
the largest ``resources.pk`` whose index rows are rebuilt; it moves forward in the same
transaction as each chunk's rows, so a resumed job continues exactly where the last committed
chunk ended. ``done``/``total`` count resources (``total`` as counted when the job started) and
``elapsed_us`` the time spent in chunks, for the rate. ``status`` is queued | running | paused |
done | failed | cancelled; ``worker`` + ``heartbeat`` show who runs it. Times are µs since the
epoch, as everywhere in the store.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from ehr.storage.tables import metadata

__all__ = ["reindex_jobs"]

reindex_jobs = Table(
    "reindex_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(12), nullable=False),
    Column("rtypes", Text, nullable=True),
    Column("param_url", String(1024), nullable=True),
    Column("chunk", Integer, nullable=False),
    Column("cursor", BigInteger, nullable=False, default=0),
    Column("done", BigInteger, nullable=False, default=0),
    Column("total", BigInteger, nullable=True),
    Column("elapsed_us", BigInteger, nullable=False, default=0),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("finished", BigInteger, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("heartbeat", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
)
Index("ix_reindex_jobs_status", reindex_jobs.c.status, reindex_jobs.c.created)
