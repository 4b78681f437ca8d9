"""The FHIR store: the Python API every other part of the exchange builds on.

    from ehr import Store
    store = Store("sqlite:///ehr.sqlite")          # or postgresql+psycopg://…
    store.migrate()                                  # create / upgrade the schema (Alembic)
    created = store.create({"resourceType": "Patient", "name": [{"family": "张"}]})
    current = store.read("Patient", created.rid)      # StoredResource: bytes as served + version
    store.update("Patient", created.rid, {...}, if_match=1)
    page = store.search("Patient", [("family", "张")])

Semantics follow http://hl7.org/fhir/R4/http.html: the server owns ``id`` on create and
``meta.versionId``/``meta.lastUpdated`` always; every version is kept; a delete writes a
deletion version and later reads answer 410; ``If-Match`` refuses a stale version with 412.

Writes run in one database transaction per interaction (or per transaction Bundle, through
:meth:`Store.write`): current row, history row and index rows commit together. On PostgreSQL,
writes lock the current row (``SELECT … FOR UPDATE``); conditional writes take a transaction-scoped
advisory lock on their condition, so 50 identical concurrent conditional creates make exactly one
resource. On SQLite every write transaction starts with ``BEGIN IMMEDIATE``: one writer at a time.

Domain services (booking) enforce their rules on plain FHIR writes through :class:`WriteHook`s,
called inside the write transaction before rows are written; raising a ``FhirError`` there
rolls the whole write back.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from ehr.definitions import SearchParamRegistry, resource_types, search_parameters
from ehr.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    NotFound,
    PreconditionFailed,
)
from ehr.model import dumps, loads, stamp
from ehr.search.dates import now_us, us_to_instant
from ehr.settings import Settings, get_settings
from ehr.storage.db import WRITE, is_postgres, make_engine
from ehr.storage.read_pool import ReadPool
from ehr.storage.repository import CurrentRow, Repository
from ehr.validation import check_id

__all__ = [
    "PendingWrite",
    "check_type",
    "parse_condition",
    "Store",
    "StoredResource",
    "WriteContext",
    "WriteHook",
    "WriteResult",
]


def check_type(rtype: str) -> None:
    if rtype not in resource_types():
        raise NotFound(f"Unknown resource type {rtype!r}", "not-supported")


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored: ``data`` is the exact JSON served."""

    rtype: str
    rid: str
    version: int
    last_updated: int  # µs since epoch
    data: bytes

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return us_to_instant(self.last_updated)

    def resource(self) -> dict[str, Any]:
        return loads(self.data)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write. ``outcome`` is created | updated | deleted | existing | unchanged."""

    rtype: str
    rid: str
    version: int
    last_updated: int
    data: bytes | None
    outcome: str

    @property
    def created(self) -> bool:
        return self.outcome == "created"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return us_to_instant(self.last_updated)

    def stored(self) -> StoredResource:
        assert self.data is not None
        return StoredResource(self.rtype, self.rid, self.version, self.last_updated, self.data)


@dataclass(frozen=True)
class PendingWrite:
    """A write about to happen, shown to hooks. ``resource`` is None for a delete."""

    kind: str  # create | update | delete
    rtype: str
    rid: str
    resource: dict[str, Any] | None
    previous: dict[str, Any] | None
    #: a create whose id the client chose (update-as-create, or a conditional update that
    #: matched nothing and names an id), not one the server assigned
    client_id: bool = False


class WriteHook(Protocol):
    """Called inside the write transaction before rows are written. Raise FhirError to refuse.

    A hook may change ``write.resource`` in place (e.g. set Slot.status) and may write other
    resources through ``ctx`` (they join the same transaction).
    """

    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None: ...


class Validator(Protocol):
    def __call__(
        self, resource: Any, *, expected_type: str | None = None, expected_id: str | None = None
    ) -> None: ...


def _default_validator() -> Validator:
    from ehr.validation import validate_resource

    return validate_resource


def parse_condition(query: str) -> list[tuple[str, str]]:
    """``identifier=x&name=y`` -> params; an empty condition is a 400."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise BadRequest("A conditional interaction needs search parameters", "invalid")
    return params


