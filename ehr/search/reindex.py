"""Rebuild the search index: the ``ehr reindex`` command and the ``$reindex`` operation.

http://hl7.org/fhir/R4/search.html (indexes) and http://hl7.org/fhir/R4/searchparameter.html
(a new custom SearchParameter only indexes new writes; existing resources need a reindex).

A reindex is a job (a row of ``reindex_jobs``, :mod:`ehr.search.jobs_tables`) over every
current resource, the resources of one type, or those of the types a SearchParameter applies to
(``param_url``). It walks ``resources`` in ``pk`` order in chunks (``chunk`` resources, default
500); each chunk is one transaction that locks the chunk's current rows (PostgreSQL ``FOR
UPDATE``, so a concurrent update cannot interleave; SQLite has one writer anyway), recomputes
their rows with :meth:`ehr.Store.index`, replaces them (delete by ``pk``, then multi-row inserts)
and moves the job's ``cursor`` forward, all committed together. Hence:

* **resumable**: after a crash, ``Ctrl-C`` or a failure, :func:`run_job` on the same job (``ehr
  reindex --resume``) continues after the last committed chunk; no resource is indexed twice
  and none is skipped (a chunk is all or nothing, and rows are replaced, never appended).
  Two runners on one job are safe too: each chunk starts by locking the job row.
* **progress**: ``done``/``total`` resources and the rate (resources per second of chunk time)
  are in the job row after every chunk (:func:`job_status`), and ``progress`` callbacks get
  a :class:`ReindexStatus` after each chunk.
* the job runs to the end of the table as it is when the run gets there, so resources created
  meanwhile are covered too (they are indexed on write anyway; replacing is idempotent).
* when a SearchParameter changed less than a refresh interval ago (1 s, see
  :mod:`ehr.search.custom`), a run first waits out the rest of it, so every worker of a
  multi-process server indexes new writes with the new definition before the walk starts.

``$reindex`` (``fhir_api.operations.reindex`` mounts it): :func:`start_background` creates a
job and runs it in a daemon thread of the serving process; :func:`job_status` (and
:meth:`ReindexStatus.to_parameters`, a FHIR ``Parameters`` resource) report on it. A job whose
process died stays ``running`` with an old ``heartbeat``; :func:`ensure_running` (each status
request) resumes it in the background once the heartbeat is :data:`STALE_AFTER_S` old, as it
does a queued or paused job nobody runs; ``ehr reindex --resume`` or :func:`run_job` resume it
too. :func:`reindex_resource` rebuilds one resource at once (the instance ``$reindex``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, false, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from ehr.definitions import resource_types
from ehr.errors import BadRequest, NotFound
from ehr.model import loads
from ehr.search.dates import now_us, us_to_instant
from ehr.search.jobs_tables import reindex_jobs
from ehr.search.tables import INDEX_TABLES
from ehr.storage.db import WRITE
from ehr.storage.tables import resources

if TYPE_CHECKING:
    from ehr.store import Store

__all__ = [
    "DEFAULT_CHUNK",
    "ReindexStatus",
    "cancel_job",
    "create_job",
    "ensure_running",
    "find_resumable",
    "job_status",
    "list_jobs",
    "reindex",
    "reindex_resource",
    "run_job",
    "start_background",
]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 500
#: statuses a runner may continue
RESUMABLE = ("queued", "running", "paused", "failed")
Progress = Callable[["ReindexStatus"], None]


@dataclass(frozen=True)
class ReindexStatus:
    """A reindex job as last committed."""

    id: str
    status: str  # queued | running | paused | done | failed | cancelled
    rtypes: tuple[str, ...] | None  # None: every type
    param_url: str | None
    chunk: int
    cursor: int  # the last resources.pk done
    done: int
    total: int | None
    elapsed_us: int
    created: int
    updated: int
    finished: int | None
    worker: str | None
    heartbeat: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> ReindexStatus:
        m = row._mapping
        return cls(
            id=m["id"],
            status=m["status"],
            rtypes=tuple(json.loads(m["rtypes"])) if m["rtypes"] else None,
            param_url=m["param_url"],
            chunk=int(m["chunk"]),
            cursor=int(m["cursor"]),
            done=int(m["done"]),
            total=None if m["total"] is None else int(m["total"]),
            elapsed_us=int(m["elapsed_us"]),
            created=int(m["created"]),
            updated=int(m["updated"]),
            finished=None if m["finished"] is None else int(m["finished"]),
            worker=m["worker"],
            heartbeat=None if m["heartbeat"] is None else int(m["heartbeat"]),
            error=m["error"],
        )

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"

    @property
    def rate(self) -> float | None:
        """Resources per second of chunk time (None before the first chunk)."""
        return self.done / (self.elapsed_us / 1e6) if self.elapsed_us > 0 else None

    @property
    def remaining(self) -> int | None:
        return None if self.total is None else max(self.total - self.done, 0)

    @property
    def eta_s(self) -> float | None:
        rate, left = self.rate, self.remaining
        return None if rate is None or left is None or rate <= 0 else left / rate

    def to_parameters(self) -> dict[str, Any]:
        """The job as a FHIR ``Parameters`` resource (the ``$reindex`` status answer)."""
        params: list[dict[str, Any]] = [
            {"name": "job", "valueString": self.id},
            {"name": "status", "valueCode": self.status},
            {"name": "done", "valueInteger": self.done},
            {"name": "created", "valueInstant": us_to_instant(self.created)},
            {"name": "updated", "valueInstant": us_to_instant(self.updated)},
        ]
        if self.total is not None:
            params.append({"name": "total", "valueInteger": self.total})
        if self.rate is not None:
            params.append({"name": "rate", "valueDecimal": round(self.rate, 1)})
        if self.status not in ("done", "cancelled") and self.eta_s is not None:
            params.append({"name": "eta-seconds", "valueDecimal": round(self.eta_s, 1)})
        for t in self.rtypes or ():
            params.append({"name": "type", "valueCode": t})
        if self.param_url:
            params.append({"name": "searchParameter", "valueUri": self.param_url})
        if self.finished is not None:
            params.append({"name": "finished", "valueInstant": us_to_instant(self.finished)})
        if self.error:
            params.append({"name": "error", "valueString": self.error})
        return {"resourceType": "Parameters", "parameter": params}


# ------------------------------------------------------------------------------ jobs


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _scope(store: Store, rtype: str | None, param_url: str | None) -> tuple[str, ...] | None:
    """The resource types a job covers (None: every type)."""
    types: tuple[str, ...] | None = None
    if param_url is not None:
        store.refresh_search_parameters(force=True)
        sp = store.registry.by_url(param_url)
        if sp is None:
            raise NotFound(f"No search parameter with url {param_url!r} is in effect")
        if not any(b in ("Resource", "DomainResource") for b in sp.base):
            types = tuple(sorted(set(sp.base)))
    if rtype is not None:
        if rtype not in resource_types():
            raise NotFound(f"Unknown resource type {rtype!r}", "not-supported")
        if types is not None and rtype not in types:
            raise BadRequest(f"{param_url} does not apply to {rtype}")
        types = (rtype,)
    return types


@contextmanager
def _writing(store: Store) -> Iterator[Connection]:
    """A write transaction on the jobs table (SQLite: ``BEGIN IMMEDIATE``, so it waits for a
    concurrent writer instead of failing with "database is locked" when it upgrades its lock)."""
    with store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn


def _get(conn: Connection, job_id: str, *, lock: bool = False) -> ReindexStatus:
    stmt = select(reindex_jobs).where(reindex_jobs.c.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"No reindex job {job_id!r}")
    return ReindexStatus.from_row(row)


def _type_filter(types: tuple[str, ...] | None) -> list[Any]:
    if types is None:
        return []
    return [resources.c.rtype == types[0]] if len(types) == 1 else [resources.c.rtype.in_(types)]


def create_job(
    store: Store,
    *,
    rtype: str | None = None,
    param_url: str | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> ReindexStatus:
    """A new queued job over every resource, one type, or a SearchParameter's types."""
    if chunk < 1:
        raise BadRequest("chunk must be at least 1")
    types = _scope(store, rtype, param_url)
    job_id = uuid.uuid4().hex
    with _writing(store) as conn:
        total = conn.execute(
            select(func.count()).where(resources.c.deleted == false(), *_type_filter(types))
        ).scalar_one()
        now = now_us()
        conn.execute(
            insert(reindex_jobs).values(
                id=job_id, status="queued", rtypes=json.dumps(types) if types else None,
                param_url=param_url, chunk=chunk, cursor=0, done=0, total=int(total),
                elapsed_us=0, created=now, updated=now,
            )
        )  # fmt: skip
        return _get(conn, job_id)


