"""Small helpers on FHIR JSON: references, extensions, instants in China Standard Time, and a
:class:`Reader` that reads resources on one connection (inside a write transaction or not).

Data types: http://hl7.org/fhir/R4/datatypes.html (instant, dateTime, Reference),
http://hl7.org/fhir/R4/references.html, http://hl7.org/fhir/R4/extensibility.html.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from ehr.errors import Unprocessable
from ehr.model import loads
from ehr.sitetime import CST
from ehr.storage.repository import Repository
from ehr.store import Store, WriteContext

__all__ = [
    "CST",
    "Reader",
    "ext",
    "ext_value",
    "fmt_instant",
    "local_day_bounds",
    "parse_instant",
    "ref",
    "ref_id",
    "ref_type",
    "set_ext",
    "sub_ext",
    "sub_values",
]


def parse_instant(value: str) -> datetime:
    """An aware datetime from a FHIR instant / dateTime (a date alone means its start, CST)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), CST)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unprocessable(f"{value!r} is not a FHIR instant", "value") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=CST)


def fmt_instant(dt: datetime) -> str:
    """``2025-07-21T08:00:00+08:00``: seconds precision, China Standard Time."""
    return dt.astimezone(CST).replace(microsecond=0).isoformat()


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """[00:00, next 00:00) of ``day`` in China Standard Time."""
    start = datetime.combine(day, time(0), CST)
    return start, start + timedelta(days=1)


def ref(rtype: str, rid: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": f"{rtype}/{rid}"}
    if display:
        out["display"] = display
    return out


def ref_id(reference: Any, rtype: str | None = None) -> str | None:
    """The id in a ``Type/id`` (or absolute ``…/Type/id``) reference, optionally only of
    ``rtype``; None when it is not such a reference."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    if rtype is not None and parts[-2] != rtype:
        return None
    return parts[-1]


def ref_type(reference: Any) -> str | None:
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or "/" not in reference:
        return None
    return reference.split("/_history/")[0].rstrip("/").split("/")[-2]


def ext(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    """The first extension of ``resource`` with ``url``."""
    for e in resource.get("extension") or ():
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def _value(e: dict[str, Any]) -> Any:
    for k, v in e.items():
        if k.startswith("value"):
            return v
    return None


def ext_value(resource: dict[str, Any], url: str) -> Any:
    e = ext(resource, url)
    return _value(e) if e is not None else None


def sub_ext(e: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """The sub-extensions of complex extension ``e`` named ``url``."""
    return [s for s in e.get("extension") or () if isinstance(s, dict) and s.get("url") == url]


def sub_values(e: dict[str, Any], url: str) -> list[Any]:
    return [_value(s) for s in sub_ext(e, url)]


def set_ext(resource: dict[str, Any], url: str, extension: dict[str, Any] | None) -> None:
    """Replace the extensions with ``url`` by ``extension`` (None removes them)."""
    kept = [
        e
        for e in resource.get("extension") or ()
        if not (isinstance(e, dict) and e.get("url") == url)
    ]
    if extension is not None:
        kept.append({"url": url, **{k: v for k, v in extension.items() if k != "url"}})
    if kept:
        resource["extension"] = kept
    else:
        resource.pop("extension", None)


class Reader:
    """Reads current resources on one connection: the write transaction's (so a rule sees the
    transaction's own writes) or a read connection."""

    def __init__(self, store: Store, conn: Connection, ctx: WriteContext | None = None) -> None:
        self.store = store
        self.conn = conn
        self.ctx = ctx
        self.repo = Repository(conn)

    @classmethod
    def of(cls, ctx: WriteContext) -> Reader:
        return cls(ctx.store, ctx.conn, ctx)

    @classmethod
    @contextmanager
    def open(cls, store: Store) -> Iterator[Reader]:
        with store.read_conn() as conn:
            yield cls(store, conn)

    def get(self, rtype: str, rid: str, *, lock: bool = False) -> dict[str, Any] | None:
        """The current resource, or None when absent or deleted. ``lock`` takes the row lock
        (PostgreSQL ``SELECT … FOR UPDATE``; SQLite's writer already holds the database)."""
        cur = self.repo.current(rtype, rid, lock=lock)
        if cur is None or cur.deleted or cur.data is None:
            return None
        res: dict[str, Any] = loads(cur.data)
        return res

    def get_versioned(
        self, rtype: str, rid: str, *, lock: bool = False
    ) -> tuple[dict[str, Any], int] | None:
        cur = self.repo.current(rtype, rid, lock=lock)
        if cur is None or cur.deleted or cur.data is None:
            return None
        return loads(cur.data), cur.version

    def find(
        self, rtype: str, params: Sequence[tuple[str, str]], limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Current resources matching a (strict) search condition, at most ``limit``."""
        pks = self.store.search_engine.match(self.conn, rtype, list(params), limit=limit)
        rows = self.repo.current_by_pks(pks)
        return [loads(r.data) for r in rows if r.data is not None]
