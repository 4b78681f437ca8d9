"""Tables of Bulk Data jobs (https://hl7.org/fhir/uv/bulkdata/STU2/export.html), on the store's
shared metadata so Alembic (revision ``0002``) creates them with the rest of the schema.

* ``bulk_jobs``: one row per ``$export`` or ``$import`` job. ``status`` is queued | running |
  completed | failed | cancelled. ``request`` (JSON text) holds the kick-off URL and the
  validated parameters; ``cursor`` (JSON text) where the job has got to, so a restarted worker
  resumes it; ``manifest`` (JSON text) the completion manifest with file *names* (the URLs are
  made by the REST layer). ``worker`` + ``heartbeat`` form the lease: a running job whose
  heartbeat is older than the worker's ``stale_after`` is taken over by another worker.
  Times are µs since the epoch, as everywhere in the store.
* ``bulk_files``: the files of a job (ndjson outputs and OperationOutcome error files) with their
  resource ``count`` and byte ``size`` as of the last committed chunk. A resumed job truncates
  each file back to ``size``, so a chunk written but not committed before a crash is written
  again exactly once.
* ``bulk_job_patients``: the patients of a Patient- or Group-level export, snapshotted at kick-off
  (the Group's active ``member.entity`` Patients); the export joins the reference index to it.

The ``(rtype, pk)`` index on ``resources`` lets every database read one type in ``pk`` order
(the export's keyset) without scanning the other types' rows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from ehr.storage.tables import metadata, resources

__all__ = ["bulk_files", "bulk_job_patients", "bulk_jobs"]

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(8), nullable=False),  # export | import
    Column("status", String(12), nullable=False),  # queued running completed failed cancelled
    Column("request", Text, nullable=False),
    Column("owner", String(200), nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("transaction_time", BigInteger, nullable=False),
    Column("worker", String(200), nullable=True),
    Column("heartbeat", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("done", BigInteger, nullable=False, default=0),
    Column("total", BigInteger, nullable=True),
    Column("cursor", Text, nullable=True),
    Column("manifest", Text, nullable=True),
    Column("error", Text, nullable=True),
)
Index("ix_bulk_jobs_status", bulk_jobs.c.status, bulk_jobs.c.created)

bulk_files = Table(
    "bulk_files",
    metadata,
    Column("job_id", String(32), ForeignKey("bulk_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("kind", String(8), nullable=False),  # output | error
    Column("rtype", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
)

bulk_job_patients = Table(
    "bulk_job_patients",
    metadata,
    Column("job_id", String(32), ForeignKey("bulk_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("rid", String(64), primary_key=True),
)

Index("ix_resources_rtype_pk", resources.c.rtype, resources.c.pk)
