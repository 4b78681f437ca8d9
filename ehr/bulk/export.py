"""FHIR Bulk Data export: https://hl7.org/fhir/uv/bulkdata/STU2/export.html

:func:`kick_off` validates a system-, Patient- or Group-level ``$export`` request and queues a
job; a :class:`~ehr.bulk.worker.BulkWorker` runs it with :class:`ExportRun`.

What is exported, as of ``transactionTime`` (the kick-off instant ``T``):

* system level: every current resource of the requested types (all types present by default);
* Patient level: the resources in any patient's compartment (``Patient`` itself plus the types
  and parameters of :func:`ehr.definitions.patient_compartment`), read from the reference index;
* Group level: the same for the Group's active ``member.entity`` Patients only (snapshotted at
  kick-off into ``bulk_job_patients``); ``patients`` narrows either to given Patients.
* ``_since``: only resources whose ``meta.lastUpdated`` is at or after it;
  ``_typeFilter=Type?query``: that type only where the search query matches (several filters
  for one type are OR-ed; they are parsed strictly, so an unsupported one is a 400 at kick-off).

How: one query per type in ``pk`` order from the type's cursor (``pk > last done``, over the
``(rtype, pk)`` index), read through a server-side cursor 500 rows at a time, the stored JSON
bytes written straight into ``<Type>.<n>.ndjson`` (never parsed), progress committed every
``chunk_size`` rows. Resources created after ``T`` are
left out (``pk`` above the kick-off maximum); one changed or deleted after ``T`` is exported as
the version that was current at ``T`` (from the history table). After each chunk the file is
fsynced, then the file's count and size and the type's last ``pk`` are committed; a resumed job
truncates each file back to its committed size, so every resource is written exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import and_, exists, false, func, insert, or_, select
from sqlalchemy.engine import Connection

from ehr.bulk.files import NdjsonFile
from ehr.bulk.jobs import NDJSON_FORMATS, FileState, Lease, base_manifest, new_job
from ehr.bulk.tables import bulk_job_patients
from ehr.definitions import patient_compartment, resource_types
from ehr.errors import BadRequest
from ehr.search.dates import instant_us, now_us
from ehr.search.params import PASS_THROUGH, REF_RE, parse_criteria
from ehr.search.sql import Cond, SqlContext, condition
from ehr.search.tables import idx_reference
from ehr.search.valueset import expand_valueset
from ehr.storage.tables import history, resources
from ehr.store import Store

__all__ = ["LEVELS", "ExportRun", "kick_off"]

LEVELS = ("system", "patient", "group")


# ------------------------------------------------------------------------------------ kick-off


def _split(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def _compartment_types() -> set[str]:
    return {"Patient", *patient_compartment()}


def _check_types(types: list[str], level: str) -> None:
    unknown = [t for t in types if t not in resource_types()]
    if unknown:
        raise BadRequest(
            f"_type names unknown resource types: {', '.join(unknown)}", "not-supported"
        )
    if level != "system":
        outside = [t for t in types if t not in _compartment_types()]
        if outside:
            raise BadRequest(
                f"_type names types outside the Patient compartment, which a {level}-level export "
                f"cannot contain: {', '.join(outside)}",
                "not-supported",
            )


def _criteria_params(query: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in PASS_THROUGH]


def _parse_type_filters(
    store: Store, conn: Connection, filters: list[str], types: list[str], level: str
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        rtype, sep, query = f.partition("?")
        if not sep or not query:
            raise BadRequest(f"_typeFilter {f!r} is not of the form Type?search", "invalid")
        _check_types([rtype], level)
        if types and rtype not in types:
            raise BadRequest(f"_typeFilter {f!r} is for a type not listed in _type", "invalid")
        # strict: an unsupported parameter, modifier or result parameter is a 400 here
        store.search_engine.match(conn, rtype, parse_qsl(query, keep_blank_values=True), limit=1)
        out.setdefault(rtype, []).append(query)
    return out


def _patient_ids(store: Store, refs: Iterable[str]) -> list[str]:
    """The ids of the local ``Patient/<id>`` references among ``refs`` (absolute ones only
    under our own base URL)."""
    ids = []
    base = (store.base_url or "").rstrip("/") + "/"
    for ref in refs:
        if "://" in ref:
            if base == "/" or not ref.startswith(base):
                continue  # another server's patient
            ref = ref[len(base) :]
        m = REF_RE.match(ref)
        if m and m["type"] == "Patient":
            ids.append(m["id"])
    return ids


def _group_members(store: Store, group_id: str) -> list[str]:
    """The Group's active members that are (local) Patients."""
    group = store.read("Group", group_id).resource()
    refs = [
        (m.get("entity") or {}).get("reference", "")
        for m in group.get("member", [])
        if isinstance(m, dict) and not m.get("inactive", False)
    ]
    return _patient_ids(store, refs)