class WriteContext:
    """The writes of one database transaction. Obtain one with :meth:`Store.write`."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self._conn = conn
        self.repo = Repository(conn)
        self._clock = 0
        self.after_commit: list[Callable[[], None]] = []

    @property
    def conn(self) -> Connection:
        """The transaction's connection, with buffered inserts written (safe to query)."""
        self.repo.flush()
        return self._conn

    def flush(self, *, last: bool = False) -> None:
        """Write the buffered rows; ``last``: nothing else will run in this transaction but
        its commit (see :meth:`Repository.flush`)."""
        self.repo.flush(last=last)

    # -- helpers -------------------------------------------------------------------------------
    def _now(self, after: int = 0) -> int:
        t = max(now_us(), after + 1, self._clock + 1)
        self._clock = t
        return t

    def _prepare(
        self, resource: Any, rtype: str | None, rid: str | None, validate: bool
    ) -> dict[str, Any]:
        if validate:
            self.store.validator(resource, expected_type=rtype, expected_id=rid)
        elif not isinstance(resource, dict) or "resourceType" not in resource:
            raise BadRequest("Body must be a FHIR resource (a JSON object with resourceType)")
        return resource  # type: ignore[no-any-return]

    def _run_hooks(self, write: PendingWrite) -> None:
        for hook in self.store.hooks:
            hook.before_write(self, write)

    def lock_condition(self, rtype: str, params: Sequence[tuple[str, str]]) -> None:
        """Serialize writers that depend on the same search condition (PostgreSQL advisory lock;
        SQLite's single writer already serializes them)."""
        if is_postgres(self.conn):
            canon = rtype + "?" + "&".join(f"{k}={v}" for k, v in sorted(params))
            key = int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big", signed=True)
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def match(
        self, rtype: str, params: Sequence[tuple[str, str]], limit: int = 2
    ) -> list[CurrentRow]:
        """Current resources matching a search condition (at most ``limit``)."""
        pks = self.store.search_engine.match(self.conn, rtype, list(params), limit=limit)
        return self.repo.current_by_pks(pks)

    # -- interactions --------------------------------------------------------------------------
    def create(self, resource: Any, *, validate: bool = True) -> WriteResult:
        """http://hl7.org/fhir/R4/http.html#create: the server assigns the id."""
        if (
            isinstance(resource, dict) and "id" in resource
        ):  # the server ignores a body id on create
            resource = {k: v for k, v in resource.items() if k != "id"}
        res = self._prepare(resource, None, None, validate)
        return self._insert(res["resourceType"], str(uuid.uuid4()), res)

    def insert_with_id(self, rtype: str, rid: str, resource: dict[str, Any]) -> WriteResult:
        """Create with an id chosen beforehand (transaction Bundles pre-assign POST ids); the
        resource must already be validated."""
        return self._insert(rtype, rid, resource)

    def create_with_id(
        self, rtype: str, rid: str, resource: Any, *, validate: bool = True
    ) -> WriteResult:
        """Create with the id the client chose, which must be new: a conditional update that
        matched nothing (http://hl7.org/fhir/R4/http.html#cond-update) never overwrites a
        resource its condition did not match; an id in use is a 409."""
        check_id(rid)
        res = self._prepare(resource, rtype, rid, validate)
        return self._insert(rtype, rid, res, client_id=True)

    def _insert(
        self, rtype: str, rid: str, res: dict[str, Any], *, client_id: bool = False
    ) -> WriteResult:
        write = PendingWrite("create", rtype, rid, res, None, client_id)
        self._run_hooks(write)
        assert write.resource is not None
        ts = self._now()
        body = stamp(write.resource, rid, 1, ts)
        data = dumps(body)
        self.repo.insert_new(rtype, rid, ts, data, self.store.index(body))
        return WriteResult(rtype, rid, 1, ts, data, "created")

    def conditional_create(
        self, resource: Any, if_none_exist: str, *, validate: bool = True
    ) -> WriteResult:
        """http://hl7.org/fhir/R4/http.html#ccreate: create unless ``If-None-Exist`` matches."""
        res = self._prepare(resource, None, None, validate)
        rtype = res["resourceType"]
        params = parse_condition(if_none_exist)
        self.lock_condition(rtype, params)
        found = self.match(rtype, params)
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist '{if_none_exist}' matches more than one {rtype}", "multiple-matches"
            )
        if found:
            cur = found[0]
            assert cur.data is not None
            return WriteResult(rtype, cur.rid, cur.version, cur.last_updated, cur.data, "existing")
        return self._insert(rtype, str(uuid.uuid4()), res)

    def update(
        self,
        rtype: str,
        rid: str,
        resource: Any,
        *,
        if_match: int | None = None,
        validate: bool = True,
        method: str = "update",
    ) -> WriteResult:
        """http://hl7.org/fhir/R4/http.html#update, including update-as-create with a client id."""
        check_id(rid)
        res = self._prepare(resource, rtype, rid, validate)
        cur = self.repo.current(rtype, rid, lock=True)
        if cur is None:
            if if_match is not None:
                raise PreconditionFailed(f"{rtype}/{rid} does not exist (If-Match {if_match})")
            return self._insert(rtype, rid, res, client_id=True)
        if if_match is not None and if_match != cur.version:
            raise PreconditionFailed(
                f"Version conflict on {rtype}/{rid}: If-Match {if_match}, current {cur.version}",
                "conflict",
            )
        previous = None if cur.deleted or cur.data is None else loads(cur.data)
        write = PendingWrite("update", rtype, rid, res, previous)
        self._run_hooks(write)
        assert write.resource is not None
        version = cur.version + 1
        ts = self._now(cur.last_updated)
        body = stamp(write.resource, rid, version, ts)
        data = dumps(body)
        self.repo.write_version(cur, version, ts, data, self.store.index(body), method)
        return WriteResult(rtype, rid, version, ts, data, "created" if cur.deleted else "updated")

    def conditional_update(
        self,
        rtype: str,
        query: str,
        resource: Any,
        *,
        if_match: int | None = None,
        validate: bool = True,
    ) -> WriteResult:
        """http://hl7.org/fhir/R4/http.html#cond-update: ``PUT Type?search``."""
        res = self._prepare(resource, rtype, None, validate)
        params = parse_condition(query)
        self.lock_condition(rtype, params)
        found = self.match(rtype, params)
        if len(found) > 1:
            raise PreconditionFailed(
                f"Condition '{query}' matches more than one {rtype}", "multiple-matches"
            )
        if not found:
            if if_match is not None:
                raise PreconditionFailed(f"No {rtype} matches '{query}' (If-Match {if_match})")
            if res.get("id"):
                return self.create_with_id(rtype, res["id"], res, validate=False)
            return self._insert(rtype, str(uuid.uuid4()), res)
        rid = found[0].rid
        if res.get("id") not in (None, rid):
            raise BadRequest(
                f"Resource id {res.get('id')!r} does not match the matched {rtype}/{rid}"
            )
        return self.update(rtype, rid, {**res, "id": rid}, if_match=if_match, validate=False)

    def patch(
        self, rtype: str, rid: str, kind: str, patch: Any, *, if_match: int | None = None
    ) -> WriteResult:
        """http://hl7.org/fhir/R4/http.html#patch with JSON Patch or FHIRPath Patch."""
        from ehr.patch import apply_fhirpath_patch, apply_json_patch

        check_id(rid)
        cur = self.repo.current(rtype, rid, lock=True)
        if cur is None:
            raise NotFound(f"{rtype}/{rid} not found")
        if cur.deleted or cur.data is None:
            raise Gone(f"{rtype}/{rid} was deleted")
        if if_match is not None and if_match != cur.version:
            raise PreconditionFailed(
                f"Version conflict on {rtype}/{rid}: If-Match {if_match}, current {cur.version}"
            )
        current = loads(cur.data)
        patched = (
            apply_json_patch(current, patch)
            if kind == "json"
            else apply_fhirpath_patch(current, patch)
        )
        meta = patched.get("meta")
        if isinstance(meta, dict):  # server-owned fields are not the client's to patch
            meta.pop("versionId", None)
            meta.pop("lastUpdated", None)
        return self.update(rtype, rid, patched, if_match=cur.version, method="patch")

    def conditional_patch(
        self, rtype: str, query: str, kind: str, patch: Any, *, if_match: int | None = None
    ) -> WriteResult:
        params = parse_condition(query)
        self.lock_condition(rtype, params)
        found = self.match(rtype, params)
        if len(found) != 1:
            if not found:
                raise NotFound(f"No {rtype} matches '{query}'")
            raise PreconditionFailed(
                f"Condition '{query}' matches more than one {rtype}", "multiple-matches"
            )
        return self.patch(rtype, found[0].rid, kind, patch, if_match=if_match)

    def delete(self, rtype: str, rid: str, *, if_match: int | None = None) -> WriteResult | None:
        """http://hl7.org/fhir/R4/http.html#delete. Deleting what is absent or deleted is a no-op
        (None)."""
        check_id(rid)
        cur = self.repo.current(rtype, rid, lock=True)
        if cur is None or cur.deleted:
            if if_match is not None:
                raise PreconditionFailed(f"{rtype}/{rid} does not exist (If-Match {if_match})")
            return None
        if if_match is not None and if_match != cur.version:
            raise PreconditionFailed(
                f"Version conflict on {rtype}/{rid}: If-Match {if_match}, current {cur.version}"
            )
        assert cur.data is not None
        self._run_hooks(PendingWrite("delete", rtype, rid, None, loads(cur.data)))
        version = cur.version + 1
        ts = self._now(cur.last_updated)
        self.repo.write_version(cur, version, ts, None, None, "delete")
        return WriteResult(rtype, rid, version, ts, None, "deleted")

    def conditional_delete(
        self, rtype: str, query: str, *, multiple: bool = False
    ) -> list[WriteResult]:
        """http://hl7.org/fhir/R4/http.html#3.1.0.7.1: single mode answers 412 when several match."""
        params = parse_condition(query)
        self.lock_condition(rtype, params)
        cap = self.store.max_conditional_delete
        found = self.match(rtype, params, limit=cap + 1 if multiple else 2)
        if len(found) > 1 and not multiple:
            raise PreconditionFailed(
                f"Condition '{query}' matches more than one {rtype}; add _multiple=true to delete all",
                "multiple-matches",
            )
        if len(found) > cap:
            raise PreconditionFailed(
                f"Condition '{query}' matches more than {cap} resources", "too-costly"
            )
        return [r for r in (self.delete(rtype, c.rid) for c in found) if r is not None]


