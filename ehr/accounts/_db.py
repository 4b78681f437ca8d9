"""Transactions and small helpers shared by the account repositories."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from ehr.search.dates import now_us
from ehr.storage.db import WRITE

__all__ = ["US", "dump_json", "load_json", "now_us", "read_tx", "write_tx"]

US = 1_000_000


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction (SQLite: ``BEGIN IMMEDIATE``, so writers are serialized)."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def load_json(text: str | None, default: Any = None) -> Any:
    return default if not text else json.loads(text)
