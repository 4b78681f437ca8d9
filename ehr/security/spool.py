"""A local append-only spool of audit records: what makes queued audit writes crash-safe.

Every audit record is appended (one JSON line, ``O_APPEND``) to the process's current spool
segment *before* the response leaves, then queued for the database. The writer rotates the
segment when it takes the queue, and deletes the old segments once their records are committed
to ``audit_chain``. The segment being written is fsynced at every writer cycle.

Guarantee: a process that dies (crash, kill -9) loses no audit record: its segments are still on
disk (the page cache survives the process) and the next process that starts on the same
database replays them (:func:`orphans`; records already in the chain are skipped by id). A
power failure or kernel crash can lose the records of at most the last ``fsync_interval``
(50 ms) that were neither fsynced nor committed.

A segment is locked (``flock``) by its process while open, so a live process's segments are
never taken by another one (several server workers share one spool directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Spool", "orphans", "read_segment"]

log = logging.getLogger("ehr.security.audit")


class Spool:
    """This process's spool segments in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._prefix = f"audit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._n = 0
        self._closed: list[tuple[Path, int]] = []
        self._fd, self._path = self._open()
        self._written = 0

    def _open(self) -> tuple[int, Path]:
        self._n += 1
        path = self.dir / f"{self._prefix}-{self._n:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, path

    def owns(self, path: Path) -> bool:
        return path.name.startswith(self._prefix)

    def append(self, line: bytes) -> None:
        """One record (the caller serializes appends)."""
        os.write(self._fd, line + b"\n")
        self._written += 1

    def rotate(self) -> None:
        """Start a new segment; the current one waits for :meth:`release` (caller holds the
        queue lock, so the segment holds exactly the records taken with it)."""
        if self._written == 0:
            return
        self._closed.append((self._path, self._fd))
        self._fd, self._path = self._open()
        self._written = 0

    def fsync(self) -> None:
        with contextlib.suppress(OSError):  # a closed fd during shutdown
            os.fsync(self._fd)

    def release(self) -> None:
        """Delete the rotated-out segments (their records are committed)."""
        closed, self._closed = self._closed, []
        for path, fd in closed:
            try:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def close(self, *, committed: bool) -> None:
        """At shutdown: delete everything if all records are committed, else keep the files
        (unlocked) for the next process to replay."""
        if committed:
            self.release()
            if self._written == 0:
                self._path.unlink(missing_ok=True)
        for _, fd in self._closed:
            os.close(fd)
        self._closed = []
        os.close(self._fd)


def orphans(directory: Path) -> Iterator[tuple[Path, int]]:
    """Segments no live process holds: (path, locked fd); the caller unlinks and closes."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("audit-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        yield path, fd


def read_segment(fd: int) -> list[bytes]:
    """The complete lines of a segment (a torn last line, from a crash mid-write, is dropped)."""
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    lines = data.split(b"\n")
    return [ln for ln in lines[:-1] if ln.strip()]