def _request_url(level: str, group_id: str | None, params: list[tuple[str, str]]) -> str:
    path = {
        "system": "$export",
        "patient": "Patient/$export",
        "group": f"Group/{group_id}/$export",
    }[level]
    return path + ("?" + urlencode(params) if params else "")


def kick_off(
    store: Store,
    level: str,
    *,
    group_id: str | None = None,
    types: str | Sequence[str] | None = None,
    since: str | int | None = None,
    type_filters: str | Sequence[str] | None = None,
    output_format: str | None = None,
    patients: Sequence[str] | None = None,
    owner: str | None = None,
    request_url: str | None = None,
) -> str:
    """Validate an ``$export`` kick-off request and queue the job; returns the job id.

    ``types`` / ``type_filters`` take lists or comma-separated strings (``_type`` and
    ``_typeFilter`` as received); ``since`` a FHIR instant or µs since the epoch;
    ``patients`` Patient references (the ``patient`` parameter); ``request_url`` the full
    kick-off URL for the manifest. Every bad parameter is a 400; an unknown Group a 404.
    """
    if level not in LEVELS:
        raise BadRequest(f"Unknown export level {level!r}", "invalid")
    if (level == "group") != (group_id is not None):
        raise BadRequest("A Group-level export needs a group id, and only it", "invalid")
    fmt = output_format or "application/fhir+ndjson"
    if fmt not in NDJSON_FORMATS:
        raise BadRequest(
            f"_outputFormat {fmt!r} is not supported; use application/fhir+ndjson", "not-supported"
        )
    type_list = list(dict.fromkeys(_split(types)))
    _check_types(type_list, level)
    since_us: int | None = None
    if since is not None:
        try:
            since_us = since if isinstance(since, int) else instant_us(since)
        except ValueError as exc:
            raise BadRequest(f"_since {since!r} is not a FHIR instant", "invalid") from exc
    filters = [f for f in ([type_filters] if isinstance(type_filters, str) else type_filters or [])]
    with store.read_conn() as conn:
        parsed_filters = _parse_type_filters(store, conn, filters, type_list, level)
    members: list[str] | None = None
    if level == "group":
        assert group_id is not None
        members = _group_members(store, group_id)
    if patients is not None:
        if level == "system":
            raise BadRequest(
                "The patient parameter needs a Patient- or Group-level export", "invalid"
            )
        wanted = _patient_ids(store, patients)
        if len(wanted) != len(patients):
            raise BadRequest("The patient parameter takes local Patient references", "invalid")
        in_group = None if members is None else set(members)
        members = [p for p in wanted if in_group is None or p in in_group]

    params: list[tuple[str, str]] = []
    if output_format:
        params.append(("_outputFormat", output_format))
    if type_list:
        params.append(("_type", ",".join(type_list)))
    if since is not None:
        params.append(("_since", str(since)))
    params += [("_typeFilter", f) for f in filters]

    transaction_time = now_us()
    with store.read_conn() as conn:
        max_pk = int(conn.execute(select(func.max(resources.c.pk))).scalar() or 0)
    request = {
        "url": request_url or _request_url(level, group_id, params),
        "level": level,
        "group_id": group_id,
        "types": type_list or None,
        "since": since_us,
        "type_filters": parsed_filters,
        "output_format": fmt,
        "max_pk": max_pk,
        "members": members is not None,
    }
    with store.write() as ctx:
        job_id = new_job(
            ctx.conn, "export", request, transaction_time=transaction_time, owner=owner
        )
        if members:
            ctx.conn.execute(
                insert(bulk_job_patients),
                [{"job_id": job_id, "rid": rid} for rid in dict.fromkeys(members)],
            )
    return job_id


# ------------------------------------------------------------------------------------ the run


