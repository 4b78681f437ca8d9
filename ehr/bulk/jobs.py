"""Bulk Data jobs: persistence, status, cancel and file downloads, per the async pattern of
https://hl7.org/fhir/uv/bulkdata/STU2/export.html (kick-off, status request, delete request,
file request), shared by ``$export`` (:mod:`ehr.bulk.export`) and ``$import``
(:mod:`ehr.bulk.import_`).

Life cycle: ``queued`` → ``running`` → ``completed`` | ``failed``; ``cancelled`` from any of them
by :func:`cancel` (the files are deleted and the status request then answers 404, as the spec's
delete request says). A worker *leases* a job (:class:`Lease`): it owns it while its heartbeat is
fresh, and every progress write checks it still does, so a job whose worker died is taken over
by another and a cancelled job stops at its next chunk.

Files live under ``<data_dir>/bulk/<job id>/``; only the names registered in ``bulk_files`` are
ever served (:func:`open_file`), so a download name cannot walk out of the job's folder.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from ehr.bulk.tables import bulk_files, bulk_jobs
from ehr.errors import Issue, NotFound, operation_outcome
from ehr.search.dates import now_us, us_to_instant
from ehr.settings import get_settings
from ehr.store import Store

__all__ = [
    "NDJSON_FORMATS",
    "FileState",
    "Job",
    "JobStatus",
    "Lease",
    "LostJob",
    "bulk_root",
    "cancel",
    "job_dir",
    "load_job",
    "new_job",
    "open_file",
    "purge",
    "status",
]

#: the ``_outputFormat`` / ``inputFormat`` values accepted (all mean FHIR ndjson)
NDJSON_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def bulk_root(data_dir: Path | None = None) -> Path:
    """``<data_dir>/bulk`` (``EHR_DATA_DIR`` by default)."""
    return Path(data_dir if data_dir is not None else get_settings().data_dir) / "bulk"


def job_dir(job_id: str, data_dir: Path | None = None) -> Path:
    if not _JOB_ID.match(job_id):
        raise NotFound(f"No bulk job {job_id!r}")
    return bulk_root(data_dir) / job_id


@dataclass(frozen=True)
class FileState:
    """A job's file as of its last committed chunk."""

    name: str
    kind: str  # output | error
    rtype: str
    seq: int
    count: int = 0
    size: int = 0


@dataclass
class Job:
    id: str
    kind: str
    status: str
    request: dict[str, Any]
    owner: str | None
    created: int
    updated: int
    transaction_time: int
    worker: str | None
    heartbeat: int | None
    attempts: int
    done: int
    total: int | None
    cursor: dict[str, Any]
    manifest: dict[str, Any] | None
    error: str | None
    files: dict[str, FileState] = field(default_factory=dict)


def load_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(bulk_jobs).where(bulk_jobs.c.id == job_id)).mappings().first()
    if row is None:
        return None
    files = {
        f["name"]: FileState(f["name"], f["kind"], f["rtype"], f["seq"], f["count"], f["size"])
        for f in conn.execute(
            select(bulk_files).where(bulk_files.c.job_id == job_id).order_by(bulk_files.c.seq)
        ).mappings()
    }
    return Job(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        request=orjson.loads(row["request"]),
        owner=row["owner"],
        created=row["created"],
        updated=row["updated"],
        transaction_time=row["transaction_time"],
        worker=row["worker"],
        heartbeat=row["heartbeat"],
        attempts=row["attempts"],
        done=row["done"],
        total=row["total"],
        cursor=orjson.loads(row["cursor"]) if row["cursor"] else {},
        manifest=orjson.loads(row["manifest"]) if row["manifest"] else None,
        error=row["error"],
        files=files,
    )


def new_job(
    conn: Connection,
    kind: str,
    request: dict[str, Any],
    *,
    transaction_time: int,
    owner: str | None,
    total: int | None = None,
) -> str:
    """Insert a queued job (inside the caller's write transaction); returns its id."""
    job_id = uuid.uuid4().hex
    now = now_us()
    conn.execute(
        insert(bulk_jobs).values(
            id=job_id,
            kind=kind,
            status="queued",
            request=_json(request),
            owner=owner,
            created=now,
            updated=now,
            transaction_time=transaction_time,
            attempts=0,
            done=0,
            total=total,
            cursor=_json({}),
        )
    )
    return job_id


