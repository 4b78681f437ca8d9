"""The EMPI service: one citizen, one record (issue 9). Store-level functions; no HTTP.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html ; Patient/$merge (R5):
http://hl7.org/fhir/R5/patient-operation-merge.html ; Patient.link:
http://hl7.org/fhir/R4/patient-definitions.html#Patient.link ; HAPI FHIR MDM (golden resources,
link states, ``:mdm`` search expansion): https://hapifhir.io/hapi-fhir/docs/server_jpa_mdm/mdm.html

    from ehr.empi.service import install, patient_match, link, unlink, merge, unmerge
    empi = install(store)                  # the write hook: every Patient write is matched
    store.create(patient)                  # -> linked to a golden record (or a review Task)
    patient_match(store, {"resourceType": "Patient", ...})       # $match Bundle
    merge(store, "dup", "keep"); unmerge(store, merge_id)
    linked_patient_ids(store, golden_id)  # for $everything on a golden record

Modules: :mod:`ehr.empi.links` (the FHIR shape: golden records, links, survivorship),
:mod:`ehr.empi.hook` (matching on every write, concurrency), :mod:`ehr.empi.candidates`
(blocking rows and scoring in the database), :mod:`ehr.empi.review` (the Task queue),
:mod:`ehr.empi.merge` ($merge, unmerge, consent), :mod:`ehr.empi.match` ($match),
:mod:`ehr.empi.audit` (AuditEvent per identity change), :mod:`ehr.empi.spans` (a citizen's
records in searches and ``$everything``).

**Searches and $everything across a citizen's records** are in :mod:`ehr.empi.spans`
(re-exported here): :func:`linked_patient_ids` (what ``$everything`` on a golden record spans),
:func:`person_patient_ids`, :func:`expand_search_params` (``Patient/<golden>`` and HAPI's
``:mdm`` qualifier) and :func:`search` (the search route's hook). Expansion never widens what a
requester may see.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import false, select

from ehr.empi.audit import _audit
from ehr.empi.golden import (
    create_golden,
    detach,
    golden_of,
    move,
    read_golden,
    read_patient,
    resolve_golden,
)
from ehr.empi.hook import Empi, get_empi, install
from ehr.empi.links import (
    golden_ids_of,
    is_golden,
    link_entry,
    link_info,
)
from ehr.empi.match import match_operation, patient_match
from ehr.empi.merge import merge, merge_operation, unmerge
from ehr.empi.review import resolve_review, review_tasks
from ehr.empi.spans import (
    expand_search_params,
    golden_record_id,
    linked_patient_ids,
    person_patient_ids,
    search,
)
from ehr.errors import BadRequest, Conflict, NotFound
from ehr.storage.tables import resources
from ehr.store import Store
from ehr.validation import check_id

__all__ = [
    "Empi",
    "backfill",
    "expand_search_params",
    "get_empi",
    "golden_record_id",
    "install",
    "link",
    "linked_patient_ids",
    "match_operation",
    "merge",
    "merge_operation",
    "patient_match",
    "person_patient_ids",
    "resolve_review",
    "review_tasks",
    "search",
    "unlink",
    "unmerge",
]


# ------------------------------------------------------------------------- link / unlink


def link(store: Store, source_id: str, golden_id: str, *, by: str | None = None) -> dict[str, Any]:
    """Link hospital record ``source_id`` to ``golden_id`` (a golden record, or a source whose
    golden record is meant) by a person's decision (MANUAL: automatic matching never moves it).
    Its former golden record is deleted if that empties it. Returns the golden record."""
    check_id(source_id)
    check_id(golden_id)
    with store.write() as ctx:
        got = read_patient(ctx, source_id, lock=False)
        if got is None:
            raise NotFound(f"Patient/{source_id} not found")
        if is_golden(got[1]):
            raise BadRequest(
                f"Patient/{source_id} is a golden record: link a hospital record to it"
            )
        target = resolve_golden(ctx, golden_id)
        g = read_golden(ctx, target)
        assert g is not None
        info = link_info(g.data, source_id) or {}
        entry = link_entry(
            source_id,
            grade=str(info.get("match-grade") or "certain"),
            manual=True,
            score=info.get("score"),
            explanation="linked by a person",
        )
        previous = move(ctx, source_id, target, entry)
        _audit(
            ctx, "link", [source_id, target, *([previous] if previous and previous != target else [])],
            by=by, description=f"Patient/{source_id} linked to golden record Patient/{target}",
        )  # fmt: skip
        final = read_patient(ctx, target, lock=False)
    assert final is not None
    return final[1]


def unlink(store: Store, source_id: str, golden_id: str, *, by: str | None = None) -> str:
    """Take hospital record ``source_id`` out of golden record ``golden_id``, recording that it
    is not that citizen (no automatic match will link them again). The record gets a golden
    record of its own, whose id is returned. Unlinking a golden record's only source is a 409."""
    check_id(source_id)
    check_id(golden_id)
    with store.write() as ctx:
        got = read_patient(ctx, source_id, lock=False)
        if got is None:
            raise NotFound(f"Patient/{source_id} not found")
        g = read_golden(ctx, golden_id)
        if g is None:
            raise NotFound(f"Golden record Patient/{golden_id} not found")
        if source_id not in g.sources:
            raise Conflict(f"Patient/{source_id} is not linked to Patient/{golden_id}")
        if g.sources == [source_id]:
            raise Conflict(f"Patient/{source_id} is the only record of Patient/{golden_id}")
        detach(ctx, source_id, golden_id, no_match=True)
        new = create_golden(
            ctx,
            source_id,
            got[1],
            link_entry(source_id, grade="certain", manual=True, explanation="unlinked by a person"),
        )
        _audit(
            ctx, "unlink", [source_id, golden_id, new], by=by,
            description=f"Patient/{source_id} unlinked from Patient/{golden_id}",
        )  # fmt: skip
    return new


# ------------------------------------------------------------------------------- bulk


def backfill(store: Store, *, batch: int = 200) -> int:
    """Match the source Patients that have no golden record yet (stored before the EMPI was
    installed, or loaded without it), in creation order, ``batch`` per transaction; returns
    how many were matched. Each runs the same steps as a live registration."""
    empi = get_empi(store)
    done, after = 0, 0
    while True:
        with store.read_conn() as conn:
            rows = conn.execute(
                select(resources.c.pk, resources.c.rid, resources.c.data)
                .where(
                    resources.c.rtype == "Patient",
                    resources.c.deleted == false(),
                    resources.c.pk > after,
                )
                .order_by(resources.c.pk)
                .limit(batch)
            ).all()
        if not rows:
            return done
        after = int(rows[-1].pk)
        with store.write() as ctx:
            pending = [(r.rid, orjson.loads(r.data)) for r in rows if r.data is not None]
            pending = [(rid, data) for rid, data in pending if not is_golden(data)]
            linked = golden_ids_of(ctx.conn, [rid for rid, _ in pending])
            for rid, data in pending:
                if rid not in linked and golden_of(ctx, rid) is None:
                    empi.match_source(ctx, rid, data, None)
                    done += 1