@dataclass
class ExportRun:
    """Runs (or resumes) one export job chunk by chunk."""

    lease: Lease
    folder: Path
    chunk_size: int = 2000
    max_file_resources: int = 1_000_000
    fsync: bool = True

    @property
    def store(self) -> Store:
        return self.lease.store

    @property
    def req(self) -> dict[str, Any]:
        return self.lease.job.request

    # -- conditions ----------------------------------------------------------------------------
    def _members(self) -> Any:
        bp = bulk_job_patients
        return select(bp.c.rid).where(bp.c.job_id == self.lease.job.id)

    def _compartment(self, rtype: str, r: Any, after: int) -> Cond | None:
        if self.req["level"] == "system":
            return None
        params = patient_compartment().get(rtype, ())
        x = idx_reference.alias("x")
        by_ref = [
            x.c.rtype == rtype,
            x.c.param.in_(params),
            x.c.target_type == "Patient",
            # the keyset bounds again, so the database reads the index from the chunk's start
            # (without them PostgreSQL merge-joins idx_reference from its first row every chunk)
            x.c.pk > after,
            x.c.pk <= self.req["max_pk"],
        ]
        if not self.req["members"]:  # every patient's compartment
            if rtype == "Patient":
                return None
            return exists(select(x.c.pk).where(x.c.pk == r.c.pk, *by_ref))
        members = self._members()
        linked = (
            r.c.pk.in_(select(x.c.pk).where(x.c.target_id.in_(members), *by_ref))
            if params
            else None
        )
        if rtype == "Patient":
            return or_(r.c.rid.in_(members), linked) if linked is not None else r.c.rid.in_(members)
        return linked if linked is not None else false()

    def _type_filter(self, rtype: str, r: Any, conn: Connection) -> Cond | None:
        queries = self.req["type_filters"].get(rtype)
        if not queries:
            return None
        engine = self.store.search_engine

        @cache
        def expand(url: str) -> list[tuple[str | None, str]]:
            return expand_valueset(conn, url)

        ctx = SqlContext(conn.dialect.name, self.store.base_url, expand)
        alts = []
        for q in queries:
            criteria, _, _ = parse_criteria(
                self.store.registry, (rtype,), _criteria_params(q), strict=True,
                max_or_values=engine.max_or_values,
            )  # fmt: skip
            alts.append(and_(*(condition(c, r, ctx) for c in criteria)))
        return or_(*alts)

    def _conditions(self, rtype: str, r: Any, conn: Connection, after: int = 0) -> list[Cond]:
        """Which rows of ``rtype`` with ``pk > after`` are exported."""
        t = self.lease.job.transaction_time
        conds: list[Cond] = [
            r.c.rtype == rtype,
            r.c.pk > after,
            r.c.pk <= self.req["max_pk"],
            or_(r.c.deleted == false(), r.c.last_updated > t),
        ]
        if self.req["since"] is not None:
            conds.append(r.c.last_updated >= self.req["since"])
        for extra in (self._compartment(rtype, r, after), self._type_filter(rtype, r, conn)):
            if extra is not None:
                conds.append(extra)
        return conds

    # -- planning ------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[str], int]:
        """The types to export (those with resources) and the total count, for progress."""
        r = resources.alias("r")
        with self.store.read_conn() as conn:
            present: dict[str, int] = dict(
                conn.execute(
                    select(r.c.rtype, func.count())
                    .where(r.c.pk <= self.req["max_pk"], r.c.deleted == false())
                    .group_by(r.c.rtype)
                ).all()
            )
            wanted = self.req["types"] or sorted(present, key=lambda t: (t != "Patient", t))
            types = [t for t in wanted if present.get(t)]
            if self.req["level"] != "system":
                types = [t for t in types if t in _compartment_types()]
            simple = (
                self.req["level"] == "system"
                and not self.req["since"]
                and not self.req["type_filters"]
            )
            if simple:
                counts = {t: int(present[t]) for t in types}
            else:
                counts = {
                    t: int(
                        conn.execute(
                            select(func.count()).where(*self._conditions(t, r, conn))
                        ).scalar_one()
                    )
                    for t in types
                }
        plan = [t for t in types if counts[t]]
        return plan, sum(counts[t] for t in plan)

    # -- chunks --------------------------------------------------------------------------------
    def _at_transaction_time(self, conn: Connection, pk: int) -> bytes | None:
        """The version of ``pk`` current at T (None if it was deleted then or did not match)."""
        row = conn.execute(
            select(history.c.deleted, history.c.data, history.c.last_updated)
            .where(history.c.pk == pk, history.c.last_updated <= self.lease.job.transaction_time)
            .order_by(history.c.version.desc())
            .limit(1)
        ).first()
        if row is None or row.deleted or row.data is None:
            return None
        since = self.req["since"]
        return None if since is not None and row.last_updated < since else bytes(row.data)

    def _next_file(self, rtype: str) -> FileState:
        """The file the next chunk of ``rtype`` goes to (a new one when the current is full)."""
        files = self.lease.job.files
        name = self.lease.job.cursor.get("file", {}).get(rtype)
        current = files.get(name) if name else None
        if current is not None and current.count < self.max_file_resources:
            return current
        n = 1 if name is None else int(name.rsplit(".", 2)[1]) + 1
        seq = max((f.seq for f in files.values()), default=0) + 1
        return FileState(f"{rtype}.{n}.ndjson", "output", rtype, seq)

    def _commit(
        self, rtype: str, target: FileState, size: int, last: int, written: int, finished: bool
    ) -> None:
        job = self.lease.job
        cursor = {
            **job.cursor,
            "pos": {**job.cursor.get("pos", {}), rtype: last},
            "file": dict(job.cursor.get("file", {})),
        }
        if finished:
            cursor["done_types"] = [*cursor.get("done_types", []), rtype]
        files: list[FileState] = []
        if written:
            prev = job.files.get(target.name) or target
            files.append(
                FileState(target.name, "output", rtype, prev.seq, prev.count + written, size)
            )
            cursor["file"][rtype] = target.name
        with self.lease.write() as wconn:
            self.lease.commit(wconn, cursor=cursor, done=job.done + written, files=files)

    def export_type(self, rtype: str, keep_going: Callable[[], bool]) -> bool:
        """Export ``rtype`` from its cursor on, committing every ``chunk_size`` rows; False if
        ``keep_going()`` said stop before a chunk."""
        job = self.lease.job
        after = int(job.cursor.get("pos", {}).get(rtype, 0))
        r = resources.alias("r")
        t = job.transaction_time
        with self.store.engine.connect() as conn, ExitStack() as stack:
            side: Connection | None = None  # for the rare rows changed after T
            stmt = select(r.c.pk, r.c.last_updated, r.c.data).where(
                *self._conditions(rtype, r, conn, after)
            )
            # one query per type, read through a server-side cursor 500 rows at a time
            batch = min(500, self.chunk_size)
            rows = conn.execution_options(stream_results=True, yield_per=batch).execute(
                stmt.order_by(r.c.pk)
            )
            target = self._next_file(rtype)
            out = NdjsonFile(self.folder / target.name, job.files.get(target.name))
            fh: IO[bytes] | None = None
            seen = written = 0
            last = after
            try:
                for pk, last_updated, data in rows:
                    if seen == 0 and not keep_going():
                        return False
                    seen += 1
                    last = pk
                    if last_updated > t:
                        if side is None:
                            side = stack.enter_context(self.store.engine.connect())
                        data = self._at_transaction_time(side, pk)
                    if data is not None:
                        if fh is None:
                            fh = out.open()
                        fh.write(data)
                        fh.write(b"\n")
                        written += 1
                    if seen == self.chunk_size:
                        fh = None
                        self._commit(rtype, target, out.close(self.fsync), last, written, False)
                        seen = written = 0
                        target = self._next_file(rtype)
                        out = NdjsonFile(self.folder / target.name, job.files.get(target.name))
            finally:
                rows.close()  # now, not when a traceback holding it dies (SQLite: its read lock)
                size = out.close(self.fsync)
        self._commit(rtype, target, size, last, written, True)
        return True

    # -- the whole job ------------------------------------------------------------------------
    def run(self, keep_going: Callable[[], bool]) -> bool:
        """Run until done (True) or until ``keep_going()`` says stop (False)."""
        job = self.lease.job
        for f in job.files.values():  # a crashed run may have written past its last commit
            path = self.folder / f.name
            if f.kind == "output" and path.is_file() and path.stat().st_size > f.size:
                os.truncate(path, f.size)
        if "plan" not in job.cursor:
            plan, total = self._plan()
            with self.lease.write() as conn:
                self.lease.commit(conn, cursor={**job.cursor, "plan": plan}, done=0, total=total)
        for rtype in job.cursor["plan"]:
            if rtype in job.cursor.get("done_types", []):
                continue
            if not self.export_type(rtype, keep_going):
                return False
        outputs = [f for f in job.files.values() if f.kind == "output" and f.count]
        manifest = base_manifest(job)
        manifest["output"] = [{"type": f.rtype, "name": f.name, "count": f.count} for f in outputs]
        self.lease.finish("completed", manifest=manifest)
        return True
