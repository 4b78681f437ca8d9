"""Alembic environment: runs on the connection handed over by :func:`ehr.storage.migrate.upgrade`
(or builds an engine from ``EHR_DATABASE_URL`` when run through the ``alembic`` CLI)."""

from __future__ import annotations

from alembic import context

import ehr.accounts.tables  # noqa: F401  (registers the authorization server tables)
import ehr.bulk.tables  # noqa: F401  (registers the Bulk Data job tables)
import ehr.cards.tables  # noqa: F401  (registers the health one-card tables)
import ehr.empi.tables  # noqa: F401  (registers the EMPI blocking table)
import ehr.search.jobs_tables  # noqa: F401  (registers the reindex job table)
import ehr.search.query_indexes  # noqa: F401  (registers the search query indexes)
import ehr.search.tables  # noqa: F401  (registers the index tables on the metadata)
import ehr.security.tables  # noqa: F401  (registers the audit chain and consent rule tables)
from ehr.storage.tables import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from ehr.settings import get_settings
        from ehr.storage.db import make_engine

        engine = make_engine(get_settings().resolved_database_url())
        with engine.begin() as conn:
            context.configure(
                connection=conn, target_metadata=target_metadata, render_as_batch=True
            )
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
