"""Indexes the search queries rely on beyond those of the tables' own modules (revisions
``0005`` and ``0009``).

http://hl7.org/fhir/R4/search.html

* ``ix_resources_live``: ``resources (rtype, pk)`` over current, non-deleted rows only. Every
  search tests ``r.rtype = T AND NOT r.deleted AND r.pk IN (...)`` and orders by ``pk``; this
  index answers all of it without touching the (wide) table rows: an index-only scan in ``pk``
  order for a page (merge semi-join, stops after one page), index-only probes for a count, and
  ``_summary=count`` over a whole type without a sequential scan.

On PostgreSQL the migration also rebuilds the lookup indexes of the index tables with
``INCLUDE (pk)`` (index-only scans: a criterion's ``pk`` list never reads the table), the ``pk``
indexes of ``idx_reference`` and ``idx_date`` with their value columns (chains, ``_has``,
``_include``, date sort keys and second date criteria probe them by ``pk``), builds the
string lookup on ``value COLLATE "C"`` (the collation :func:`ehr.search.sql.starts_with` compares
in, so a prefix is one exact index range whatever the database's collation), creates
extended statistics on ``(rtype, param)`` of every index table and on ``(rtype, param, code,
system)`` of ``idx_token`` (without them PostgreSQL multiplies correlated selectivities and
expects one row where there are 25,000, and picks nested loops), and sets
``plan_cache_mode = force_custom_plan`` on the database: psycopg prepares a statement after five
executions and PostgreSQL would then switch to a *generic* plan, which cannot see that
``subject = Patient/x`` matches ten rows and ``code = 8867-4`` a hundred thousand; a search with
generic plans was hundreds of times slower at 100,000 patients (``bench/RESULTS-search.md``).
Revision ``0009`` adds, on PostgreSQL only:

* ``ix_resources_rid_live``: ``resources (rtype, rid) INCLUDE (pk) WHERE NOT deleted``. ``_has``
  and chains find the resources a reference names by ``(rtype, rid)``; with ``pk`` in the index
  that probe no longer reads the (wide, mostly uncached) table row: at 100,000 patients a
  common ``_has`` read 25,000 heap pages from disk for it.
* ``ix_idx_reference_source``: ``idx_reference (rtype, param, pk) INCLUDE (target_type,
  target_id)``. ``_has`` starts from the pks of the matching sources (``Condition?code=I10``)
  and needs their ``patient`` references: one range scan of this index (every
  ``Condition.patient`` row, in pk order) hash-joined to those pks replaces one probe of the pk
  index per source.
* ``ix_idx_string_chars``: a GIN index on ``string_to_array(value, NULL)`` of ``idx_string``
  (a value's characters). ``:contains`` with a non-ASCII pattern adds
  ``string_to_array(value, NULL) @> <the pattern's characters>``
  (:func:`ehr.search.sql.contains_chars`) to its ``LIKE``, so a two-character Chinese given
  name is found through the index instead of a scan of every name (pg_trgm needs three
  characters, and is not always installable). Characters rather than character pairs: the
  built-in function costs ~2 µs per index row on the write path, a SQL n-gram function ~30 µs
  (+26% write time in ``bench_search.py --write-cost``), for the same query time.

Those PostgreSQL-only details are not declared here (autogenerate runs on SQLite and never sees
them).
"""

from __future__ import annotations

from sqlalchemy import Index, false

from ehr.storage.tables import resources

__all__ = ["ix_resources_live"]

ix_resources_live = Index(
    "ix_resources_live",
    resources.c.rtype,
    resources.c.pk,
    postgresql_where=resources.c.deleted == false(),
    sqlite_where=resources.c.deleted == false(),
)
