"""search indexes: ix_resources_live (ehr.search.query_indexes); on PostgreSQL covering lookup
indexes (INCLUDE pk), the string lookup in COLLATE "C", extended statistics on the index tables
and plan_cache_mode = force_custom_plan

Revision ID: 0005
Revises: 0008
Create Date: 2026-11-28 22:50:00.000000

(``0005`` was reserved for the search indexes; ``0006`` was chained to ``0004`` meanwhile, so this
revision follows the head at the time it was written.)
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0008'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: name -> (table, key columns as created in 0001)
_LOOKUPS = {
    "ix_idx_string_lookup": ("idx_string", "rtype, param, value"),
    "ix_idx_token_code": ("idx_token", "rtype, param, code, system"),
    "ix_idx_reference_target": ("idx_reference", "target_id, target_type, rtype, param"),
    "ix_idx_date_lookup": ("idx_date", "rtype, param, low, high"),
    "ix_idx_number_lookup": ("idx_number", "rtype, param, value"),
    "ix_idx_quantity_lookup": ("idx_quantity", "rtype, param, value"),
    "ix_idx_uri_lookup": ("idx_uri", "rtype, param, value"),
    "ix_idx_composite_lookup": ("idx_composite", "rtype, param, c1_code"),
}
#: the PostgreSQL key columns after this revision (the string value compared in "C")
_PG_KEYS = {**{k: v[1] for k, v in _LOOKUPS.items()}, "ix_idx_string_lookup": 'rtype, param, value COLLATE "C"'}
_TABLES = [t for t, _ in _LOOKUPS.values()]


def _rebuild(name: str, table: str, keys: str, include: str) -> None:
    op.execute(f"CREATE INDEX {name}_new ON {table} ({keys}){include}")
    op.execute(f"DROP INDEX {name}")
    op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def _may_alter_database(bind: sa.engine.Connection) -> bool:
    return bool(
        bind.execute(
            sa.text(
                "SELECT d.datdba = r.oid OR r.rolsuper FROM pg_database d, pg_roles r "
                "WHERE d.datname = current_database() AND r.rolname = current_user"
            )
        ).scalar()
    )


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index(
            'ix_resources_live', ['rtype', 'pk'], unique=False,
            postgresql_where=sa.text('NOT deleted'), sqlite_where=sa.text('deleted = 0'),
        )  # fmt: skip
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.execute("SET LOCAL statement_timeout = 0")
    for name, (table, _) in _LOOKUPS.items():
        _rebuild(name, table, _PG_KEYS[name], " INCLUDE (pk)")
    # chains, _has and _include go from a source pk to its reference targets, and _sort and a
    # second criterion on a date probe a resource's dates by pk: make those probes index-only
    _rebuild("ix_idx_reference_pk", "idx_reference", "pk", " INCLUDE (rtype, param, target_type, target_id)")
    _rebuild("ix_idx_date_pk", "idx_date", "pk", " INCLUDE (rtype, param, low, high)")
    # rtype and param are strongly correlated (and code with system): without these statistics
    # PostgreSQL multiplies their selectivities and expects ~1 row where there are 10,000s
    for table in _TABLES:
        op.execute(f"CREATE STATISTICS st_{table} (mcv, dependencies) ON rtype, param FROM {table}")
    op.execute(
        "CREATE STATISTICS st_idx_token_code (mcv, dependencies) ON rtype, param, code, system "
        "FROM idx_token"
    )
    op.execute("ALTER STATISTICS st_idx_token_code SET STATISTICS 500")
    for table in _TABLES:
        op.execute(f"ANALYZE {table}")
    if _may_alter_database(bind):
        db = bind.execute(sa.text("SELECT current_database()")).scalar_one()
        op.execute(f'ALTER DATABASE "{db}" SET plan_cache_mode = force_custom_plan')
    else:
        log.warning(
            "not the database owner: set plan_cache_mode = force_custom_plan for the server's "
            "role or database yourself (generic plans make searches much slower)"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("SET LOCAL statement_timeout = 0")
        for name, (table, keys) in _LOOKUPS.items():
            _rebuild(name, table, keys, "")
        _rebuild("ix_idx_reference_pk", "idx_reference", "pk", "")
        _rebuild("ix_idx_date_pk", "idx_date", "pk", "")
        for table in _TABLES:
            op.execute(f"DROP STATISTICS IF EXISTS st_{table}")
        op.execute("DROP STATISTICS IF EXISTS st_idx_token_code")
        if _may_alter_database(bind):
            db = bind.execute(sa.text("SELECT current_database()")).scalar_one()
            op.execute(f'ALTER DATABASE "{db}" RESET plan_cache_mode')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ix_resources_live')