def job_status(store: Store, job_id: str) -> ReindexStatus:
    """The job as last committed (404 if unknown)."""
    with store.engine.connect() as conn:
        return _get(conn, job_id)


def list_jobs(store: Store, *, unfinished: bool = False, limit: int = 20) -> list[ReindexStatus]:
    """The latest jobs, newest first."""
    stmt = select(reindex_jobs).order_by(reindex_jobs.c.created.desc()).limit(limit)
    if unfinished:
        stmt = stmt.where(reindex_jobs.c.status.in_(RESUMABLE))
    with store.engine.connect() as conn:
        return [ReindexStatus.from_row(r) for r in conn.execute(stmt)]


def find_resumable(
    store: Store, *, rtype: str | None = None, param_url: str | None = None
) -> ReindexStatus | None:
    """The newest unfinished job with exactly this scope, if any."""
    types = _scope(store, rtype, param_url)
    for job in list_jobs(store, unfinished=True, limit=200):
        if job.rtypes == types and job.param_url == param_url:
            return job
    return None


def cancel_job(store: Store, job_id: str) -> ReindexStatus:
    """Stop a job after its current chunk (a cancelled job is not resumed)."""
    with _writing(store) as conn:
        job = _get(conn, job_id, lock=True)
        if job.status in RESUMABLE:
            conn.execute(
                update(reindex_jobs)
                .where(reindex_jobs.c.id == job_id)
                .values(status="cancelled", updated=now_us(), finished=now_us())
            )
        return _get(conn, job_id)


