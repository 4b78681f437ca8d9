"""Changes to golden records inside one write transaction: create, attach, detach, move.

Patient.link: http://hl7.org/fhir/R4/patient-definitions.html#Patient.link ; the design (links
only on the golden record, survivorship, no-match decisions) is in :mod:`ehr.empi.links`.

Golden records are written only by the EMPI: the write hook refuses a client's create, update or
delete of a golden-tagged Patient unless the write happens inside :func:`internal` (which the
EMPI's own operations use). Inside :func:`internal`, a write of a *source* Patient (a merge
marking it inactive) only refreshes its blocking rows: no matching runs on it.

EMPI lookups run under :func:`system_view` (no request restriction applies to them).

Every change reads the golden record with a row lock (``SELECT … FOR UPDATE`` on PostgreSQL) and
writes the next version with ``If-Match`` on the version read, so two transactions attaching
sources to the same golden record serialize and neither link is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import orjson

from ehr.empi.links import (
    NO_MATCH_EXT,
    apply_survivorship,
    golden_ids_of,
    golden_sources,
    is_golden,
    load_patients,
    new_golden,
    new_golden_id,
    patient_ref_id,
)
from ehr.errors import Conflict, NotFound
from ehr.model import loads
from ehr.search.engine import ambient_restriction
from ehr.store import WriteContext

__all__ = [
    "Golden",
    "attach",
    "create_golden",
    "detach",
    "golden_of",
    "internal",
    "is_internal",
    "move",
    "resolve_golden",
    "set_no_match",
    "system_view",
    "read_golden",
    "read_patient",
    "refresh",
    "write_golden",
]

_INTERNAL: WeakKeyDictionary[WriteContext, int] = WeakKeyDictionary()


@contextmanager
def internal(ctx: WriteContext) -> Iterator[None]:
    """Writes inside this block are the EMPI's own (golden records may change)."""
    _INTERNAL[ctx] = _INTERNAL.get(ctx, 0) + 1
    try:
        yield
    finally:
        _INTERNAL[ctx] -= 1


def is_internal(ctx: WriteContext) -> bool:
    return _INTERNAL.get(ctx, 0) > 0


@contextmanager
def system_view() -> Iterator[None]:
    """The EMPI's own lookups (open review Tasks, Consents before a merge) see every resource,
    whatever the current request may see (:data:`ehr.search.engine.ambient_restriction`): an
    identity decision must not depend on who happened to register the patient."""
    token = ambient_restriction.set(None)
    try:
        yield
    finally:
        ambient_restriction.reset(token)


class Golden:
    """A golden record read under lock: ``data`` is to be changed, then :func:`write_golden`."""

    def __init__(self, rid: str, version: int, data: dict[str, Any]) -> None:
        self.rid = rid
        self.version = version
        self.data = data

    @property
    def sources(self) -> list[str]:
        return golden_sources(self.data)


def read_patient(
    ctx: WriteContext, rid: str, *, lock: bool = True
) -> tuple[int, dict[str, Any]] | None:
    """(version, resource) of a current Patient, None if absent or deleted."""
    cur = ctx.repo.current("Patient", rid, lock=lock)
    if cur is None or cur.deleted or cur.data is None:
        return None
    return cur.version, loads(cur.data)


def read_golden(ctx: WriteContext, rid: str) -> Golden | None:
    got = read_patient(ctx, rid)
    if got is None or not is_golden(got[1]):
        return None
    return Golden(rid, got[0], got[1])


def golden_of(ctx: WriteContext, source_id: str) -> str | None:
    return golden_ids_of(ctx.conn, [source_id]).get(source_id)


