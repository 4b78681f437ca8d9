"""Bulk Data ``$import`` of ndjson, as a job: the ping-and-pull shape of the Bulk Data import
proposal (https://github.com/smart-on-fhir/bulk-import/blob/master/import-pnp.md) with a
Parameters body of ``inputFormat`` and ``input`` parts (``type``, ``url``).

Only ``file://`` URLs are read (no network), and only below ``allowed_root`` (by default
``<data_dir>/import``). Each line is one resource, written as ``ehr load`` writes it
(:mod:`ehr.loader`: with an ``id`` it is an update-as-create keeping the id, else a create), and
validated. A chunk of lines is one database transaction *together with the job's progress*, so
a job resumed after a crash neither loses nor repeats a line. A line that fails (bad JSON,
wrong type, invalid resource) does not stop the job: it becomes an OperationOutcome in the
job's ``import-errors.ndjson``, listed in the manifest's ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ehr.bulk.files import NdjsonFile
from ehr.bulk.jobs import NDJSON_FORMATS, FileState, Lease, base_manifest, new_job
from ehr.definitions import resource_types
from ehr.errors import BadRequest, FhirError, Issue, operation_outcome
from ehr.loader import put_or_create
from ehr.model import dumps, loads
from ehr.search.dates import now_us
from ehr.settings import get_settings
from ehr.store import Store

__all__ = ["ImportInput", "ImportRun", "kick_off_import", "parse_import_parameters"]

ERRORS_FILE = "import-errors.ndjson"
#: longest ndjson line accepted (a longer one is reported and skipped)
MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImportInput:
    """One input file: its ``file://`` URL and, optionally, the type every line must have."""

    url: str
    type: str | None = None