def _set(store: Store, job_id: str, **values: Any) -> None:
    with _writing(store) as conn:
        conn.execute(
            update(reindex_jobs)
            .where(reindex_jobs.c.id == job_id)
            .values(updated=now_us(), **values)
        )


# ------------------------------------------------------------------------------ running


def _settle(store: Store) -> None:
    """Wait until every worker has had a refresh interval to learn the latest SearchParameter
    change (at most one interval)."""
    custom = store.custom
    if custom is None:
        return
    with store.engine.connect() as conn:
        last = custom.last_change(conn)
    if last is None:
        return
    wait = (last - now_us()) / 1e6 + custom.refresh_interval
    if wait > 0:
        time.sleep(min(wait, custom.refresh_interval))
    store.refresh_search_parameters(force=True)


def _rebuild(store: Store, conn: Connection, rows: Sequence[Any]) -> dict[str, int]:
    """Replace the index rows of ``rows`` (``pk, rtype, data`` of current resources, locked by
    the caller) with what indexing them gives now; the number of rows written per kind."""
    pks = [int(r.pk) for r in rows]
    by_table: dict[str, list[dict[str, Any]]] = {}
    for pk, rtype, data in rows:
        for kind, idx_rows in store.index(loads(data)).items():
            by_table.setdefault(kind, []).extend({**r, "pk": pk, "rtype": rtype} for r in idx_rows)
    for kind, table in INDEX_TABLES.items():
        conn.execute(delete(table).where(table.c.pk.in_(pks)))
        if by_table.get(kind):
            conn.execute(insert(table), by_table[kind])
    return {kind: len(v) for kind, v in by_table.items() if v}


def reindex_resource(store: Store, rtype: str, rid: str) -> dict[str, int]:
    """Rebuild the index rows of one current resource now, in one transaction (the instance
    ``$reindex``); the number of rows written per kind (404 when there is no such resource)."""
    store.refresh_search_parameters()
    with store.write() as ctx:
        row = ctx.conn.execute(
            select(resources.c.pk, resources.c.rtype, resources.c.data)
            .where(
                resources.c.rtype == rtype,
                resources.c.rid == rid,
                resources.c.deleted == false(),
            )
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"{rtype}/{rid} not found")
        return _rebuild(store, ctx.conn, [row])


def _chunk(store: Store, job_id: str, worker: str) -> tuple[ReindexStatus, int]:
    """Rebuild the next chunk of ``job_id`` in one transaction; (job after it, resources done)."""
    with store.write() as ctx:
        conn = ctx.conn
        job = _get(conn, job_id, lock=True)
        if job.status not in RESUMABLE:
            return job, 0
        t0 = time.perf_counter_ns()
        rows = conn.execute(
            select(resources.c.pk, resources.c.rtype, resources.c.data)
            .where(
                resources.c.pk > job.cursor,
                resources.c.deleted == false(),
                *_type_filter(job.rtypes),
            )
            .order_by(resources.c.pk)
            .limit(job.chunk)
            .with_for_update()
        ).all()
        now = now_us()
        if not rows:
            conn.execute(
                update(reindex_jobs)
                .where(reindex_jobs.c.id == job_id)
                .values(status="done", total=job.done, finished=now, updated=now, heartbeat=now,
                        worker=worker, error=None)
            )  # fmt: skip
            return _get(conn, job_id), 0
        pks = [int(r.pk) for r in rows]
        _rebuild(store, conn, rows)
        spent = (time.perf_counter_ns() - t0) // 1000
        conn.execute(
            update(reindex_jobs)
            .where(reindex_jobs.c.id == job_id)
            .values(
                status="running", cursor=pks[-1], done=reindex_jobs.c.done + len(pks),
                elapsed_us=reindex_jobs.c.elapsed_us + spent, updated=now, heartbeat=now,
                worker=worker,
            )
        )  # fmt: skip
        return _get(conn, job_id), len(pks)


