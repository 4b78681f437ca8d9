"""Schema migrations with Alembic; the same revisions run on SQLite and PostgreSQL.

``ehr migrate`` and :meth:`ehr.Store.migrate` call :func:`upgrade`. New revisions:
``python -m ehr.storage.migrate revision "message"`` (autogenerate against a scratch SQLite).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

__all__ = ["alembic_config", "upgrade"]

HERE = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _revision(message: str) -> None:
    from ehr.storage.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/scratch.sqlite")
        upgrade(engine)
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "revision":
        _revision(sys.argv[2])
    else:
        print(__doc__)
