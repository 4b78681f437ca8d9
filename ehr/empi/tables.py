"""The EMPI blocking table, on the store's shared metadata (Alembic revision ``0006``).

Blocking (:mod:`ehr.empi.blocking`): http://hl7.org/fhir/R4/patient-operation-match.html leaves
the algorithm to the server; ours compares a registration only with the records that share a
blocking key.

``empi_blocking`` holds one row per (key, source Patient):

* the blocking keys of :func:`ehr.empi.blocking.blocking_keys` (``cid:``, ``id:``, ``tel:``,
  ``nm:``, ``dob:``): candidates are ``SELECT DISTINCT patient_id WHERE key IN (...)``, after
  leaving out the non-identifier keys whose block is larger than ``max_block``;
* the name-count keys of :func:`ehr.empi.blocking.name_count_keys` (``han:``, ``py:``): their
  ``count(*)`` over the number of indexed patients is the name frequency scoring uses;
* one ``all:`` row per patient: the number of indexed patients.

Rows are keyed by the Patient's logical id, not ``resources.pk``: the EMPI write hook runs before
a new Patient's row exists. They are written by that hook in the Patient's own transaction and
replaced on every update (deleted with the Patient), like the search-index rows. Golden records
are never indexed here: only hospitals' source records are candidates.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, PrimaryKeyConstraint, String, Table

from ehr.storage.tables import metadata

__all__ = ["ALL_KEY", "empi_blocking"]

#: the key every indexed patient has once (the population count)
ALL_KEY = "all:"

empi_blocking = Table(
    "empi_blocking",
    metadata,
    Column("key", String(512), nullable=False),
    Column("patient_id", String(64), nullable=False),
    PrimaryKeyConstraint("key", "patient_id", name="pk_empi_blocking"),
)
Index("ix_empi_blocking_patient_id", empi_blocking.c.patient_id)