class LostJob(Exception):
    """The worker no longer owns the job: it was cancelled, or another worker took it over."""


class Lease:
    """A job claimed by one worker. Every write is conditional on still owning it; a ticker
    thread keeps the heartbeat fresh while the worker is busy inside a long chunk."""

    def __init__(self, store: Store, job: Job, worker_id: str, heartbeat_every: float) -> None:
        self.store = store
        self.job = job
        self.worker_id = worker_id
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick,
            args=(heartbeat_every,),
            name=f"bulk-heartbeat-{job.id[:8]}",
            daemon=True,
        )
        self._ticker.start()

    # -- ownership -----------------------------------------------------------------------------
    def _owned(self) -> Any:
        return and_(
            bulk_jobs.c.id == self.job.id,
            bulk_jobs.c.worker == self.worker_id,
            bulk_jobs.c.status == "running",
        )

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                with self.write() as conn:
                    conn.execute(update(bulk_jobs).where(self._owned()).values(heartbeat=now_us()))
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next tick
                continue

    def close(self) -> None:
        """Stop the heartbeat (the job row is left as it is)."""
        self._stop.set()
        self._ticker.join(timeout=5)

    # -- writes --------------------------------------------------------------------------------
    def commit(
        self,
        conn: Connection,
        *,
        cursor: dict[str, Any],
        done: int,
        files: Iterable[FileState] = (),
        total: int | None = None,
    ) -> None:
        """Record progress in ``conn``'s transaction (raises :class:`LostJob` if not ours)."""
        now = now_us()
        values: dict[str, Any] = {
            "cursor": _json(cursor),
            "done": done,
            "heartbeat": now,
            "updated": now,
        }
        if total is not None:
            values["total"] = total
        if conn.execute(update(bulk_jobs).where(self._owned()).values(**values)).rowcount != 1:
            raise LostJob(self.job.id)
        for f in files:
            self._save_file(conn, f)
        self.job.cursor, self.job.done = cursor, done
        if total is not None:
            self.job.total = total

    def _save_file(self, conn: Connection, f: FileState) -> None:
        known = self.job.files.get(f.name)
        if known == f:
            return
        if known is None:
            conn.execute(
                insert(bulk_files).values(
                    job_id=self.job.id, name=f.name, kind=f.kind, rtype=f.rtype, seq=f.seq,
                    count=f.count, size=f.size,
                )
            )  # fmt: skip
        else:
            conn.execute(
                update(bulk_files)
                .where(bulk_files.c.job_id == self.job.id, bulk_files.c.name == f.name)
                .values(count=f.count, size=f.size)
            )
        self.job.files[f.name] = f

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction of its own (for progress outside data writes)."""
        with self.store.write() as ctx:
            yield ctx.conn

    def finish(
        self, status: str, *, manifest: dict[str, Any] | None = None, error: str | None = None,
        files: Iterable[FileState] = (), drop_files: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """Move the job to a terminal status (completed / failed) or back to ``queued``."""
        with self.write() as conn:
            values: dict[str, Any] = {"status": status, "updated": now_us()}
            if manifest is not None:
                values["manifest"] = _json(manifest)
            if error is not None:
                values["error"] = error
            if status == "queued":
                values.update(worker=None, heartbeat=None)
            if conn.execute(update(bulk_jobs).where(self._owned()).values(**values)).rowcount != 1:
                raise LostJob(self.job.id)
            if drop_files:
                conn.execute(
                    delete(bulk_files).where(
                        bulk_files.c.job_id == self.job.id, bulk_files.c.name.in_(list(drop_files))
                    )
                )
                for name in drop_files:
                    self.job.files.pop(name, None)
            for f in files:
                self._save_file(conn, f)
        self.job.status = status


# ---------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobStatus:
    """What a status request answers.

    ``status`` queued / running: 202 with ``X-Progress: progress`` and ``Retry-After``;
    completed: 200 with ``manifest``; failed: a 5xx with ``outcome`` (the manifest lists the
    error file too).
    """

    job_id: str
    kind: str
    status: str
    progress: str
    percent: int | None
    retry_after: int
    manifest: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None

    @property
    def in_progress(self) -> bool:
        return self.status in ("queued", "running")


def _visible(conn: Connection, job_id: str, owner: str | None) -> Job:
    if not _JOB_ID.match(job_id):
        raise NotFound(f"No bulk job {job_id!r}")
    job = load_job(conn, job_id)
    if job is None or job.status == "cancelled" or (owner is not None and job.owner != owner):
        raise NotFound(f"No bulk job {job_id!r}")
    return job


def file_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{job_id}/{name}"


def status(store: Store, job_id: str, *, base_url: str, owner: str | None = None) -> JobStatus:
    """The status of a job. File URLs are ``{base_url}/{job_id}/{name}`` (the REST layer serves
    them with :func:`open_file`). An unknown or cancelled job, or one of another ``owner``, is
    a 404."""
    with store.read_conn() as conn:
        job = _visible(conn, job_id, owner)
    if job.status == "queued":
        return JobStatus(job.id, job.kind, job.status, "queued", 0, 2)
    if job.status == "running":
        pct = min(99, job.done * 100 // job.total) if job.total else None
        if pct is None:
            text = f"running ({job.done} done)"
        else:
            text = f"{pct}% ({job.done} of {job.total})"
        return JobStatus(job.id, job.kind, job.status, text, pct, 2)
    manifest = dict(job.manifest or {})
    for key in ("output", "error"):
        manifest[key] = [
            {**{k: v for k, v in e.items() if k != "name"},
             **({"url": file_url(base_url, job.id, e["name"])} if "name" in e else {})}
            for e in manifest.get(key, [])
        ]  # fmt: skip
    outcome = None
    if job.status == "failed":
        outcome = operation_outcome([Issue("exception", job.error or "The bulk job failed")])
    return JobStatus(job.id, job.kind, job.status, job.status, 100, 0, manifest, outcome)


def base_manifest(job: Job) -> dict[str, Any]:
    return {
        "transactionTime": us_to_instant(job.transaction_time),
        "request": job.request.get("url", ""),
        "requiresAccessToken": True,
        "output": [],
        "error": [],
    }


def cancel(
    store: Store, job_id: str, *, owner: str | None = None, data_dir: Path | None = None
) -> None:
    """The delete request: stop the job (its worker notices at its next chunk) and delete its
    files. A completed job's files are deleted too; later status requests answer 404."""
    with store.write() as ctx:
        _visible(ctx.conn, job_id, owner)
        ctx.conn.execute(
            update(bulk_jobs)
            .where(bulk_jobs.c.id == job_id)
            .values(status="cancelled", updated=now_us(), worker=None, heartbeat=None)
        )
        ctx.conn.execute(delete(bulk_files).where(bulk_files.c.job_id == job_id))
    shutil.rmtree(job_dir(job_id, data_dir), ignore_errors=True)


