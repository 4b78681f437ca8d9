"""The audit shipper: moves the spooled audit records of a host's server workers into the chain,
from a process of its own.

Why a process of its own: a writer thread inside each worker shares the worker's interpreter
lock with the request path. Measured on the read bench (two servers loaded side by side, CPU
per read; ``bench/RESULTS.md``), a worker whose writer thread did nothing but wake 20 times a
second to sync the spool already cost reads several per cent; the whole in-worker writer
~15-17 %. With a shipper, a worker's part of the audit is to build the record and copy it
into its memory-mapped spool segment (:mod:`ehr.security.spool`): no queue, no thread.

How (one :meth:`Shipper.cycle`, every ``fsync_interval``, 50 ms):

1. under an exclusive ``flock`` of ``.ship.lock`` in the spool folder (one shipper at a time
   per folder; a worker that must see its own events, :meth:`AuditTrail.sync`, runs a cycle
   itself under the same lock), list the segments;
2. a segment whose ``flock`` it can take is *sealed*: its process closed it (full, or at
   shutdown) or died. What was written to each segment since the last cycle is made durable
   (``fdatasync``): the spool's guarantee, a power loss loses at most ``fsync_interval`` of
   records, is kept here. This looks only for where the written bytes end (the first NUL): a
   cycle between shipments costs a few system calls;
3. when a batch's worth of bytes waits (``batch_size`` records of ``RECORD_BYTES``), or the
   oldest has waited ``flush_interval`` (0.25 s), or on demand, the records are read (a sealed
   segment to its end, a live one up to its last complete line: a line is complete once its
   newline is there, and the spool stores the newline after the line) and appended to the
   chain in time order, in one transaction per batch that also moves each segment's *offset*
   (a row ``spool:…`` of ``audit_state``: how many bytes of the segment are in the chain).
   Reading only then parses the records a batch at a time, and a batch of up to 5,000 (the
   default) spreads each transaction's fixed cost: measured under load, the shipper's CPU a
   read is ~17-20 µs with batches of 1,000 and ~13 µs with 5,000. While it keeps up (no more
   than a batch read and not shipped), it yields its core every ``yield_every`` records it
   reads, resolves or chains, so a request woken on that core runs at once
   (:mod:`ehr.security.scheduling`);
4. a sealed segment whose every record is in the chain is deleted, then its offset row.

Each record is chained once: the ``flock`` serializes shippers; one that sees another one's
stamp on the lock file (another shipper committed since its own last commit) looks the offsets
up again and drops what it read beyond them. A segment with no offset row (new, or its row
lost) is read from its start, and the first batch holding its records is checked against the
chain's tail (:func:`~ehr.security.audit._not_chained`): records already there are left out.
A batch is one row of the chain, a block (:mod:`ehr.security.tables`).

``ehr serve`` starts the shipper next to the workers and stops it after them (a last cycle
ships everything); ``ehr audit ship`` runs one in the foreground.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import gc
import hashlib
import heapq
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ehr.storage.db import is_postgres

from .audit import (
    DAMAGED,
    RECORD_BYTES,
    WRITER_THREAD,
    AuditTrail,
    Entry,
    _chain_append,
    _entry_of_line,
    _name_os_thread,
    _not_chained,
)
from .scheduling import paced
from .spool import SEGMENTS
from .tables import audit_state

__all__ = ["SEGMENTS", "Shipper", "run_shipper"]

log = logging.getLogger("ehr.security.audit")

LOCK_FILE = ".ship.lock"
#: batches of a segment read ahead at most while they cannot be shipped (bounded memory)
MAX_PENDING_BATCHES = 10
#: how much of a segment one read takes (reading stops at the first unused byte), and how many
#: reads of a segment one pass makes at most (1 MiB: ~2,800 records); a cycle's share of a
#: busy worker's records (~30 KB at 1,500 reads/s) takes one read
READ_BYTES = 64 << 10
READS_PER_CYCLE = 16


#: fields of a pending record (:attr:`_Segment.pending`) and of an entry
_END, _ENTRY, _SEG = itemgetter(2), itemgetter(3), itemgetter(4)
_KEY, _ID = itemgetter(1), itemgetter(2)


def offset_name(path: Path) -> str:
    """The ``audit_state`` row of a segment's offset (32 characters at most)."""
    return "spool:" + hashlib.sha256(path.name.encode()).hexdigest()[:26]