def parse_import_parameters(body: Any) -> tuple[list[ImportInput], str | None]:
    """The inputs and ``inputFormat`` of a ``$import`` Parameters resource."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("$import takes a Parameters resource", "invalid")
    inputs: list[ImportInput] = []
    fmt: str | None = None
    for p in body.get("parameter", []):
        name = p.get("name")
        if name == "inputFormat":
            fmt = p.get("valueCode") or p.get("valueString")
        elif name == "input":
            parts = {q.get("name"): q for q in p.get("part", [])}
            url = (parts.get("url") or {}).get("valueUri") or (parts.get("url") or {}).get(
                "valueUrl"
            )
            rtype = (parts.get("type") or {}).get("valueCode") or (parts.get("type") or {}).get(
                "valueString"
            )
            if not url:
                raise BadRequest("Each $import input needs a url part", "required")
            inputs.append(ImportInput(url, rtype))
    return inputs, fmt


def _local_path(url: str, root: Path) -> Path:
    u = urlparse(url)
    if u.scheme != "file" or u.netloc not in ("", "localhost"):
        raise BadRequest(f"Only local file:// inputs can be imported, not {url!r}", "not-supported")
    path = Path(unquote(u.path)).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BadRequest(f"{url!r} is outside the import folder", "forbidden")
    if not path.is_file():
        raise BadRequest(f"{url!r} is not a readable file", "not-found")
    return path


def kick_off_import(
    store: Store,
    inputs: Sequence[ImportInput | str],
    *,
    input_format: str | None = None,
    owner: str | None = None,
    request_url: str | None = None,
    allowed_root: Path | None = None,
) -> str:
    """Validate an import request and queue the job; returns its id. ``allowed_root`` is the
    folder inputs must be in (default ``<data_dir>/import``)."""
    fmt = input_format or "application/fhir+ndjson"
    if fmt not in NDJSON_FORMATS:
        raise BadRequest(
            f"inputFormat {fmt!r} is not supported; use application/fhir+ndjson", "not-supported"
        )
    items = [i if isinstance(i, ImportInput) else ImportInput(i) for i in inputs]
    if not items:
        raise BadRequest("$import needs at least one input", "required")
    root = allowed_root if allowed_root is not None else Path(get_settings().data_dir) / "import"
    files: list[dict[str, Any]] = []
    for item in items:
        if item.type is not None and item.type not in resource_types():
            raise BadRequest(f"Unknown resource type {item.type!r} for {item.url}", "not-supported")
        path = _local_path(item.url, root)
        files.append(
            {"url": item.url, "type": item.type, "path": str(path), "size": path.stat().st_size}
        )
    request: dict[str, Any] = {
        "url": request_url or "$import",
        "inputs": files,
        "input_format": fmt,
    }
    with store.write() as ctx:
        return new_job(
            ctx.conn, "import", request, transaction_time=now_us(), owner=owner,
            total=sum(int(f["size"]) for f in files),
        )  # fmt: skip


def _read_lines(path: Path, offset: int, n: int) -> tuple[list[tuple[int, bytes | None]], int]:
    """Up to ``n`` lines from byte ``offset``: (relative line number, bytes or None if too
    long), and the offset after them."""
    lines: list[tuple[int, bytes | None]] = []
    with path.open("rb") as fh:
        fh.seek(offset)
        while len(lines) < n:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                break
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                lines.append((len(lines), None))
                continue
            lines.append((len(lines), raw))
        return lines, fh.tell()


@dataclass
class ImportRun:
    """Runs (or resumes) one import job chunk by chunk."""

    lease: Lease
    folder: Path
    chunk_size: int = 500

    def _error(self, url: str, line: int, issues: list[Issue]) -> bytes:
        where = f"{url} line {line}"
        return dumps(
            operation_outcome(
                [
                    Issue(i.code, f"{where}: {i.diagnostics}", i.severity, i.expression)
                    for i in issues
                ]
            )
        )

    def chunk(self) -> bool:
        """Import the next chunk of lines; False when every input is done."""
        job = self.lease.job
        inputs = job.request["inputs"]
        cur = job.cursor
        i, offset, line = (
            int(cur.get("input", 0)),
            int(cur.get("offset", 0)),
            int(cur.get("line", 0)),
        )
        if i >= len(inputs):
            return False
        inp = inputs[i]
        lines, new_offset = _read_lines(Path(inp["path"]), offset, self.chunk_size)
        counts: dict[str, dict[str, int]] = {k: dict(v) for k, v in cur.get("counts", {}).items()}
        mine = counts.setdefault(str(i), {})
        errors: list[bytes] = []
        err_file = NdjsonFile(self.folder / ERRORS_FILE, job.files.get(ERRORS_FILE))
        cursor: dict[str, Any]
        with self.lease.store.write() as ctx:
            for rel, raw in lines:
                lineno = line + rel + 1
                if raw is None:
                    errors.append(
                        self._error(inp["url"], lineno, [Issue("too-costly", "line too long")])
                    )
                    continue
                if not raw.strip():
                    continue
                try:
                    res = loads(raw)
                    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                        raise BadRequest(
                            "Not a FHIR resource (a JSON object with resourceType)", "structure"
                        )
                    if inp["type"] and res["resourceType"] != inp["type"]:
                        raise BadRequest(
                            f"A {res['resourceType']} in a {inp['type']} input", "invalid"
                        )
                    with ctx.conn.begin_nested():
                        put_or_create(ctx, res, None)
                    mine[res["resourceType"]] = mine.get(res["resourceType"], 0) + 1
                except FhirError as exc:
                    errors.append(self._error(inp["url"], lineno, exc.issues))
            files: list[FileState] = []
            if errors:
                fh = err_file.open()
                for e in errors:
                    fh.write(e)
                    fh.write(b"\n")
                size = err_file.close(sync=True)
                prev = job.files.get(ERRORS_FILE) or FileState(
                    ERRORS_FILE, "error", "OperationOutcome", 0
                )
                files.append(
                    FileState(
                        ERRORS_FILE, "error", "OperationOutcome", 0, prev.count + len(errors), size
                    )
                )
            at_end = len(lines) < self.chunk_size
            cursor = {
                "input": i + 1 if at_end else i,
                "offset": 0 if at_end else new_offset,
                "line": 0 if at_end else line + len(lines),
                "counts": counts,
            }
            done = sum(f["size"] for f in inputs[:i]) + (inp["size"] if at_end else new_offset)
            self.lease.commit(ctx.conn, cursor=cursor, done=done, files=files)
        return cursor["input"] < len(inputs)

    def run(self, keep_going: Callable[[], bool]) -> bool:
        """Run until done (True) or until ``keep_going()`` says stop (False)."""
        job = self.lease.job
        while int(job.cursor.get("input", 0)) < len(job.request["inputs"]):
            if not keep_going():
                return False
            self.chunk()
        manifest = base_manifest(job)
        for idx, inp in enumerate(job.request["inputs"]):
            for rtype, n in sorted(job.cursor.get("counts", {}).get(str(idx), {}).items()):
                manifest["output"].append({"type": rtype, "inputUrl": inp["url"], "count": n})
        err = job.files.get(ERRORS_FILE)
        if err is not None:
            manifest["error"].append(
                {"type": "OperationOutcome", "name": err.name, "count": err.count}
            )
        self.lease.finish("completed", manifest=manifest)
        return True
