"""The background worker that runs Bulk Data jobs (``$export`` and ``$import``):
https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request (the async pattern's
server side).

The server starts one :class:`BulkWorker` per process (:meth:`BulkWorker.start`); tests call
:meth:`BulkWorker.run_pending`. A worker claims a job with a conditional ``UPDATE`` (so two
processes never run the same job), keeps a heartbeat while it runs it, and records progress
after every chunk. Jobs are never stuck:

* stopping the worker (:meth:`stop`) puts its job back in the queue at the next chunk boundary;
* a job whose worker died (heartbeat older than ``stale_after`` seconds) is claimed again by any
  worker, which resumes it from its cursor; each such takeover counts as an attempt, and a job
  that used up ``max_attempts`` fails instead of crash-looping;
* a database that goes away mid-chunk (``OperationalError``) requeues the job for another
  attempt; any other error fails it, with an OperationOutcome in ``error.ndjson`` saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from ehr.bulk.export import ExportRun
from ehr.bulk.files import NdjsonFile
from ehr.bulk.import_ import ImportRun
from ehr.bulk.jobs import (
    FileState,
    Job,
    Lease,
    LostJob,
    base_manifest,
    bulk_root,
    claimable,
    load_job,
    purge,
)
from ehr.bulk.tables import bulk_jobs
from ehr.errors import FhirError, Issue, operation_outcome
from ehr.model import dumps
from ehr.search.dates import now_us
from ehr.store import Store

__all__ = ["BulkWorker"]

log = logging.getLogger("ehr.bulk")
ERROR_FILE = "error.ndjson"


def _transient(exc: Exception) -> bool:
    """A database hiccup (lost connection, lock timeout, serialization), worth another try."""
    if isinstance(exc, FhirError):
        return exc.code in ("transient", "timeout")
    return isinstance(exc, OperationalError)


class BulkWorker:
    """Runs queued Bulk Data jobs; files go to ``<data_dir>/bulk/<job id>/``."""

    def __init__(
        self,
        store: Store,
        data_dir: Path | None = None,
        *,
        chunk_size: int = 2000,
        import_chunk_size: int = 500,
        max_file_resources: int = 1_000_000,
        poll_interval: float = 2.0,
        stale_after: float = 120.0,
        max_attempts: int = 3,
        retention_s: float | None = 7 * 24 * 3600,
        fsync: bool = True,
    ) -> None:
        self.store = store
        self.root = bulk_root(data_dir)
        self.data_dir = self.root.parent
        self.chunk_size = chunk_size
        self.import_chunk_size = import_chunk_size
        self.max_file_resources = max_file_resources
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.max_attempts = max_attempts
        self.retention_s = retention_s
        self.fsync = fsync
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0

    # -- the background thread -----------------------------------------------------------------
    def start(self) -> None:
        """Run jobs in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="bulk-worker", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the thread (call after a kick-off so the job starts at once)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current chunk; the job goes back to the queue with its cursor."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_pending()
                self._maybe_purge()
            except Exception:  # noqa: BLE001 - the loop must survive a bad moment of the DB
                log.exception("bulk worker loop")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _maybe_purge(self) -> None:
        now = now_us()
        if self.retention_s is None or now - self._last_purge < 3600 * 1_000_000:
            return
        self._last_purge = now
        purge(
            self.store,
            older_than_us=now - int(self.retention_s * 1_000_000),
            data_dir=self.data_dir,
        )

    # -- claiming and running ------------------------------------------------------------------
    def _claim(self) -> Job | None:
        stale_before = now_us() - int(self.stale_after * 1_000_000)
        with self.store.read_conn() as conn:
            candidates = conn.execute(
                select(bulk_jobs.c.id, bulk_jobs.c.status)
                .where(claimable(stale_before))
                .order_by(bulk_jobs.c.created)
                .limit(20)
            ).all()
        for job_id, seen_status in candidates:
            now = now_us()
            values = {
                "status": "running",
                "worker": self.worker_id,
                "heartbeat": now,
                "updated": now,
            }
            if seen_status == "running":  # a takeover from a dead worker is another attempt
                values["attempts"] = bulk_jobs.c.attempts + 1
            with self.store.write() as ctx:
                claimed = ctx.conn.execute(
                    update(bulk_jobs)
                    .where(
                        bulk_jobs.c.id == job_id,
                        bulk_jobs.c.status == seen_status,
                        claimable(stale_before),
                    )
                    .values(**values)
                ).rowcount
                if claimed == 1:
                    job = load_job(ctx.conn, job_id)
                    assert job is not None
                    return job
        return None

    def run_pending(self, *, max_chunks: int | None = None) -> int:
        """Run claimable jobs until there are none; returns how many ended (completed, failed
        or cancelled). ``max_chunks`` (for tests) abandons the job after that many chunks
        without releasing it, as a worker that crashed would."""
        budget = [max_chunks]
        ended = 0

        def keep_going() -> bool:
            if self._stopping.is_set():
                return False
            if budget[0] is None:
                return True
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

        while budget[0] is None or budget[0] > 0:
            job = self._claim()
            if job is None:
                break
            outcome = self._run(job, keep_going)
            if outcome == "ended":
                ended += 1
            elif outcome == "requeued":
                break  # let the database recover before the next attempt
            elif budget[0] is not None and budget[0] <= 0:
                break
            if self._stopping.is_set():
                break
        return ended

    def _run(self, job: Job, keep_going: Callable[[], bool]) -> str:
        """Run one claimed job: "ended" (completed, failed or cancelled), "stopped" (requeued by
        a clean stop, or abandoned), "requeued" (transient error) or "lost" (taken over)."""
        lease = Lease(
            self.store, job, self.worker_id, heartbeat_every=max(1.0, self.stale_after / 4)
        )
        folder = self.root / job.id
        try:
            if job.attempts > self.max_attempts:
                reason = f"Gave up after {job.attempts} attempts (the worker kept dying)"
                self._fail(lease, folder, reason)
                return "ended"
            runner: ExportRun | ImportRun
            if job.kind == "export":
                runner = ExportRun(
                    lease, folder, self.chunk_size, self.max_file_resources, self.fsync
                )
            else:
                runner = ImportRun(lease, folder, self.import_chunk_size)
            if runner.run(keep_going):
                return "ended"
            if self._stopping.is_set():
                lease.finish("queued")  # a clean stop: resume from the cursor next time
            return "stopped"
        except LostJob:
            with self.store.read_conn() as conn:
                now = load_job(conn, job.id)
            if now is None or now.status == "cancelled":
                shutil.rmtree(folder, ignore_errors=True)
                return "ended"
            return "lost"  # another worker took it over
        except Exception as exc:  # noqa: BLE001 - any failure ends the job, with its reason
            if _transient(exc):
                self._requeue(lease, exc)
                return "requeued"
            log.exception("bulk job %s failed", job.id)
            reason = (
                exc.diagnostics if isinstance(exc, FhirError) else f"{type(exc).__name__}: {exc}"
            )
            with contextlib.suppress(LostJob):
                self._fail(lease, folder, reason)
            return "ended"
        finally:
            lease.close()

    def _requeue(self, lease: Lease, exc: Exception) -> None:
        """Back to the queue after a transient database error, as one more attempt."""
        log.warning("bulk job %s: database error, requeued: %s", lease.job.id, exc)
        for _ in range(3):  # after a database restart each dead pooled connection fails once
            try:
                with lease.write() as conn:
                    conn.execute(
                        update(bulk_jobs)
                        .where(bulk_jobs.c.id == lease.job.id, bulk_jobs.c.worker == self.worker_id)
                        .values(
                            status="queued",
                            worker=None,
                            heartbeat=None,
                            attempts=bulk_jobs.c.attempts + 1,
                        )
                    )
                return
            except Exception:  # noqa: BLE001 - try another connection
                continue
        log.warning(
            "bulk job %s: could not requeue; it resumes when its lease is stale", lease.job.id
        )

    def _fail(self, lease: Lease, folder: Path, reason: str) -> None:
        """End a job as failed: its reason in ``error.ndjson``, partial exports removed."""
        job = lease.job
        out = NdjsonFile(folder / ERROR_FILE, None)
        out.open().write(dumps(operation_outcome([Issue("exception", reason)])) + b"\n")
        size = out.close(sync=True)
        seq = max((f.seq for f in job.files.values()), default=0) + 1
        drop = [f.name for f in job.files.values() if f.kind == "output"]
        manifest = base_manifest(job)
        errors = [FileState(ERROR_FILE, "error", "OperationOutcome", seq, 1, size)]
        errors += [f for f in job.files.values() if f.kind == "error" and f.name != ERROR_FILE]
        manifest["error"] = [{"type": f.rtype, "name": f.name, "count": f.count} for f in errors]
        lease.finish("failed", manifest=manifest, error=reason, files=errors[:1], drop_files=drop)
        for name in drop:
            (folder / name).unlink(missing_ok=True)
        log.info("bulk job %s failed: %s\n%s", job.id, reason, traceback.format_exc(limit=3))
