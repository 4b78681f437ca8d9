"""Bulk loading of resources from files: the engine behind ``ehr load`` and ``ehr demo``.

Accepted inputs: a JSON resource, a JSON Bundle (its entries' resources; ``request.url`` of
``Type/id`` or a resource ``id`` keeps the client's id, otherwise the server assigns one), an
NDJSON file (one resource per line), or a folder of such files (recursively, sorted by name).
Each Bundle or each chunk of NDJSON lines is written in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ehr.model import loads
from ehr.store import Store, WriteContext

__all__ = ["iter_files", "load_paths", "load_resources", "put_or_create"]

CHUNK = 500


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.suffix in (".json", ".ndjson") and f.is_file()
            )
        else:
            yield p


def put_or_create(ctx: WriteContext, res: dict[str, Any], url: str | None) -> None:
    rid = res.get("id")
    if url and "/" in url and "?" not in url:
        rid = url.rsplit("/", 1)[1]
    if rid:
        ctx.update(res["resourceType"], rid, {**res, "id": rid})
    else:
        ctx.create(res)


def load_resources(store: Store, items: Iterable[tuple[dict[str, Any], str | None]]) -> int:
    """Write ``(resource, request_url)`` pairs in one transaction; returns how many."""
    n = 0
    items = list(items)
    with store.write() as ctx:
        ctx.repo.prefetch(
            (res["resourceType"], rid)
            for res, url in items
            if (
                rid := (
                    url.rsplit("/", 1)[1]
                    if url and "/" in url and "?" not in url
                    else res.get("id")
                )
            )
        )
        for res, url in items:
            put_or_create(ctx, res, url)
            n += 1
    return n


def _chunks(lines: Iterable[str]) -> Iterator[list[tuple[dict[str, Any], str | None]]]:
    chunk: list[tuple[dict[str, Any], str | None]] = []
    for line in lines:
        if line.strip():
            chunk.append((loads(line), None))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def load_paths(
    store: Store, paths: Iterable[Path], progress: Callable[[int], None] | None = None
) -> int:
    """Load every file under ``paths``; ``progress(n)`` is called after each written batch."""
    total = 0
    for f in iter_files(paths):
        if f.suffix == ".ndjson":
            with f.open(encoding="utf-8") as fh:
                for chunk in _chunks(fh):
                    total += load_resources(store, chunk)
                    if progress:
                        progress(len(chunk))
            continue
        doc = loads(f.read_bytes())
        if (
            isinstance(doc, dict)
            and doc.get("resourceType") == "Bundle"
            and doc.get("type")
            in (
                "transaction",
                "batch",
                "collection",
                "searchset",
            )
        ):
            items = [
                (e["resource"], (e.get("request") or {}).get("url"))
                for e in doc.get("entry", [])
                if "resource" in e
            ]
        else:
            items = [(doc, None)]
        n = load_resources(store, items)
        total += n
        if progress:
            progress(n)
    return total