def _sources_data(
    ctx: WriteContext, ids: list[str], override: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    missing = [i for i in ids if i not in override]
    # ``ctx.conn`` flushes the transaction's buffered rows: only when there is something to read
    stored = load_patients(ctx.conn, missing) if missing else {}
    out: list[dict[str, Any]] = []
    for i in ids:
        if i in override:
            fresh = orjson.loads(orjson.dumps(override[i]))  # a deep copy of the JSON
            fresh.setdefault("meta", {})["lastUpdated"] = "~"  # the write in progress: newest
            out.append(fresh)
        elif i in stored:
            out.append(stored[i][2])
    return out


def write_golden(
    ctx: WriteContext, g: Golden, override: Mapping[str, dict[str, Any]] | None = None
) -> None:
    """Write ``g`` (demographics refreshed from its sources; ``override``: source data not yet
    stored). An active golden record left with no source is deleted."""
    if not g.sources and g.data.get("active", True) is not False:
        with internal(ctx):
            ctx.delete("Patient", g.rid, if_match=g.version)
        return
    if g.sources:
        apply_survivorship(g.data, _sources_data(ctx, g.sources, override or {}))
    with internal(ctx):
        res = ctx.update("Patient", g.rid, g.data, if_match=g.version, validate=False)
    g.version = res.version


def create_golden(
    ctx: WriteContext, source_id: str, source: dict[str, Any], link: dict[str, Any]
) -> str:
    """A new golden record for one source Patient (whose data may not be stored yet)."""
    rid = new_golden_id()
    golden = new_golden([link], _sources_data(ctx, [source_id], {source_id: source}))
    with internal(ctx):
        ctx.insert_with_id("Patient", rid, golden)
    return rid


def _drop_link(data: dict[str, Any], source_id: str) -> bool:
    links = data.get("link") or []
    kept = [
        link
        for link in links
        if not (link.get("type") == "seealso" and patient_ref_id(link.get("other")) == source_id)
    ]
    if len(kept) == len(links):
        return False
    if kept:
        data["link"] = kept
    else:
        data.pop("link", None)
    return True


def set_no_match(data: dict[str, Any], source_id: str, on: bool) -> None:
    exts = [
        e
        for e in data.get("extension") or ()
        if not (
            e.get("url") == NO_MATCH_EXT and patient_ref_id(e.get("valueReference")) == source_id
        )
    ]
    if on:
        exts.append({"url": NO_MATCH_EXT, "valueReference": {"reference": f"Patient/{source_id}"}})
    if exts:
        data["extension"] = exts
    else:
        data.pop("extension", None)


def _open_golden(ctx: WriteContext, golden_id: str) -> Golden:
    g = read_golden(ctx, golden_id)
    if g is None or g.data.get("active") is False:
        raise NotFound(f"Golden record Patient/{golden_id} not found (or merged into another)")
    return g


def attach(
    ctx: WriteContext,
    source_id: str,
    golden_id: str | Golden,
    link: dict[str, Any],
    source: dict[str, Any] | None = None,
) -> None:
    """Link ``source_id`` to golden record ``golden_id`` (or one already read under lock),
    replacing an earlier link entry and any no-match decision between them."""
    g = golden_id if isinstance(golden_id, Golden) else _open_golden(ctx, golden_id)
    _drop_link(g.data, source_id)
    set_no_match(g.data, source_id, False)
    g.data["link"] = [*(g.data.get("link") or []), link]
    write_golden(ctx, g, {source_id: source} if source is not None else None)


def detach(ctx: WriteContext, source_id: str, golden_id: str, *, no_match: bool = False) -> bool:
    """Remove ``source_id`` from golden record ``golden_id`` (``no_match``: and record that it
    is not this citizen). A golden record left without sources is deleted: returns True."""
    g = read_golden(ctx, golden_id)
    if g is None:
        return False
    _drop_link(g.data, source_id)
    if no_match:
        set_no_match(g.data, source_id, True)
    emptied = not g.sources
    if emptied:
        g.data.pop("extension", None)  # a deleted golden record keeps no decisions
    write_golden(ctx, g)
    return emptied


def move(
    ctx: WriteContext,
    source_id: str,
    golden_id: str,
    link: dict[str, Any],
    source: dict[str, Any] | None = None,
    *,
    unlinked: bool = False,
) -> str | None:
    """Link ``source_id`` to ``golden_id``, leaving the golden record it had (deleted if that
    leaves it empty). Returns the previous golden record's id (None: it had none).
    ``unlinked``: the caller knows the source has no golden record (a new Patient)."""
    g = _open_golden(ctx, golden_id)  # checked before anything changes
    previous = None if unlinked else golden_of(ctx, source_id)
    if previous is not None and previous != golden_id:
        detach(ctx, source_id, previous)
    attach(ctx, source_id, g, link, source)
    return previous


def resolve_golden(ctx: WriteContext, patient_id: str) -> str:
    """``patient_id`` if it is a golden record, else the golden record of that source."""
    got = read_patient(ctx, patient_id, lock=False)
    if got is None:
        raise NotFound(f"Patient/{patient_id} not found")
    if is_golden(got[1]):
        if got[1].get("active") is False:
            raise Conflict(f"Golden record Patient/{patient_id} was merged into another one")
        return patient_id
    gid = golden_of(ctx, patient_id)
    if gid is None:
        raise Conflict(f"Patient/{patient_id} has no golden record yet (run the EMPI backfill)")
    return gid


def refresh(ctx: WriteContext, golden_id: str, override: Mapping[str, dict[str, Any]]) -> None:
    """Re-copy a golden record's demographics from its sources; written only if they changed."""
    g = read_golden(ctx, golden_id)
    if g is None or not g.sources:
        return
    if apply_survivorship(g.data, _sources_data(ctx, g.sources, override)):
        with internal(ctx):
            ctx.update("Patient", g.rid, g.data, if_match=g.version, validate=False)
