"""Resumable append-only ndjson files of bulk jobs (the output and error files of
https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status).

A job's file is appended to chunk by chunk; after each chunk it is flushed and fsynced, and only
then is its size committed in ``bulk_files``. Reopened for the next chunk (also by another worker
after a crash), it is truncated back to the committed size first, so bytes written by a chunk
whose commit never happened are dropped and written again exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ehr.bulk.jobs import FileState

__all__ = ["NdjsonFile"]


class NdjsonFile:
    """An ndjson file opened on first write, positioned at its committed size."""

    def __init__(self, path: Path, committed: FileState | None) -> None:
        self.path = path
        self.state = committed
        self.fh: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.state is not None and self.path.exists():
                fh = self.path.open("r+b", buffering=1 << 20)
                if os.fstat(fh.fileno()).st_size < self.state.size:
                    fh.close()
                    raise RuntimeError(f"{self.path.name} is shorter than its committed size")
                fh.truncate(self.state.size)  # drop what a crashed run wrote after its last commit
                fh.seek(self.state.size)
            elif self.state is not None and self.state.size:
                raise RuntimeError(f"{self.path.name} is missing")
            else:
                fh = self.path.open("wb", buffering=1 << 20)
            self.fh = fh
        return self.fh

    def close(self, sync: bool) -> int:
        """Flush (and fsync), close; returns the size."""
        if self.fh is None:
            return self.state.size if self.state else 0
        self.fh.flush()
        if sync:
            os.fsync(self.fh.fileno())
        size = self.fh.tell()
        self.fh.close()
        self.fh = None
        return size