@dataclass
class Store:
    """A FHIR R4 store on a SQLAlchemy engine (SQLite or PostgreSQL).

    ``url`` is a SQLAlchemy URL or an existing :class:`~sqlalchemy.Engine`.
    """

    url: str | Engine
    registry: SearchParamRegistry = field(default_factory=search_parameters)
    hooks: list[WriteHook] = field(default_factory=list)
    validator: Validator = field(default_factory=_default_validator)
    pool_size: int = 20
    statement_timeout_ms: int = 30_000
    max_conditional_delete: int = 100
    #: our public base URL: absolute references under it are indexed as local ones
    base_url: str | None = None
    default_count: int = 50
    max_count: int = 1000
    max_or_values: int = 100
    #: honour SearchParameter resources as custom parameters (:mod:`ehr.search.custom`)
    custom_search_parameters: bool = True
    engine: Engine = field(init=False)
    _read_engine: Engine = field(init=False, repr=False)
    _read_sql: str = field(init=False, repr=False)
    _read_many_sql: str = field(init=False, repr=False)
    #: PostgreSQL: plain psycopg connections for the read by id (:meth:`read`)
    _read_pool: ReadPool | None = field(init=False, default=None, repr=False)
    #: the :class:`ehr.search.custom.CustomSearchParameters` hook (None when turned off)
    custom: Any = field(init=False, default=None)
    _search_engine: Any = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> Store:
        """A store configured from ``EHR_*`` settings (database, pool, limits, base URL)."""
        s = settings or get_settings()
        return cls(
            s.resolved_database_url(),
            pool_size=s.db_pool_size,
            statement_timeout_ms=s.statement_timeout_ms,
            base_url=s.base_url or None,
            default_count=s.default_count,
            max_count=s.max_count,
            max_or_values=s.max_or_values,
            **kwargs,
        )

    def __post_init__(self) -> None:
        if isinstance(self.url, str):
            self.engine = make_engine(
                self.url, pool_size=self.pool_size, statement_timeout_ms=self.statement_timeout_ms
            )
        else:
            self.engine = self.url
        self._read_engine = self.engine
        if is_postgres(self.engine):
            self._read_engine = make_engine(
                self.engine.url.render_as_string(hide_password=False),
                pool_size=self.pool_size,
                statement_timeout_ms=self.statement_timeout_ms,
                autocommit=True,
            )
            self._read_pool = ReadPool(
                self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
                size=self.pool_size,
                statement_timeout_ms=self.statement_timeout_ms,
            )
        pg = is_postgres(self.engine)
        self._read_sql = (
            "SELECT version, last_updated, deleted, data FROM resources WHERE rtype = {p} AND rid = {p}"
        ).format(p="%s" if pg else "?")
        self._read_many_sql = (
            "SELECT rid, version, last_updated, deleted, data FROM resources WHERE rtype = "
            + ("%s AND rid = ANY(%s)" if pg else "? AND rid IN ({ids})")
        )
        if self.custom_search_parameters:
            from ehr.search.custom import CustomSearchParameters

            self.custom = CustomSearchParameters.install(self)

    # -- schema --------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema up to date with the Alembic migrations shipped in the package."""
        from ehr.storage.migrate import upgrade

        upgrade(self.engine)
        # the migrations set database-level options (plan_cache_mode, 0005) that only sessions
        # opened afterwards get: drop the pooled ones
        self.dispose()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()
        if self._read_pool is not None:
            self._read_pool.close()

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def search_engine(self) -> Any:
        if self._search_engine is None:
            with self._lock:
                if self._search_engine is None:
                    from ehr.search.engine import SearchEngine

                    self._search_engine = SearchEngine(
                        self.registry,
                        base_url=self.base_url,
                        default_count=self.default_count,
                        max_count=self.max_count,
                        max_or_values=self.max_or_values,
                    )
        return self._search_engine

    def refresh_search_parameters(self, *, force: bool = False) -> None:
        """Pick up custom SearchParameters written by other processes (cheap: a check at most
        once a second); searches and writes call it."""
        if self.custom is not None:
            self.custom.refresh(force=force)

    def index(self, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        from ehr.search.indexer import extract

        return extract(resource, self.registry, base_url=self.base_url)

    @contextmanager
    def read_conn(self) -> Iterator[Connection]:
        """A connection for reads (PostgreSQL: from the autocommit read pool)."""
        with self._read_engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[WriteContext]:
        """One write transaction: everything done through the context commits together."""
        ctx: WriteContext | None = None
        self.refresh_search_parameters()
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                ctx = WriteContext(self, conn)
                yield ctx
                ctx.flush(last=True)
        except FhirError:
            raise
        except OperationalError as exc:
            if "timeout" in str(exc).lower() or "canceling statement" in str(exc).lower():
                raise FhirError(503, "timeout", "The database took too long; try again") from exc
            if "database is locked" in str(exc):
                raise Conflict("The database is busy; try again", "transient") from exc
            raise
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01"):  # serialization, deadlock
                raise Conflict("Concurrent update; try again", "transient") from exc
            raise
        assert ctx is not None
        for fn in ctx.after_commit:
            fn()

    # -- interactions (one transaction each) ---------------------------------------------------
    def create(self, resource: Any, *, if_none_exist: str | None = None) -> WriteResult:
        with self.write() as ctx:
            if if_none_exist:
                return ctx.conditional_create(resource, if_none_exist)
            return ctx.create(resource)

    def update(
        self, rtype: str, rid: str, resource: Any, *, if_match: int | None = None
    ) -> WriteResult:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.update(rtype, rid, resource, if_match=if_match)

    def conditional_update(
        self, rtype: str, query: str, resource: Any, *, if_match: int | None = None
    ) -> WriteResult:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.conditional_update(rtype, query, resource, if_match=if_match)

    def patch(
        self, rtype: str, rid: str, kind: str, patch: Any, *, if_match: int | None = None
    ) -> WriteResult:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.patch(rtype, rid, kind, patch, if_match=if_match)

    def conditional_patch(
        self, rtype: str, query: str, kind: str, patch: Any, *, if_match: int | None = None
    ) -> WriteResult:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.conditional_patch(rtype, query, kind, patch, if_match=if_match)

    def delete(self, rtype: str, rid: str, *, if_match: int | None = None) -> WriteResult | None:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.delete(rtype, rid, if_match=if_match)

    def conditional_delete(
        self, rtype: str, query: str, *, multiple: bool = False
    ) -> list[WriteResult]:
        check_type(rtype)
        with self.write() as ctx:
            return ctx.conditional_delete(rtype, query, multiple=multiple)

    def read(self, rtype: str, rid: str) -> StoredResource:
        """http://hl7.org/fhir/R4/http.html#read: 404 if unknown, 410 if deleted."""
        check_type(rtype)
        check_id(rid)
        # the hot path: one primary-key SELECT, bytes as stored
        return self._found(rtype, rid, self._fetch(self._read_sql, (rtype, rid), many=False))

    def read_current(self, rtype: str, rids: Iterable[str]) -> dict[str, StoredResource]:
        """The current versions of those of the resources ``rids`` of ``rtype`` that exist and
        are not deleted, by id: as :meth:`read` does, one SELECT (per 500 ids)."""
        wanted = sorted(set(rids))
        out: dict[str, StoredResource] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            params: tuple[Any, ...]
            if self._read_pool is not None:
                sql, params = self._read_many_sql, (rtype, chunk)
            else:
                sql = self._read_many_sql.format(ids=",".join("?" * len(chunk)))
                params = (rtype, *chunk)
            for rid, version, ts, deleted, data in self._fetch(sql, params, many=True):
                if not deleted and data is not None:
                    out[rid] = StoredResource(rtype, rid, version, ts, bytes(data))
        return out

    def _fetch(self, sql: str, params: Sequence[Any], *, many: bool) -> Any:
        """The row (or ``many``: the rows) of one SELECT outside SQLAlchemy. PostgreSQL: a plain
        psycopg connection (ehr.storage.read_pool); SQLite: a pooled DBAPI connection."""
        if self._read_pool is not None:
            return (self._read_pool.fetchall if many else self._read_pool.fetchone)(sql, params)
        raw = self._read_engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchall() if many else cursor.fetchone()
            finally:
                cursor.close()
        except Exception:
            raw.invalidate()
            raise
        finally:
            raw.close()

    @staticmethod
    def _found(rtype: str, rid: str, row: Sequence[Any] | None) -> StoredResource:
        """The current version of a read's row: 404 without one, 410 for a deletion."""
        if row is None:
            raise NotFound(f"{rtype}/{rid} not found")
        version, last_updated, deleted, data = row
        if deleted or data is None:
            raise Gone(f"{rtype}/{rid} was deleted", headers={"ETag": f'W/"{version}"'})
        return StoredResource(rtype, rid, version, last_updated, bytes(data))

    def vread(self, rtype: str, rid: str, version: int | str) -> StoredResource:
        """http://hl7.org/fhir/R4/http.html#vread."""
        check_type(rtype)
        check_id(rid)
        try:
            v = int(version)
        except (TypeError, ValueError) as exc:
            raise NotFound(f"Version {version!r} of {rtype}/{rid} not found") from exc
        with self.read_conn() as conn:
            found = Repository(conn).version(rtype, rid, v)
        if found is None:
            raise NotFound(f"Version {v} of {rtype}/{rid} not found")
        ts, deleted, data = found
        if deleted or data is None:
            raise Gone(f"Version {v} of {rtype}/{rid} is a deletion")
        return StoredResource(rtype, rid, v, ts, data)

    def exists(self, rtype: str, rid: str) -> bool:
        with self.read_conn() as conn:
            cur = Repository(conn).current(rtype, rid)
        return cur is not None and not cur.deleted

    def history(self, **kwargs: Any) -> Any:
        """http://hl7.org/fhir/R4/http.html#history; see :func:`ehr.history.history`."""
        from ehr.history import history

        with self.read_conn() as conn:
            return history(conn, **kwargs)

    def search(self, rtype: str | None, params: Sequence[tuple[str, str]], **kwargs: Any) -> Any:
        """http://hl7.org/fhir/R4/search.html; see :class:`ehr.search.engine.SearchEngine`."""
        if rtype is not None:
            check_type(rtype)
        self.refresh_search_parameters()
        with self.read_conn() as conn:
            return self.search_engine.search(conn, rtype, list(params), **kwargs)