def open_file(
    store: Store, job_id: str, name: str, *, owner: str | None = None, data_dir: Path | None = None
) -> BinaryIO:
    """Open one of a finished job's files for download. Only names the job registered are
    served, and the path must stay inside the job's folder; anything else is a 404."""
    with store.read_conn() as conn:
        job = _visible(conn, job_id, owner)
    if job.status not in ("completed", "failed") or name not in job.files:
        raise NotFound(f"No file {name!r} in bulk job {job_id}")
    folder = job_dir(job_id, data_dir).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise NotFound(f"No file {name!r} in bulk job {job_id}")
    return path.open("rb")


def purge(store: Store, *, older_than_us: int, data_dir: Path | None = None) -> int:
    """Delete finished jobs (rows and files) last updated before ``older_than_us``."""
    with store.read_conn() as conn:
        ids = list(
            conn.execute(
                select(bulk_jobs.c.id).where(
                    bulk_jobs.c.status.in_(sorted(TERMINAL)), bulk_jobs.c.updated < older_than_us
                )
            ).scalars()
        )
    for job_id in ids:
        with store.write() as ctx:
            ctx.conn.execute(delete(bulk_jobs).where(bulk_jobs.c.id == job_id))
        shutil.rmtree(job_dir(job_id, data_dir), ignore_errors=True)
    return len(ids)


def claimable(stale_before: int) -> Any:
    """Jobs a worker may take: queued ones, and running ones whose worker stopped beating."""
    return or_(
        bulk_jobs.c.status == "queued",
        and_(bulk_jobs.c.status == "running", bulk_jobs.c.heartbeat < stale_before),
    )
