"""search join indexes (PostgreSQL): live (rtype, rid) -> pk, reference rows by source
(rtype, param, pk), and a GIN index of the characters of string values for :contains
(ehr.search.query_indexes)

Revision ID: 0009
Revises: 0005
Create Date: 2026-11-29 01:00:00.000000

Nothing changes on SQLite (its unique ``(rtype, rid)`` index already carries the rowid ``pk``,
and ``:contains`` stays a ``LIKE`` scan there).
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.execute("SET LOCAL statement_timeout = 0")
    # _has and chains look targets up by (rtype, rid): answer with pk without reading the row
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_resources_rid_live ON resources (rtype, rid) "
        "INCLUDE (pk) WHERE NOT deleted"
    )
    # _has goes from the source resources' pks to their references: one range of this index
    # per (source type, parameter), joined by pk, instead of one probe per source
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_idx_reference_source ON idx_reference "
        "(rtype, param, pk) INCLUDE (target_type, target_id)"
    )
    # :contains with a Chinese pattern: the rows holding each of its characters (string_to_array
    # with a NULL separator splits a string into its characters; C, immutable, no extension)
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_idx_string_chars ON idx_string "
        "USING gin (string_to_array(value, NULL))"
    )
    op.execute("ANALYZE resources")
    op.execute("ANALYZE idx_reference")
    op.execute("ANALYZE idx_string")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_idx_string_chars")
    op.execute("DROP INDEX IF EXISTS ix_idx_reference_source")
    op.execute("DROP INDEX IF EXISTS ix_resources_rid_live")