def run_job(
    store: Store,
    job_id: str,
    *,
    max_chunks: int | None = None,
    progress: Progress | None = None,
) -> ReindexStatus:
    """Run (or resume) ``job_id`` until it is done, cancelled, or ``max_chunks`` chunks were
    committed. An exception marks the job ``failed`` (``paused`` for ``KeyboardInterrupt``)
    and propagates; the job stays resumable."""
    job = job_status(store, job_id)
    if job.status not in RESUMABLE:
        return job
    worker = _worker()
    _set(store, job_id, status="running", worker=worker, heartbeat=now_us(), error=None)
    _settle(store)
    chunks = 0
    try:
        while max_chunks is None or chunks < max_chunks:
            job, n = _chunk(store, job_id, worker)
            if progress is not None and (n or job.status == "done"):
                progress(job)
            if n == 0:
                return job
            chunks += 1
    except Exception as exc:
        _set(store, job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    except BaseException:
        _set(store, job_id, status="paused")
        raise
    return job_status(store, job_id)


def reindex(
    store: Store,
    *,
    rtype: str | None = None,
    param_url: str | None = None,
    chunk: int = DEFAULT_CHUNK,
    resume: bool = True,
    progress: Progress | None = None,
) -> ReindexStatus:
    """Reindex now, in this thread: resume the unfinished job of the same scope (when
    ``resume``) or start a new one, and run it to the end."""
    job = find_resumable(store, rtype=rtype, param_url=param_url) if resume else None
    if job is None:
        job = create_job(store, rtype=rtype, param_url=param_url, chunk=chunk)
    return run_job(store, job.id, progress=progress)


_threads: dict[str, threading.Thread] = {}


def start_background(
    store: Store,
    *,
    rtype: str | None = None,
    param_url: str | None = None,
    chunk: int = DEFAULT_CHUNK,
    job_id: str | None = None,
) -> ReindexStatus:
    """The ``$reindex`` kick-off: create a job (or take ``job_id`` to resume one) and run it in
    a daemon thread of this process; poll it with :func:`job_status`."""
    job = (
        job_status(store, job_id)
        if job_id
        else create_job(store, rtype=rtype, param_url=param_url, chunk=chunk)
    )
    running = _threads.get(job.id)
    if job.status in RESUMABLE and (running is None or not running.is_alive()):

        def work() -> None:
            try:
                run_job(store, job.id)
            except Exception:
                log.exception("reindex job %s failed", job.id)

        t = threading.Thread(target=work, name=f"reindex-{job.id}", daemon=True)
        _threads[job.id] = t
        t.start()
    return job


#: a ``running`` job whose heartbeat is older than this (s) has lost its runner
STALE_AFTER_S = 60.0


def ensure_running(
    store: Store, job_id: str, *, stale_after_s: float = STALE_AFTER_S
) -> ReindexStatus:
    """The job as last committed, after making sure something runs it: a job that is queued or
    paused, or ``running`` with a heartbeat older than ``stale_after_s`` (its process died, e.g.
    the server restarted), and that no thread of this process runs, is resumed here in the
    background. A ``failed`` job is left for an explicit resume (:func:`start_background` with
    ``job_id``); two runners on one job are safe (each chunk locks the job row)."""
    job = job_status(store, job_id)
    if job.status not in ("queued", "running", "paused"):
        return job
    running = _threads.get(job.id)
    if running is not None and running.is_alive():
        return job
    beat = job.heartbeat
    if job.status == "running" and beat is not None and (now_us() - beat) / 1e6 < stale_after_s:
        return job
    log.info("reindex job %s has no runner (status %s): resuming it", job.id, job.status)
    return start_background(store, job_id=job.id)