@dataclass
class _Segment:
    """What the shipper knows of one spool segment."""

    path: Path
    fd: int
    name: str
    num: int  # (this shipper's number for it)
    committed: int | None = None  # bytes in the chain (None: not yet looked up)
    read: int = 0  # bytes read (complete lines)
    synced: int = 0  # bytes made durable
    sealed: bool = False
    #: no offset row was found: its records may be in the chain already (a lost row)
    fresh: bool = False
    #: records read and not yet in the chain, in file order: (recorded, event id, the
    #: segment's offset after it, entry, the segment's number); the first two are the shipping
    #: order's key (unique: an event id is). Strings and numbers only: the garbage collector
    #: does not track such tuples
    pending: list[tuple[int, str, int, Entry, int]] = field(default_factory=list)
    #: when bytes not yet in the chain were first seen (None: none are known)
    since: float | None = None
    #: the key of the last record read, and whether one ever came before the one read before
    #: it (the clock was set back): then only a merge keeps the file order
    last: tuple[int, str] = (0, "")
    unordered: bool = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Mark:
    """The lock file's content: a stamp the last shipper that committed wrote there, so that a
    shipper sees whether another one moved the offsets since its own last commit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def moved(self, mine: bytes) -> bool:
        return os.pread(self.fd, 64, 0) != mine

    def stamp(self) -> bytes:
        mark = os.urandom(16).hex().encode()
        os.pwrite(self.fd, mark, 0)
        return mark


@contextlib.contextmanager
def _ship_lock(directory: Path) -> Iterator[_Mark]:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _Mark(fd)
    finally:
        os.close(fd)  # (unlocks)


def _complete(data: bytes) -> bytes:
    """The complete lines at the start of ``data`` (up to the last newline before unused,
    NUL, space)."""
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


class Shipper:
    """Ships the spool folder ``directory`` into ``trail``'s chain (see the module docstring).
    ``trail`` gives the store, the batch size, the owner cache and materialization."""

    def __init__(self, trail: AuditTrail, directory: Path) -> None:
        self.trail = trail
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._segments: dict[Path, _Segment] = {}
        self._numbered: dict[int, _Segment] = {}
        self._count = itertools.count()
        #: (the folder's modification time, the segments then): :meth:`_scan`
        self._listed: tuple[int, list[_Segment]] = (-1, [])
        self._mark = b""  # what this shipper last stamped on the lock file
        self.shipped = 0
        #: when a record was last read (idle detection for materialization)
        self.last_record = 0.0

    def _yield_every(self) -> int:
        """How many records the shipper handles between yields of its core (0: none): while it
        keeps up (no more than a batch read and not shipped). Behind, it does not yield, so that
        its share of contended cores stays what its niceness gives."""
        return self.trail.yield_every if self.backlog <= self.trail.batch_size else 0

    # -- reading -------------------------------------------------------------------------------
    def _scan(self) -> list[_Segment]:
        # the folder is listed again only when it changed (a segment made, renamed, deleted),
        # or changed lately (its time has the kernel clock's coarse grain: a change within
        # the same tick as the last listing leaves the same time)
        stamp = os.stat(self.dir).st_mtime_ns
        if stamp == self._listed[0] and time.time_ns() - stamp > 200_000_000:
            return self._listed[1]
        found = []
        for path in sorted(self.dir.glob(SEGMENTS)):
            seg = self._segments.get(path)
            if seg is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                seg = _Segment(path, fd, offset_name(path), next(self._count))
                self._segments[path] = self._numbered[seg.num] = seg
            found.append(seg)
        gone = set(self._segments) - {s.path for s in found}
        for path in gone:  # deleted by its own process (empty) or by another cycle
            self._forget(self._segments[path])
        self._listed = (stamp, found)
        return found

    def _read(self, seg: _Segment) -> bool:
        """Read what is new in ``seg`` up to where :meth:`_sync` found the written bytes to end
        (a bounded amount); True when more is left to read."""
        assert seg.committed is not None
        pos = max(seg.read, seg.committed)
        for _ in range(READS_PER_CYCLE):  # (bounded: every segment gets its turn)
            if pos >= seg.synced:
                return False  # nothing new (a spare segment, an idle worker): no read at all
            data = os.pread(seg.fd, min(READ_BYTES, seg.synced - pos), pos)
            chunk = _complete(data)
            if not chunk:
                return False
            end = pos
            pending, num = seg.pending, seg.num
            last_t, last_id = seg.last
            for line in paced(chunk.split(b"\n")[:-1], self._yield_every()):
                end += len(line) + 1
                try:
                    entry = _entry_of_line(line)
                except DAMAGED:
                    if not line.strip():
                        continue
                    if not seg.sealed:  # (being written: read it again next time)
                        end -= len(line) + 1
                        break
                    log.warning("skipping a damaged line in %s", seg.path)
                    continue
                t, eid = entry[3], entry[2]
                if t < last_t or (t == last_t and eid < last_id):
                    seg.unordered = True
                last_t, last_id = t, eid
                pending.append((t, eid, end, entry, num))
            seg.last = (last_t, last_id)
            if end == pos:
                return False
            seg.read = pos = end
        return pos < seg.synced

    def _sync(self, seg: _Segment) -> None:
        """Make what was written to ``seg`` since the last look durable (``fdatasync``), without
        reading its records: only where the written bytes end is looked for (the first unused
        byte, NUL: a JSON line holds none)."""
        if not seg.sealed:
            try:  # the owner holds its lock while the segment is open
                fcntl.flock(seg.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seg.sealed = True  # (taken before looking: nothing is appended after)
            except OSError:
                pass
        assert seg.committed is not None
        pos = max(seg.synced, seg.committed)
        if os.pread(seg.fd, 1, pos) in (b"", b"\0"):
            return  # nothing new (a spare segment, an idle worker): one byte looked at
        while True:
            data = os.pread(seg.fd, READ_BYTES, pos)
            nul = data.find(b"\0")
            if nul >= 0 or len(data) < READ_BYTES:
                pos += nul if nul >= 0 else len(data)
                break
            pos += READ_BYTES
        with contextlib.suppress(OSError):
            os.fdatasync(seg.fd)
        seg.synced = pos
        self.last_record = now = time.monotonic()
        if seg.since is None:
            seg.since = now

    def _due(self, segments: Sequence[_Segment]) -> bool:
        """A batch's worth of bytes waits (by :data:`RECORD_BYTES` a record), or some have
        waited ``flush_interval``."""
        now = time.monotonic()
        waiting = 0
        for s in segments:
            if s.since is not None:
                if now - s.since >= self.trail.flush_interval:
                    return True
                assert s.committed is not None
                waiting += max(s.synced, s.read) - s.committed
        return waiting >= self.trail.batch_size * RECORD_BYTES

    def _offsets(self, segments: Sequence[_Segment], *, moved: bool) -> None:
        """Look up the committed offsets (one query) of new segments, or of all when another
        shipper (a worker's ``sync``) ``moved`` them since this one's last cycle; then what this
        one read and did not ship is dropped and read again from there."""
        todo = [s for s in segments if moved or s.committed is None]
        if not todo:
            return
        with self.trail.store.read_conn() as conn:
            rows = dict(
                conn.execute(
                    select(audit_state.c.name, audit_state.c.seq).where(
                        audit_state.c.name.in_([s.name for s in todo])
                    )
                ).all()
            )
        for s in todo:
            at = int(rows.get(s.name, 0))
            s.fresh = s.name not in rows
            if at != s.committed:
                s.committed = s.read = at
                s.pending.clear()
                s.last = (0, "")

    # -- one cycle -----------------------------------------------------------------------------
    def cycle(self, *, force: bool = False) -> int:
        """Sync and (when due, or ``force``) read and ship; returns how many records were
        appended to the chain. ``force``: again until everything spooled before it began is in
        the chain (one pass reads a bounded amount of each segment; records spooled meanwhile
        may wait for the next cycle, so live traffic cannot keep it going)."""
        total = 0
        with _ship_lock(self.dir) as mark:
            while True:
                segments = self._scan()
                self._offsets(segments, moved=mark.moved(self._mark))
                for seg in segments:
                    self._sync(seg)
                more, shipped = False, 0
                # the records are read only when they are to be shipped: a cycle between costs
                # a few system calls, and the records are parsed in batches, not a few at a time
                if force or self._due(segments):
                    for seg in segments:
                        if len(seg.pending) < MAX_PENDING_BATCHES * self.trail.batch_size:
                            more |= self._read(seg)  # (else the database is down: no further)
                        else:
                            more = True
                    waiting = [s for s in segments if s.pending]
                    shipped = self._ship(waiting) if waiting else 0
                    for seg in segments:  # (all of it in the chain: nothing waits any more)
                        if not seg.pending and seg.committed == max(seg.read, seg.synced):
                            seg.since = None
                self._retire(segments)
                if shipped:
                    self._mark = mark.stamp()
                total += shipped
                if not (force and shipped and more):
                    return total

    def _ship(self, waiting: list[_Segment]) -> int:
        """Append the pending records to the chain, oldest first, a batch per transaction."""
        # oldest first across segments; within one, always in file order (an offset must never
        # pass a record not shipped). Each segment's records are in time order unless its
        # clock was set back: then a merge; else a sort (of sorted runs: in C, no key function;
        # the keys, (recorded, event id), are unique, so nothing else is compared)
        runs = [seg.pending for seg in waiting]
        if any(seg.unordered for seg in waiting):
            merged = list(heapq.merge(*runs))
        else:
            merged = sorted(itertools.chain.from_iterable(runs))
        done = 0
        size = self.trail.batch_size
        for start in range(0, len(merged), size):
            batch = merged[start : start + size]
            # each segment's offset after its last record in the batch (the last one wins)
            upto = dict(zip(map(_SEG, batch), map(_END, batch), strict=True))
            segs = [(self._numbered[n], end) for n, end in upto.items()]
            # the records of a segment without an offset row may be in the chain already:
            # looked for among the blocks since its oldest record here
            fresh = {seg.num for seg, _ in segs if seg.fresh}
            since = min(t[0] for t in batch if t[4] in fresh) if fresh else None
            self._commit(
                list(map(_ENTRY, batch)),
                {seg.name: end for seg, end in segs},
                known_since=since,
            )
            for seg, end in segs:
                seg.committed, seg.fresh = end, False
                del seg.pending[: bisect.bisect_right(seg.pending, end, key=_END)]
            done += len(batch)
        self.shipped += done
        return done

    def _commit(
        self, entries: list[Entry], offsets: dict[str, int], *, known_since: int | None
    ) -> None:
        """One transaction: append ``entries`` to the chain and move the segments' offsets;
        ``known_since``: those recorded since then may be in the chain already (left out)."""
        for attempt in range(3):
            try:
                with self.trail.store.write() as ctx:
                    conn = ctx.conn
                    # (a duplicate: the chain holds some of them already; or one repeated)
                    if known_since is not None and not attempt:
                        entries = _not_chained(conn, entries, since=known_since)
                    elif attempt or len(set(map(_ID, entries))) < len(entries):
                        entries = _not_chained(conn, entries)
                    if entries:
                        keys = set(map(_KEY, entries))
                        keys.discard(None)
                        every = self._yield_every()
                        owners = self.trail._patients(conn, keys, yield_every=every)  # type: ignore[arg-type]
                        _chain_append(conn, entries, owners, yield_every=every)
                    _set_offsets(conn, offsets)
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _retire(self, segments: Sequence[_Segment]) -> None:
        """Delete the sealed segments that are wholly in the chain, then their offset rows."""
        done = [s for s in segments if s.sealed and not s.pending and s.committed == s.read]
        if not done:
            return
        for seg in done:
            if _complete(os.pread(seg.fd, READ_BYTES, seg.read)):
                continue  # (not read to its end yet)
            seg.path.unlink(missing_ok=True)
            self._forget(seg)
        names = [s.name for s in done if s.path not in self._segments]
        if names:
            with self.trail.store.write() as ctx:
                ctx.conn.execute(delete(audit_state).where(audit_state.c.name.in_(names)))

    def _forget(self, seg: _Segment) -> None:
        self._segments.pop(seg.path, None)
        self._numbered.pop(seg.num, None)
        seg.close()

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._numbered.clear()

    @property
    def backlog(self) -> int:
        """Records read and not yet in the chain."""
        return sum(len(s.pending) for s in self._segments.values())


def _set_offsets(conn: Connection, offsets: dict[str, int]) -> None:
    conn.execute(
        _upsert_offsets(is_postgres(conn)),
        [{"name": n, "seq": v, "hash": None} for n, v in offsets.items()],
    )


@cache
def _upsert_offsets(postgres: bool) -> Any:
    """The statement of :func:`_set_offsets`, made once per dialect."""
    stmt = (pg_insert if postgres else sqlite_insert)(audit_state)
    return stmt.on_conflict_do_update(
        index_elements=[audit_state.c.name], set_={"seq": stmt.excluded.seq}
    )


def run_shipper(
    trail: AuditTrail,
    directory: Path,
    *,
    parent: int | None = None,
    settle: Callable[[], None] = gc.freeze,
) -> int:
    """Ship ``directory`` until SIGTERM/SIGINT (or until the process ``parent`` is gone), then
    ship what is left; materialize AuditEvents as ``trail`` says. Returns records shipped.
    ``settle``: what keeps the objects made so far out of the garbage collector's passes
    (``ehr audit ship``: the server's :func:`fhir_api.app.settle_collector`)."""
    _name_os_thread(WRITER_THREAD)
    trail.replay(directory)  # segments of crashed workers that wrote from their own thread
    shipper = Shipper(trail, directory)
    # what is there now (the modules, the store: ~340,000 objects) lives as long as the
    # process: out of the garbage collector's sight, whose full passes otherwise walked it all
    # every few seconds as the batches came and went (measured: ~4 µs a record shipped)
    gc.collect()
    settle()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = 0.0
    # events chained and perhaps not yet stored as AuditEvents: only then is materialization
    # looked at (an idle shipper costs a few system calls a cycle, no database round trip);
    # other processes' events (a worker's sync stores its own) are looked for every 10 s
    unstored, looked = True, time.monotonic()
    try:
        while not stopping:
            if parent is not None and os.getppid() != parent:
                break
            try:
                n = shipper.cycle()
                backoff = 0.0
                trail._last_record = shipper.last_record
                if not unstored and time.monotonic() - looked > 10.0:
                    unstored, looked = trail.lag() > 0, time.monotonic()
                if n or unstored:
                    unstored = trail._maybe_materialize(n, once=True) != 0
            except Exception:
                trail.failures += 1
                log.exception("audit shipping failed; will retry")
                backoff = min(5.0, max(backoff * 2, 0.1))
                time.sleep(backoff)
            time.sleep(trail.fsync_interval)
        shipper.cycle(force=True)
    finally:
        shipper.close()
    return shipper.shipped
